"""The docs explorer lists every resource, in the order of app.routers.TAGS."""

from app.routers import ROUTERS, TAGS


def test_every_tag_in_use_is_listed_once_in_order(app):
    spec = app.openapi()
    used = {tag for path in spec["paths"].values() for op in path.values() for tag in op.get("tags", [])}
    assert used == set(TAGS) and len(TAGS) == len(set(TAGS))
    assert [t["name"] for t in spec["tags"]] == TAGS


def test_the_record_routes_are_matched_first():
    assert ROUTERS[0].prefix == "/records"
    later = [r.prefix for r in ROUTERS[2:]]
    assert not any(p.startswith("/records") for p in later)  # nothing else can be shadowed by /records/{id}

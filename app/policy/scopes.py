"""Scopes a service client may hold; a client can do nothing its scopes do not name.

Each scope is described once here; the OpenAPI document, the README and ``kmm
create-client`` take the list from this table. Accounts hold no scopes: their role and
their relation to a record decide (DESIGN §4).
"""

SCOPES: dict[str, str] = {
    "records:read": "Read general records, the ones any active account may read (§4.1); never a confidential one.",
    "records:write": "Create general records, naming the colleague who is their custodian (§4.2).",
    "subjects:read": "Read the subject directory: who information is held about (§2.1).",
    "subjects:write": "Create subjects in the directory (§2.1).",
    "reports:read": "Read the aggregate monitoring and funder reports, small counts suppressed (§2.3).",
}

# Scopes no one client holds together, and why. A client that adds subjects or records and
# reads the suppressed report could add to a cell shown as "<5" until it shows a number, then
# subtract what it added (§2.3).
EXCLUSIVE: dict[frozenset[str], str] = {
    frozenset({"reports:read", "subjects:write"}): "adding subjects would let it work out a suppressed count (§2.3)",
    frozenset({"reports:read", "records:write"}): "adding records would let it work out a suppressed count (§2.3)",
}
EXCLUSIVE_RULE, EXCLUSIVE_CLAUSE = "report-scopes", "§2.3"


def clashes(scopes: frozenset[str] | set[str] | list[str]) -> list[str]:
    """Why these scopes may not be held together (empty when they may)."""
    held = frozenset(scopes)
    return [f"{' with '.join(sorted(pair))}: {why}" for pair, why in EXCLUSIVE.items() if pair <= held]


def requested_scopes(scope: str) -> frozenset[str]:
    """The scopes a token request names (RFC 6749 §3.3: space-separated, order free)."""
    return frozenset(scope.split())

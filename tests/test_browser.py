"""The docs explorer in a real browser.

`kmm serve` (uvicorn, the production command) runs in a subprocess on a free loopback
port over a fresh SQLite database with the demo organisation seeded. Debian's Chromium,
driven by Playwright, opens /docs, logs in with Authorize using the demo director's
login, runs GET /users/me, GET /records and POST /records (with the document's example
body, as printed) with "Try it out" -> "Execute", and reads the responses off the page.
Every script and style the page loads must come from the service itself under its
Content-Security-Policy: a violation fails the test.
A screenshot is saved to test-artifacts/docs-explorer.png.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app.demo.records import demo_subject_id
from tests.conftest import PROJECT_ROOT
from tests.live_server import kmm_env, kmm_serve, run_kmm

pytestmark = pytest.mark.slow  # a live `kmm serve` and headless Chromium

CHROMIUM = Path(os.environ.get("KMM_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
]
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
UI_TIMEOUT_MS = 30_000


@dataclass
class LiveServer:
    url: str
    director_email: str
    director_password: str


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("browser")
    env = kmm_env(tmp, "docs.db")
    run_kmm(env, "migrate")
    run_kmm(env, "seed-demo")
    logins = json.loads((tmp / ".kmm-demo-logins.json").read_text())
    with kmm_serve(env, tmp / "server.log") as url:
        yield LiveServer(url=url, director_email="director@demo.kmm.org.uk", director_password=logins["director"])


def test_served_by_kmm_serve_has_no_server_header(live_server: LiveServer) -> None:
    """The real server (uvicorn via `kmm serve`) sends no Server header on any kind of response."""
    for path in ("/healthz", "/docs", "/docs/assets/swagger-ui.css", "/records", "/no-such-path"):
        r = httpx.get(live_server.url + path, timeout=5)
        assert "server" not in r.headers, (path, r.headers.get("server"))
        assert r.headers["x-content-type-options"] == "nosniff"


def test_docs_explorer_in_chromium(live_server: LiveServer) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: `apt-get install -y chromium` (.ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")

    console_errors: list[str] = []
    external_requests: list[str] = []
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 2000})
            page.set_default_timeout(UI_TIMEOUT_MS)
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: console_errors.append(str(e)))
            page.on("request", lambda r: None if r.url.startswith(live_server.url)
                    else external_requests.append(r.url))

            page.goto(f"{live_server.url}/docs")
            page.locator(".swagger-ui .info .title").wait_for()
            assert "KMM Confidential Records Service" in page.locator(".swagger-ui .info .title").inner_text()

            # Authorize with the OAuth2 password form (the dialog also offers client credentials,
            # with every scope listed).
            page.locator(".auth-wrapper button.authorize").click()
            modal = page.locator(".dialog-ux .modal-ux")
            assert "reports:read" in modal.inner_text()
            password_flow = modal.locator(".auth-container", has=page.locator("input#oauth_username"))
            password_flow.locator("input#oauth_username").fill(live_server.director_email)
            password_flow.locator("input#oauth_password").fill(live_server.director_password)
            password_flow.locator("button.authorize").click()
            modal.locator("button", has_text="Logout").first.wait_for()  # logged in (one scheme, two flows)
            modal.locator("button", has_text="Close").first.click()

            # The login stays in the page's memory: nothing of it in the browser's storage.
            for storage in ("localStorage", "sessionStorage"):
                stored = page.evaluate(f"() => JSON.stringify(Object.assign({{}}, window.{storage}))")
                assert live_server.director_password not in stored, storage
                assert "authorized" not in json.loads(stored), (storage, list(json.loads(stored)))

            me = _execute(page, "/users/me")
            assert me.status == "200", me
            assert json.loads(me.body)["email"] == live_server.director_email
            assert json.loads(me.body)["role"] == "director"

            records = _execute(page, "/records")
            assert records.status == "200", records
            listed = json.loads(records.body)
            assert listed["items"], "the seeded director sees records"
            assert {"id", "title", "classification"} <= set(listed["items"][0])

            # POST /records with the document's example, as printed: it names a subject of the demo.
            created = _execute(page, "/records", method="post")
            assert created.status == "201", created
            assert json.loads(created.body)["subject_id"] == str(demo_subject_id("Sam Okafor"))

            page.screenshot(path=str(ARTIFACTS / "docs-explorer.png"), full_page=False)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "docs-explorer-failure.png"), full_page=True)
            raise
        finally:
            browser.close()

    assert not external_requests, f"the docs page reached outside the service: {external_requests}"
    assert not [e for e in console_errors if "Content Security Policy" in e], console_errors
    assert not console_errors, console_errors


@dataclass
class Shown:
    status: str
    body: str


def _execute(page, path: str, method: str = "get") -> Shown:  # type: ignore[no-untyped-def]
    """Open `method` `path`, press "Try it out" then "Execute" (with the example body the explorer
    fills in, if any), and read the live response shown."""
    block = page.locator(f".opblock-{method}:has(.opblock-summary-path[data-path='{path}'])").first
    block.locator(".opblock-summary").click()
    block.locator("button.try-out__btn").click()
    block.locator("button.execute").click()
    live = block.locator(".live-responses-table .response").first
    live.wait_for()
    live.scroll_into_view_if_needed()
    status = live.locator(".response-col_status").inner_text().strip()
    body = live.locator(".response-col_description pre.microlight").first.inner_text()
    return Shown(status=status, body=body)

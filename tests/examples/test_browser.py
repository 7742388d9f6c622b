"""The example web app in headless Chromium: a login through Globus Auth, into a database.

The app (examples/webapp, unmodified) is served over HTTP on 127.0.0.1, and so is a fake
Globus Auth (tests/support/auth_server.py) that globus-sdk reaches through
``GLOBUS_SDK_SERVICE_URL_AUTH``. The browser follows the links and buttons a person
would; the tokens land in the test's database and leave it at logout. Each page is
saved as a PNG in ``$TOKENSTORE_SQL_SCREENSHOTS`` (default: the test's tmp dir), which
is how the docs get their pictures of the app.

Needs Debian's ``chromium`` and ``chromium-driver``: skipped without them, except
under CI, where a skip would hide the test.
"""

from __future__ import annotations

import os
import shutil
import struct
import threading
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import URL, Row, create_engine, select
from werkzeug.serving import make_server

from examples.webapp import create_app
from tests.support.auth_server import AuthServer, serving_auth
from tests.support.browser import browser_missing, require_browser
from tests.support.fake_auth import AUTH_RS, TRANSFER, FakeAuth
from tests.support.web_examples import app_settings
from tokenstore_sql import TokenStore
from tokenstore_sql.models import TokenRow

pytestmark = pytest.mark.browser

WIDTH, HEIGHT = 880, 440  # the viewport, and so every screenshot's size in pixels
NAME, FULL_NAME = "ada@example.org", "Ada Lovelace"


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium driven through chromedriver, both from the system's packages."""
    require_browser("the browser test to run")
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = str(shutil.which("chromium"))
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={WIDTH},{HEIGHT}")
    # chromedriver given by path: Selenium Manager downloads nothing
    service = webdriver.ChromeService(executable_path=str(shutil.which("chromedriver")))
    driver = webdriver.Chrome(service=service, options=options)
    metrics = {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    yield driver
    driver.quit()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where the pages' PNGs go: ``$TOKENSTORE_SQL_SCREENSHOTS``, else the tmp dir."""
    chosen = os.environ.get("TOKENSTORE_SQL_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def auth_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[AuthServer]:
    """Globus Auth on 127.0.0.1, where every globus-sdk client of this process goes."""
    server = AuthServer(FakeAuth(), identity_id=str(uuid.uuid4()), name=NAME)
    server.auth.full_names[server.identity_id] = FULL_NAME
    with serving_auth(server) as base_url:
        monkeypatch.setenv("GLOBUS_SDK_SERVICE_URL_AUTH", base_url)
        yield server


@dataclass
class Served:
    """The example app being served: its base URL, and its store (for namespaces)."""

    base: str
    store: TokenStore

    def url(self, path: str) -> str:
        return self.base + path


@pytest.fixture
def webapp(auth_server: AuthServer, database_url: URL) -> Iterator[Served]:
    """The example app over HTTP on 127.0.0.1, in a thread of this process."""
    holder: list[Any] = []
    http = make_server("127.0.0.1", 0, lambda env, reply: holder[0](env, reply), threaded=True)
    base = f"http://127.0.0.1:{http.server_port}"
    app = create_app({**app_settings(auth_server.auth, database_url), "BASE_URL": base})
    holder.append(app)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield Served(base, app.extensions["token_store"])
    http.shutdown()
    thread.join(timeout=5)
    app.extensions["token_store"].close()


def png_size(data: bytes) -> tuple[int, int]:
    """Check that ``data`` is a whole PNG (every chunk's CRC); return its width, height."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    offset, kinds, size = 8, [], (0, 0)
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r} chunk"
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        kinds.append(kind)
        offset += 12 + length
    assert kinds[0] == b"IHDR", "a PNG starts with IHDR"
    assert kinds[-1] == b"IEND", "truncated PNG"
    assert b"IDAT" in kinds, "a PNG without image data"
    return size


def test_without_chromium_on_the_path_the_reason_names_the_packages(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert (
        browser_missing() == "no chromium or chromedriver: apt-get install chromium chromium-driver"
    )


def test_png_size_refuses_a_truncated_or_corrupt_image() -> None:
    header = struct.pack(">IIBBBBB", 3, 2, 8, 2, 0, 0, 0)
    chunk: Callable[[bytes, bytes], bytes] = lambda kind, body: (  # noqa: E731
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    )
    whole = (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"x") + chunk(b"IEND", b"")
    )
    assert png_size(whole) == (3, 2)
    with pytest.raises(AssertionError, match="truncated"):
        png_size(whole[: -len(chunk(b"IEND", b""))])
    with pytest.raises(AssertionError, match="CRC"):
        png_size(whole.replace(b"IDATx", b"IDATy"))


def _stored_rows(database_url: URL, namespace: str) -> list[Row[Any]]:
    """Read the user's rows back through an engine of the test's own, not the app's."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            query = select(TokenRow.__table__).where(TokenRow.namespace == namespace)
            return list(connection.execute(query).all())
    finally:
        engine.dispose()


def test_a_person_logs_in_sees_the_profile_and_logs_out_in_chromium(
    browser: Any,
    webapp: Served,
    auth_server: AuthServer,
    database_url: URL,
    backend: str,
    screenshots: Path,
) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    auth, identity_id = auth_server.auth, auth_server.identity_id
    folder = screenshots if backend == "sqlite" else screenshots / backend
    folder.mkdir(exist_ok=True)
    sources: list[str] = []

    def shoot(page: str) -> str:
        """Save the page as ``<page>.png``; return the text a person reads on it."""
        path = folder / f"{page}.png"
        path.write_bytes(browser.get_screenshot_as_png())
        assert png_size(path.read_bytes()) == (WIDTH, HEIGHT)
        sources.append(browser.page_source)
        return str(browser.find_element(By.TAG_NAME, "body").text)

    def wait(condition: Callable[[Any], object]) -> None:
        # a page being replaced by the next one invalidates what was found on it
        waiting = WebDriverWait(browser, 15, ignored_exceptions=[StaleElementReferenceException])
        waiting.until(condition)

    def arrives(text: str) -> None:
        wait(lambda d: text in d.find_element(By.TAG_NAME, "body").text)

    browser.get(webapp.url("/"))
    signed_out = shoot("signed-out")
    assert "Log in with Globus" in signed_out
    assert "Signed in" not in signed_out

    browser.find_element(By.LINK_TEXT, "Log in with Globus").click()
    wait(lambda d: d.find_elements(By.ID, "approve"))
    assert browser.current_url.startswith(auth_server.base_url)
    (asked,) = auth_server.authorize_requests
    assert asked["redirect_uri"] == webapp.url("/callback")
    assert asked["access_type"] == "offline"  # the app asks for refresh tokens
    assert set(asked["scope"].split()) == {"openid", "profile", "email"}
    browser.find_element(By.ID, "approve").click()

    arrives(f"Signed in as {NAME}")
    signed_in = shoot("signed-in")
    assert "Your Globus profile and stored tokens" in signed_in
    assert auth.code_exchanges == 1
    assert auth_server.refused_clients == 0
    namespace = webapp.store.namespace_for(identity_id)
    rows = {row.resource_server: row for row in _stored_rows(database_url, namespace)}
    assert sorted(rows) == [AUTH_RS, TRANSFER]
    assert {row.identity_id for row in rows.values()} == {identity_id}
    assert {auth.access_owner(row.access_token) for row in rows.values()} == {identity_id}
    issued = {t for row in rows.values() for t in (row.access_token, row.refresh_token) if t}

    browser.find_element(By.LINK_TEXT, "Your Globus profile and stored tokens").click()
    arrives("Globus Auth says")
    profile = shoot("profile")
    assert f"{FULL_NAME} ({NAME}), identity {identity_id}" in profile
    assert AUTH_RS in profile
    assert TRANSFER in profile
    assert auth.userinfo_tokens == [rows[AUTH_RS].access_token]

    browser.find_element(By.TAG_NAME, "button").click()
    arrives("Log in with Globus")
    logged_out = shoot("logged-out")
    assert "Signed in" not in logged_out
    assert _stored_rows(database_url, namespace) == []
    assert set(auth.revoked) == issued
    for source in sources:  # no page ever shows a token
        assert not [token for token in issued if token in source]

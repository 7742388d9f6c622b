"""The async example web application, through its ASGI layer, with Globus Auth mocked offline.

httpx drives the real Starlette app (sessions, routes, lifespan) in the test's event
loop, so two users' requests run at once against one async engine. Two apps on one
database stand for two worker processes: each has its own store and engine, so they
agree on refreshes only through the database. The tests read that database through a
store of their own.
"""

from __future__ import annotations

import asyncio
import copy
import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import URL
from starlette.applications import Starlette

from examples.async_webapp import create_app
from tests.support.databases import assert_nothing_checked_out
from tests.support.fake_auth import AUTH_RS, TRANSFER, FakeAuth
from tests.support.web_examples import app_settings, login_callback, serve_example
from tokenstore_sql import AsyncTokenStore

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """Run on asyncio only: the async storage and its drivers are asyncio's.

    anyio's own fixture runs every installed backend, and trio is installed as one of
    selenium's dependencies (the browser test).
    """
    return "asyncio"


ALICE = str(uuid.uuid4())
BOB = str(uuid.uuid4())


@pytest.fixture
def settings(database_url: URL, auth: FakeAuth) -> dict[str, Any]:
    return app_settings(auth, database_url)


@asynccontextmanager
async def _running(settings: dict[str, Any]) -> AsyncIterator[Starlette]:
    """An app between its start-up and its shutdown, as a server runs it."""
    made = create_app(settings)
    async with made.router.lifespan_context(made):
        yield made
        assert_nothing_checked_out(made.state.store.engine.sync_engine)


@pytest.fixture
async def app(settings: dict[str, Any]) -> AsyncIterator[Starlette]:
    async with _running(settings) as made:
        yield made


@pytest.fixture
async def store(settings: dict[str, Any]) -> AsyncIterator[AsyncTokenStore]:
    """The app's database and namespaces, seen from outside the app."""
    url, label = settings["TOKENSTORE_SQL_URL"], settings["TOKENSTORE_APP"]
    async with AsyncTokenStore(url, app=label) as made:
        yield made


@asynccontextmanager
async def _browser(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """A browser of its own: a cookie jar, so a session, per client."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost:5000") as made:
        yield made


async def _log_in(client: httpx.AsyncClient, auth: FakeAuth, identity_id: str, name: str) -> None:
    callback = login_callback(auth, await client.get("/login"), identity_id, name)
    back = await client.get("/callback", params=callback)
    assert back.status_code == 302


async def _tokens(store: AsyncTokenStore, identity_id: str) -> dict[str, Any]:
    return dict(await store.for_user(identity_id).get_token_data_by_resource_server())


async def _expire(store: AsyncTokenStore, identity_id: str) -> Any:
    """Make a user's stored Auth access token expired; return its data as it was."""
    storage = store.for_user(identity_id)
    before = await storage.get_token_data(AUTH_RS)
    assert before is not None
    expired = copy.copy(before)
    expired.expires_at_seconds = int(time.time()) - 5
    await storage.store_token_data_by_resource_server({AUTH_RS: expired})
    return before


@asynccontextmanager
async def _expired_session(
    app: Starlette, store: AsyncTokenStore, auth: FakeAuth
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """Alice's browser, logged in, her Auth access token since expired; and the token."""
    async with _browser(app) as alice:
        await _log_in(alice, auth, ALICE, "alice")
        yield alice, await _expire(store, ALICE)


async def _csrf(client: httpx.AsyncClient) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', (await client.get("/")).text)
    assert found is not None
    return found.group(1)


async def test_two_users_at_once_each_see_only_their_own_tokens(
    app: Starlette, store: AsyncTokenStore, auth: FakeAuth
) -> None:
    async with _browser(app) as alice, _browser(app) as bob:
        await asyncio.gather(_log_in(alice, auth, ALICE, "alice"), _log_in(bob, auth, BOB, "bob"))
        alice_page, bob_page = await asyncio.gather(alice.get("/profile"), bob.get("/profile"))
    alice_tokens, bob_tokens = await _tokens(store, ALICE), await _tokens(store, BOB)

    assert alice_page.status_code == bob_page.status_code == 200
    assert sorted(alice_tokens) == sorted(bob_tokens) == [AUTH_RS, TRANSFER]
    assert {d.identity_id for d in alice_tokens.values()} == {ALICE}
    assert {d.identity_id for d in bob_tokens.values()} == {BOB}
    assert "Signed in as alice" in alice_page.text
    assert ALICE in alice_page.text
    assert "bob" not in alice_page.text
    assert BOB not in alice_page.text
    assert "Signed in as bob" in bob_page.text
    assert ALICE not in bob_page.text
    # each page was built from its own user's stored token, and no page shows a token
    assert sorted(auth.userinfo_tokens) == sorted(
        [alice_tokens[AUTH_RS].access_token, bob_tokens[AUTH_RS].access_token]
    )
    for data in (*alice_tokens.values(), *bob_tokens.values()):
        assert data.access_token not in alice_page.text + bob_page.text
        assert data.refresh_token not in alice_page.text + bob_page.text


async def test_logout_revokes_and_removes_only_that_users_tokens(
    app: Starlette, store: AsyncTokenStore, auth: FakeAuth
) -> None:
    async with _browser(app) as alice, _browser(app) as bob:
        await asyncio.gather(_log_in(alice, auth, ALICE, "alice"), _log_in(bob, auth, BOB, "bob"))
        alice_tokens = await _tokens(store, ALICE)

        refused = await alice.post("/logout", data={"csrf": "forged"})
        assert refused.status_code == 400
        assert sorted(await _tokens(store, ALICE)) == [AUTH_RS, TRANSFER]

        out = await alice.post("/logout", data={"csrf": await _csrf(alice)})

        assert out.status_code == 303
        assert await _tokens(store, ALICE) == {}
        assert sorted(await _tokens(store, BOB)) == [AUTH_RS, TRANSFER]
        assert sorted(auth.revoked) == sorted(
            token for d in alice_tokens.values() for token in (d.access_token, d.refresh_token)
        )
        assert (await alice.get("/profile")).headers["location"] == "/login"
        assert "Signed in as bob" in (await bob.get("/profile")).text


async def test_a_callback_with_a_forged_state_stores_nothing(
    app: Starlette, store: AsyncTokenStore, auth: FakeAuth, settings: dict[str, Any]
) -> None:
    async with _browser(app) as client:
        await client.get("/login")
        code = auth.login_code(ALICE, "alice")

        answer = await client.get("/callback", params={"code": code, "state": "forged"})

    assert answer.status_code == 400
    assert auth.code_exchanges == 0
    storage = store.for_user(ALICE)
    ours = [
        ns async for ns in storage.iter_namespaces() if ns.startswith(settings["TOKENSTORE_APP"])
    ]
    assert ours == []


async def test_requests_at_once_refresh_an_expired_token_once(
    app: Starlette, store: AsyncTokenStore, auth: FakeAuth
) -> None:
    async with _expired_session(app, store, auth) as (alice, before):
        auth.refresh_delay = 0.2  # the three requests all find the token expired

        pages = await asyncio.gather(*(alice.get("/profile") for _ in range(3)))

    after = await store.for_user(ALICE).get_token_data(AUTH_RS)
    assert after is not None
    assert [page.status_code for page in pages] == [200, 200, 200]
    assert auth.refresh_calls == 1
    assert auth.rejected_refreshes == 0
    assert after.access_token != before.access_token
    assert after.identity_id == ALICE
    assert after.expires_at_seconds > time.time() + 3600
    assert auth.userinfo_tokens == [after.access_token] * 3


async def test_two_workers_refresh_an_expired_token_once(
    app: Starlette, store: AsyncTokenStore, auth: FakeAuth, settings: dict[str, Any]
) -> None:
    async with (
        _running(settings) as other_worker,
        _browser(app) as first,
        _browser(other_worker) as second,
    ):
        await _log_in(first, auth, ALICE, "alice")
        second.cookies.update(first.cookies)  # one browser, its requests on two workers
        before = await _expire(store, ALICE)
        auth.refresh_delay = 0.2  # both requests find the token expired

        pages = await asyncio.gather(first.get("/profile"), second.get("/profile"))

    after = await store.for_user(ALICE).get_token_data(AUTH_RS)
    assert after is not None
    assert [page.status_code for page in pages] == [200, 200]
    assert ["Signed in as alice" in page.text for page in pages] == [True, True]
    assert auth.refresh_calls == 1
    assert auth.rejected_refreshes == 0
    assert auth.is_live_refresh_token(after.refresh_token)
    assert after.access_token != before.access_token
    assert auth.userinfo_tokens == [after.access_token] * 2


async def test_a_refused_refresh_token_sends_the_user_to_log_in_again(
    app: Starlette, store: AsyncTokenStore, auth: FakeAuth
) -> None:
    async with _expired_session(app, store, auth) as (alice, before):
        auth.revoke({"token": before.refresh_token})  # revoked elsewhere, say

        answer = await alice.get("/profile")
        home = await alice.get("/")

    assert answer.status_code == 302
    assert answer.headers["location"] == "/login"
    assert auth.refresh_calls == auth.rejected_refreshes == 1
    assert "Signed in as" not in home.text  # the session was cleared
    assert auth.userinfo_tokens == []


@pytest.mark.sqlite
def test_the_one_command_serves_the_app_on_sqlite(tmp_path: Path) -> None:
    with serve_example("examples.async_webapp", tmp_path) as server:
        assert "Log in with Globus" not in server.index
        assert "GLOBUS_CLIENT_ID and GLOBUS_CLIENT_SECRET are not set" in server.index
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(server.url("/login"), timeout=2)
    assert refused.value.code == 503
    assert f"redirect URL http://localhost:{server.port}/callback" in server.stderr
    assert (tmp_path / "webapp-tokens.db").exists()

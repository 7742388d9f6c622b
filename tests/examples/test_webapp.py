"""The example web application, through its HTTP layer, with Globus Auth mocked offline."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import URL

from examples.webapp import create_app
from tests.support import REPO_ROOT
from tests.support.fake_auth import AUTH_RS, TRANSFER, FakeAuth
from tests.support.web_examples import app_settings, login_callback, serve_example
from tokenstore_sql import TokenStore

ALICE = str(uuid.uuid4())
BOB = str(uuid.uuid4())


@pytest.fixture
def app(database_url: URL, auth: FakeAuth) -> Iterator[Flask]:
    made = create_app(app_settings(auth, database_url))
    yield made
    made.extensions["token_store"].close()


def _store(app: Flask) -> TokenStore:
    store: TokenStore = app.extensions["token_store"]
    return store


def _log_in(app: Flask, auth: FakeAuth, identity_id: str, name: str) -> FlaskClient:
    """A browser of its own, logged in as ``identity_id``."""
    client = app.test_client()
    callback = login_callback(auth, client.get("/login"), identity_id, name)
    back = client.get("/callback", query_string=callback)
    assert back.status_code == 302
    return client


def _csrf(client: FlaskClient) -> str:
    with client.session_transaction() as session:
        return str(session["csrf"])


def test_two_users_at_once_each_see_only_their_own_tokens(app: Flask, auth: FakeAuth) -> None:
    alice, bob = _log_in(app, auth, ALICE, "alice"), _log_in(app, auth, BOB, "bob")
    store = _store(app)
    alice_tokens = store.for_user(ALICE).get_token_data_by_resource_server()
    bob_tokens = store.for_user(BOB).get_token_data_by_resource_server()

    alice_page = alice.get("/profile").get_data(as_text=True)
    bob_page = bob.get("/profile").get_data(as_text=True)

    assert sorted(alice_tokens) == sorted(bob_tokens) == [AUTH_RS, TRANSFER]
    assert {d.identity_id for d in alice_tokens.values()} == {ALICE}
    assert {d.identity_id for d in bob_tokens.values()} == {BOB}
    assert "Signed in as alice" in alice_page
    assert ALICE in alice_page
    assert "bob" not in alice_page
    assert BOB not in alice_page
    assert "Signed in as bob" in bob_page
    assert ALICE not in bob_page
    # each page was built from its own user's stored token, and no page shows a token
    assert auth.userinfo_tokens == [
        alice_tokens[AUTH_RS].access_token,
        bob_tokens[AUTH_RS].access_token,
    ]
    for data in (*alice_tokens.values(), *bob_tokens.values()):
        assert data.access_token not in alice_page + bob_page
        assert data.refresh_token not in alice_page + bob_page


def test_an_expired_access_token_is_refreshed_through_the_sdk(app: Flask, auth: FakeAuth) -> None:
    alice = _log_in(app, auth, ALICE, "alice")
    storage = _store(app).for_user(ALICE)
    before = storage.get_token_data(AUTH_RS)
    assert before is not None
    before.expires_at_seconds = int(time.time()) - 5
    storage.store_token_data_by_resource_server({AUTH_RS: before})

    page = alice.get("/profile")
    again = alice.get("/profile")

    after = storage.get_token_data(AUTH_RS)
    assert after is not None
    assert page.status_code == again.status_code == 200
    assert auth.refresh_calls == 1
    assert after.access_token != before.access_token
    assert after.expires_at_seconds > time.time() + 3600
    assert auth.userinfo_tokens == [after.access_token, after.access_token]


def test_logout_revokes_and_removes_only_that_users_tokens(app: Flask, auth: FakeAuth) -> None:
    alice, bob = _log_in(app, auth, ALICE, "alice"), _log_in(app, auth, BOB, "bob")
    store = _store(app)
    alice_tokens = store.for_user(ALICE).get_token_data_by_resource_server()

    refused = alice.post("/logout", data={"csrf": "forged"})
    assert refused.status_code == 400
    assert store.for_user(ALICE).get_token_data_by_resource_server() != {}

    out = alice.post("/logout", data={"csrf": _csrf(alice)})

    assert out.status_code == 302
    assert store.for_user(ALICE).get_token_data_by_resource_server() == {}
    assert sorted(store.for_user(BOB).get_token_data_by_resource_server()) == [AUTH_RS, TRANSFER]
    assert sorted(auth.revoked) == sorted(
        token for d in alice_tokens.values() for token in (d.access_token, d.refresh_token)
    )
    assert alice.get("/profile").status_code == 302  # back to login
    assert "Signed in as bob" in bob.get("/profile").get_data(as_text=True)


def test_a_callback_with_a_forged_state_stores_nothing(app: Flask, auth: FakeAuth) -> None:
    client = app.test_client()
    client.get("/login")
    code = auth.login_code(ALICE, "alice")

    answer = client.get(f"/callback?code={code}&state=forged")

    assert answer.status_code == 400
    assert auth.code_exchanges == 0
    assert _store(app).for_user(ALICE).get_token_data_by_resource_server() == {}


def test_without_credentials_the_app_starts_and_says_what_is_missing(tmp_path: Path) -> None:
    app = create_app(
        {"TOKENSTORE_SQL_URL": f"sqlite:///{tmp_path / 'tokens.db'}", "SECRET_KEY": "k"}
    )
    client = app.test_client()
    index = client.get("/").get_data(as_text=True)
    login = client.get("/login")
    app.extensions["token_store"].close()
    assert "GLOBUS_CLIENT_ID and GLOBUS_CLIENT_SECRET are not set" in index
    assert login.status_code == 503


@pytest.mark.sqlite
def test_the_one_command_serves_the_app_on_sqlite(tmp_path: Path) -> None:
    with serve_example("examples.webapp", tmp_path) as server:
        assert "Log in with Globus" not in server.index
        assert "GLOBUS_CLIENT_ID and GLOBUS_CLIENT_SECRET are not set" in server.index
    assert "GLOBUS_CLIENT_ID and GLOBUS_CLIENT_SECRET are not set" in server.stderr
    assert f"redirect URL http://localhost:{server.port}/callback" in server.stderr
    assert (tmp_path / "webapp-tokens.db").exists()


@pytest.mark.sqlite
@pytest.mark.parametrize("module", ["examples.webapp", "examples.async_webapp"])
@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("postgresql+psycopg://app:hunter2@127.0.0.1:1/tokens", "could not open the database"),
        ("oracle://app:hunter2@127.0.0.1/tokens", "tokenstore-sql supports sqlite"),
    ],
)
def test_an_example_whose_database_is_down_or_driver_missing_says_so_in_one_line(
    module: str, url: str, said: str
) -> None:
    env = {**os.environ, "TOKENSTORE_SQL_URL": url, "WEBAPP_PORT": "1"}
    result = subprocess.run(
        [sys.executable, "-m", module],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ")
    assert said in last
    assert "hunter2" not in result.stdout + result.stderr

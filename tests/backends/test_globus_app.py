"""Our storage as a GlobusApp's token storage, driven offline."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import globus_sdk
import pytest
import responses
from globus_sdk.login_flows import LoginFlowManager
from sqlalchemy import URL

from tests.support import REPO_ROOT
from tests.support.fake_auth import FakeAuth, mocked
from tests.support.sdk import SDK_VERSION_INFO, TokenStorageData, load_response, make_token_data
from tokenstore_sql import SQLAlchemyTokenStorage, generate_key, globus_app_namespace

TRANSFER = "transfer.api.globus.org"
TRANSFER_SCOPE = "urn:globus:auth:scope:transfer.api.globus.org:all"


def _client_app(storage: object, client_id: str) -> globus_sdk.ClientApp:
    config = globus_sdk.GlobusAppConfig(token_storage=storage)  # type: ignore[arg-type]
    return globus_sdk.ClientApp(
        "tokenstore-test-app",
        client_id=client_id,
        client_secret="client-secret",
        scope_requirements={TRANSFER: [TRANSFER_SCOPE]},
        config=config,
    )


# globus-sdk 3.46 and 3.47 ClientApps insist on an id_token, which client credentials
# grants do not return; that is the SDK's own limitation, whatever the storage.
needs_clientapp_without_id_token = pytest.mark.skipif(
    SDK_VERSION_INFO < (3, 48), reason="globus-sdk < 3.48 ClientApp requires an id_token"
)


@pytest.fixture
def url_in_environment(database_url: URL, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test's database as TOKENSTORE_SQL_URL, where an app's storage looks for it."""
    monkeypatch.setenv("TOKENSTORE_SQL_URL", database_url.render_as_string(hide_password=False))


def _token_requests() -> int:
    return sum(1 for call in responses.calls if call.request.url.endswith("/v2/oauth2/token"))


@needs_clientapp_without_id_token
@responses.activate
@pytest.mark.usefixtures("url_in_environment")
def test_client_app_stores_tokens_in_the_database_and_a_second_app_reuses_them(
    database_url: URL,
) -> None:
    meta = load_response("auth.oauth2_client_credentials_tokens").metadata
    client_id = str(uuid.uuid4())

    first = _client_app(SQLAlchemyTokenStorage, client_id)
    first.get_authorizer(TRANSFER).get_authorization_header()
    assert _token_requests() == 1

    second = _client_app(SQLAlchemyTokenStorage, client_id)
    header = second.get_authorizer(TRANSFER).get_authorization_header()

    assert _token_requests() == 1  # no new grant: the stored token was reused
    assert header == f"Bearer {meta['access_token']}"
    namespace = globus_app_namespace(client_id, "tokenstore-test-app")
    with SQLAlchemyTokenStorage(database_url, namespace=namespace) as storage:
        stored = storage.get_token_data(TRANSFER)
    assert stored is not None
    assert stored.access_token == meta["access_token"]


@pytest.mark.sqlite
@needs_clientapp_without_id_token
@responses.activate
def test_without_a_url_the_app_uses_sqlite_beside_the_sdk_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TOKENSTORE_SQL_URL", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    load_response("auth.oauth2_client_credentials_tokens")
    client_id = str(uuid.uuid4())

    _client_app(SQLAlchemyTokenStorage, client_id).get_authorizer(TRANSFER)

    expected = tmp_path / ".globus" / "app" / client_id / "tokenstore-test-app"
    assert (expected / "tokens.tokenstore.db").exists()


@responses.activate
@pytest.mark.usefixtures("url_in_environment")
def test_an_app_storage_encrypts_with_keys_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = generate_key()
    monkeypatch.setenv("TOKENSTORE_SQL_KEYS", key)
    load_response("auth.oauth2_client_credentials_tokens")
    namespace = f"app-{uuid.uuid4()}"

    storage_client_id = str(uuid.uuid4())
    storage = SQLAlchemyTokenStorage.for_globus_app(
        client_id=storage_client_id,
        app_name="app",
        config=globus_sdk.GlobusAppConfig(),
        namespace=namespace,
    )

    assert storage.namespace == globus_app_namespace(storage_client_id, "app", namespace=namespace)
    assert storage.keys is not None
    storage.close()


@needs_clientapp_without_id_token
@responses.activate
@pytest.mark.usefixtures("url_in_environment")
def test_apps_sharing_a_database_never_see_each_others_tokens() -> None:
    load_response("auth.oauth2_client_credentials_tokens")
    first_client, second_client = str(uuid.uuid4()), str(uuid.uuid4())

    _client_app(SQLAlchemyTokenStorage, first_client).get_authorizer(TRANSFER)
    assert _token_requests() == 1
    _client_app(SQLAlchemyTokenStorage, second_client).get_authorizer(TRANSFER)
    assert _token_requests() == 2  # the other client's token was not handed out
    _client_app(SQLAlchemyTokenStorage, first_client).get_authorizer(TRANSFER)
    assert _token_requests() == 2  # while each app finds its own again


@pytest.mark.usefixtures("url_in_environment")
def test_each_app_name_and_environment_gets_a_namespace_of_its_own() -> None:
    client_id = str(uuid.uuid4())
    apps = [
        (client_id, "portal", globus_sdk.GlobusAppConfig()),
        (client_id, "portal-admin", globus_sdk.GlobusAppConfig()),
        (client_id, "portal", globus_sdk.GlobusAppConfig(environment="sandbox")),
    ]
    storages = [
        SQLAlchemyTokenStorage.for_globus_app(
            client_id=app_client, app_name=name, config=config, namespace="DEFAULT"
        )
        for app_client, name, config in apps
    ]
    try:
        storages[0].store_token_data_by_resource_server({TRANSFER: make_token_data(TRANSFER)})
        assert len({storage.namespace for storage in storages}) == 3
        assert [storage.get_token_data(TRANSFER) is not None for storage in storages] == [
            True,
            False,
            False,
        ]
    finally:
        for storage in storages:
            storage.close()


def test_app_namespaces_cannot_collide_through_separators_in_names() -> None:
    client_id = "0d6e1f3c-0000-4000-8000-000000000001"
    assert globus_app_namespace(client_id, "a:b", namespace="c") != globus_app_namespace(
        client_id, "a", namespace="b:c"
    )
    assert globus_app_namespace(client_id, "a%3Ab") != globus_app_namespace(client_id, "a:b")
    assert globus_app_namespace(client_id, "My App") == (
        f"globus-app:production:{client_id}:My App:DEFAULT"
    )


def _guide_move_commands() -> str:
    guide = (REPO_ROOT / "docs" / "guides" / "globus-app.md").read_text(encoding="utf-8")
    return guide.split("```sh\n", 1)[1].split("```", 1)[0]


def test_the_guide_moves_rows_of_the_shared_default_namespace_to_the_app(
    empty_database_url: URL, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = empty_database_url.render_as_string(hide_password=False)
    monkeypatch.setenv("TOKENSTORE_SQL_URL", url)
    client_id = str(uuid.uuid4())
    with SQLAlchemyTokenStorage(url, namespace="DEFAULT") as old:
        old.store_token_data_by_resource_server({TRANSFER: make_token_data(TRANSFER)})
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "CLIENT_ID": client_id,
        "APP_NAME": "portal",
    }
    subprocess.run(
        ["bash", "-euc", _guide_move_commands()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        check=True,
        timeout=120,
    )

    config = globus_sdk.GlobusAppConfig()
    with SQLAlchemyTokenStorage(url, namespace="DEFAULT") as old:
        assert old.get_token_data_by_resource_server() == {}
    moved = SQLAlchemyTokenStorage.for_globus_app(client_id, "portal", config, "DEFAULT")
    with moved:
        assert moved.get_token_data(TRANSFER) is not None
    assert not list(tmp_path.glob("*.json"))  # the token file is gone


def test_remove_namespace_removes_every_resource_server_of_that_namespace_only(
    storage: SQLAlchemyTokenStorage,
) -> None:
    other = SQLAlchemyTokenStorage(storage.engine, namespace=storage.namespace + "-other")
    other.store_token_data_by_resource_server({"rs": make_token_data("rs")})
    storage.store_token_data_by_resource_server({rs: make_token_data(rs) for rs in ("a", "b", "c")})

    assert storage.remove_namespace() == 3
    assert storage.get_token_data_by_resource_server() == {}
    assert storage.remove_namespace() == 0
    assert other.get_token_data("rs") is not None


# UserApp: a login flow driven offline. The flow manager below plays the user's browser:
# it starts the flow as the SDK's own managers do, then exchanges the code that the fake
# Auth hands out for the identity of the test's choosing.

USER_SCOPES = {TRANSFER: [TRANSFER_SCOPE]}


class _BrowserFlow(LoginFlowManager):
    def __init__(self, login_client: Any, auth: FakeAuth, identity_id: str, refresh: bool) -> None:
        super().__init__(login_client, request_refresh_tokens=refresh)
        self.auth = auth
        self.identity_id = identity_id
        self.authorize_urls: list[str] = []

    def run_login_flow(self, auth_parameters: Any) -> globus_sdk.OAuthTokenResponse:
        self.authorize_urls.append(
            self._get_authorize_url(auth_parameters, "https://app.example.org/callback")
        )
        code = self.auth.login_code(self.identity_id)
        return self.login_client.oauth2_exchange_code_for_tokens(code)  # type: ignore[union-attr]


class _Browser:
    """A ``LoginFlowManagerProvider``: the app builds its flow manager from it."""

    def __init__(self, auth: FakeAuth, identity_id: str) -> None:
        self.auth = auth
        self.identity_id = identity_id
        self.flows: list[_BrowserFlow] = []

    def for_globus_app(self, *, app_name: str, config: Any, login_client: Any) -> _BrowserFlow:
        flow = _BrowserFlow(
            login_client, self.auth, self.identity_id, config.request_refresh_tokens
        )
        self.flows.append(flow)
        return flow


def _user_app(
    auth: FakeAuth, token_storage: object, identity_id: str, app_name: str = "tokenstore-user-app"
) -> globus_sdk.UserApp:
    config = globus_sdk.GlobusAppConfig(
        token_storage=token_storage,  # type: ignore[arg-type]
        login_flow_manager=_Browser(auth, identity_id),  # type: ignore[arg-type]
        request_refresh_tokens=True,
    )
    return globus_sdk.UserApp(
        app_name,
        client_id=auth.client_id,
        client_secret="client-secret",
        scope_requirements=USER_SCOPES,
        config=config,
    )


def _close(app: globus_sdk.UserApp) -> None:
    # globus-sdk 4 apps close what they made; 3.x apps have no close(): close it here.
    app.token_storage.token_storage.close()
    if hasattr(app, "close"):
        app.close()


def _expire(storage: SQLAlchemyTokenStorage, resource_server: str) -> TokenStorageData:
    data = storage.get_token_data(resource_server)
    assert data is not None
    data.expires_at_seconds = int(time.time()) - 10
    storage.store_token_data_by_resource_server({resource_server: data})
    return data


def test_user_app_logs_in_through_the_provider_and_a_second_app_reuses_the_tokens(
    empty_database_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "TOKENSTORE_SQL_URL", empty_database_url.render_as_string(hide_password=False)
    )
    auth = FakeAuth()
    identity = str(uuid.uuid4())
    with mocked(auth):
        first = _user_app(auth, SQLAlchemyTokenStorage, identity)
        first.login()
        second = _user_app(auth, SQLAlchemyTokenStorage, identity)
        assert second.login_required() is False
        header = second.get_authorizer(TRANSFER).get_authorization_header()
        another_app = _user_app(auth, SQLAlchemyTokenStorage, identity, "another-app")
        assert another_app.login_required() is True  # one app's login is not another's
        for app in (first, second, another_app):
            _close(app)

    assert auth.code_exchanges == 1  # the second app made no token request
    namespace = globus_app_namespace(auth.client_id, "tokenstore-user-app")
    with SQLAlchemyTokenStorage(empty_database_url, namespace=namespace) as storage:
        stored = storage.get_token_data_by_resource_server()
    assert sorted(stored) == ["auth.globus.org", TRANSFER]
    assert header == f"Bearer {stored[TRANSFER].access_token}"
    assert {data.identity_id for data in stored.values()} == {identity}
    assert auth.access_owner(stored[TRANSFER].access_token) == identity


def test_user_app_refresh_and_relogin_update_the_rows_and_logout_removes_them(
    storage: SQLAlchemyTokenStorage,
) -> None:
    auth = FakeAuth()
    identity = str(uuid.uuid4())
    bystander = SQLAlchemyTokenStorage(storage.engine, namespace=storage.namespace + "-other")
    bystander.store_token_data_by_resource_server({TRANSFER: make_token_data()})
    with mocked(auth):
        app = _user_app(auth, storage, identity)  # an instance, in its own namespace
        app.login()
        logged_in = storage.get_token_data(TRANSFER)
        expired = _expire(storage, TRANSFER)

        # a new app (another process, say) finds the token expired and refreshes it
        later = _user_app(auth, storage, identity)
        header = later.get_authorizer(TRANSFER).get_authorization_header()
        refreshed = storage.get_token_data(TRANSFER)

        later.login(force=True)
        relogged = storage.get_token_data(TRANSFER)

        later.logout()
        remaining = storage.get_token_data_by_resource_server()

    assert logged_in is not None
    assert refreshed is not None
    assert relogged is not None
    assert auth.refresh_calls == 1
    assert header == f"Bearer {refreshed.access_token}"
    assert refreshed.access_token != expired.access_token
    assert refreshed.refresh_token != expired.refresh_token
    assert refreshed.expires_at_seconds > time.time()
    assert refreshed.identity_id == identity
    assert auth.code_exchanges == 2
    assert relogged.access_token not in (logged_in.access_token, refreshed.access_token)
    assert remaining == {}
    assert relogged.access_token in auth.revoked
    assert relogged.refresh_token in auth.revoked
    assert bystander.get_token_data(TRANSFER) is not None

"""Our storage as a GlobusApp's token storage, driven offline."""

from __future__ import annotations

import uuid
from pathlib import Path

import globus_sdk
import pytest
import responses
from sqlalchemy import URL

from tokenstore_sql import SQLAlchemyTokenStorage, generate_key

from .sdk import SDK_VERSION_INFO, load_response

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


def _token_requests() -> int:
    return sum(1 for call in responses.calls if call.request.url.endswith("/v2/oauth2/token"))


@needs_clientapp_without_id_token
@responses.activate
def test_client_app_stores_tokens_in_the_database_and_a_second_app_reuses_them(
    database_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKENSTORE_SQL_URL", database_url.render_as_string(hide_password=False))
    meta = load_response("auth.oauth2_client_credentials_tokens").metadata
    client_id = str(uuid.uuid4())

    first = _client_app(SQLAlchemyTokenStorage, client_id)
    first.get_authorizer(TRANSFER).get_authorization_header()
    assert _token_requests() == 1

    second = _client_app(SQLAlchemyTokenStorage, client_id)
    header = second.get_authorizer(TRANSFER).get_authorization_header()

    assert _token_requests() == 1  # no new grant: the stored token was reused
    assert header == f"Bearer {meta['access_token']}"
    with SQLAlchemyTokenStorage(database_url, namespace="DEFAULT") as storage:
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
def test_an_app_storage_encrypts_with_keys_from_the_environment(
    database_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = generate_key()
    monkeypatch.setenv("TOKENSTORE_SQL_URL", database_url.render_as_string(hide_password=False))
    monkeypatch.setenv("TOKENSTORE_SQL_KEYS", key)
    load_response("auth.oauth2_client_credentials_tokens")
    namespace = f"app-{uuid.uuid4()}"

    storage = SQLAlchemyTokenStorage.for_globus_app(
        client_id=str(uuid.uuid4()),
        app_name="app",
        config=globus_sdk.GlobusAppConfig(),
        namespace=namespace,
    )

    assert storage.namespace == namespace
    assert storage.keys is not None
    storage.close()


def test_remove_namespace_removes_every_resource_server_of_that_namespace_only(
    storage: SQLAlchemyTokenStorage,
) -> None:
    from .sdk import make_token_data

    other = SQLAlchemyTokenStorage(storage.engine, namespace=storage.namespace + "-other")
    other.store_token_data_by_resource_server({"rs": make_token_data("rs")})
    storage.store_token_data_by_resource_server({rs: make_token_data(rs) for rs in ("a", "b", "c")})

    assert storage.remove_namespace() == 3
    assert storage.get_token_data_by_resource_server() == {}
    assert storage.remove_namespace() == 0
    assert other.get_token_data("rs") is not None

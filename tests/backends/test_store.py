"""TokenStore: one engine, a cheap storage per user, the namespace convention."""

from __future__ import annotations

import uuid
from typing import Any

import globus_sdk
import pytest
from sqlalchemy import Engine, event, text

from tests.support.sdk import make_token_data
from tokenstore_sql import InvalidTokenDataError, MissingTokenDataError, TokenStore, user_namespace
from tokenstore_sql.refresh import LockingRefreshTokenAuthorizer


def test_user_namespaces_follow_the_convention() -> None:
    identity = uuid.uuid4()
    assert user_namespace(identity) == f"user:{identity}"
    assert user_namespace(str(identity).upper()) == f"user:{identity}"
    assert user_namespace(identity, app="portal-prod") == f"portal-prod:user:{identity}"


@pytest.mark.parametrize("bad", ["", "not-a-uuid", "user:1234"])
def test_a_user_namespace_needs_an_identity_uuid(bad: str) -> None:
    with pytest.raises(InvalidTokenDataError, match="UUID"):
        user_namespace(bad)


@pytest.mark.parametrize("app", ["", "a:b", "with space", "x" * 65])
def test_an_app_label_is_short_and_plain(app: str) -> None:
    with pytest.raises(InvalidTokenDataError, match="app label"):
        user_namespace(uuid.uuid4(), app=app)
    with pytest.raises(InvalidTokenDataError, match="app label"):
        TokenStore("sqlite://", app=app)


def test_a_store_and_a_storage_per_user_cost_no_sql_once_the_schema_is_checked(
    engine: Engine,
) -> None:
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    event.listen(engine, "before_cursor_execute", record)
    try:
        store = TokenStore(engine)
        assert statements == []  # the schema check is deferred
        store.check_schema()
        statements.clear()
        storages = [store.for_user(uuid.uuid4()) for _ in range(50)]
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert statements == []
    assert {s.engine for s in storages} == {engine}
    assert len({s.namespace for s in storages}) == 50


def test_users_see_only_their_own_tokens_and_removal_is_per_user(engine: Engine) -> None:
    store = TokenStore(engine, app="tests")
    alice, bob = uuid.uuid4(), uuid.uuid4()
    store.for_user(alice).store_token_data_by_resource_server(
        {"rs": make_token_data("rs", access_token="alice-SECRET")}
    )
    store.for_user(bob).store_token_data_by_resource_server(
        {rs: make_token_data(rs, access_token="bob-SECRET") for rs in ("rs", "other")}
    )

    alice_data = store.for_user(alice).get_token_data_by_resource_server()
    assert [d.access_token for d in alice_data.values()] == ["alice-SECRET"]
    assert store.remove_user(bob) == 2
    assert store.for_user(bob).get_token_data_by_resource_server() == {}
    assert store.for_user(alice).get_token_data("rs") is not None


def test_a_store_disposes_only_an_engine_it_created(engine: Engine, tmp_path: Any) -> None:
    with TokenStore(engine) as borrowed:
        pass
    assert borrowed.owns_engine is False
    with engine.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar() == 1

    url = f"sqlite:///{tmp_path / 'own.db'}"
    owned = TokenStore(url)
    assert owned.owns_engine is True
    owned.close()
    owned.close()  # idempotent
    assert owned.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


def test_a_store_hands_out_locking_authorizers(engine: Engine) -> None:
    store = TokenStore(engine)
    identity = uuid.uuid4()
    client = globus_sdk.ConfidentialAppAuthClient(str(uuid.uuid4()), "client-secret")
    with pytest.raises(MissingTokenDataError):
        store.authorizer(identity, "rs", client)

    store.for_user(identity).store_token_data_by_resource_server(
        {"rs": make_token_data("rs", access_token="fresh-SECRET")}
    )
    authorizer = store.authorizer(identity, "rs", client)
    assert isinstance(authorizer, LockingRefreshTokenAuthorizer)
    assert isinstance(authorizer, globus_sdk.RefreshTokenAuthorizer)
    assert authorizer.get_authorization_header() == "Bearer fresh-SECRET"

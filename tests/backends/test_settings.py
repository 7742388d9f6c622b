"""StoreSettings: one checked settings object for storages, stores and admin operations."""

from __future__ import annotations

import io
import json
import pickle
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import URL, Engine, event

from tests.support.apis import LoopThread
from tests.support.sdk import make_token_data
from tokenstore_sql import (
    Placement,
    RetryPolicy,
    SchemaOutOfDateError,
    SQLAlchemyTokenStorage,
    StoreSettings,
    TokenStore,
    create_async_engine,
    create_engine,
    generate_key,
)
from tokenstore_sql.async_store import AsyncTokenStore
from tokenstore_sql.crypto import KeyRing
from tokenstore_sql.errors import ConfigurationError, EncryptionKeyError
from tokenstore_sql.schema import head_revision, migrate
from tokenstore_sql.settings import DEFAULT_SETTINGS

KEY_A, KEY_B = generate_key(), generate_key()
OLDEST = "0001"


@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [
        ("placement", "tokens", "placement must be a Placement (got str)"),
        ("retry", 3, "retry must be a RetryPolicy (got int)"),
        ("create_schema", "yes", "create_schema must be a bool (got str)"),
        ("upgrade_schema", 1, "upgrade_schema must be a bool (got int)"),
        ("engine_options", ["pool_size"], "engine_options must be a Mapping (got list)"),
        ("engine_options", {1: 2}, "engine_options must be keyed by option names (got int)"),
        ("keys", 42, "keys must be a KeyRing or a list of keys (got int)"),
        ("keys", {"k": KEY_A}, "keys must be a KeyRing or a list of keys (got dict)"),
    ],
)
def test_a_bad_field_is_a_configuration_error_naming_it(
    field: str, value: object, shown: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        StoreSettings(**{field: value})
    assert str(caught.value) == shown
    with pytest.raises(ConfigurationError, match=f"^{field} must be"):
        SQLAlchemyTokenStorage("sqlite://", **{field: value})
    with pytest.raises(ConfigurationError, match=f"^{field} must be"):
        TokenStore("sqlite://", **{field: value})


def test_bad_keys_are_refused_as_keys_and_never_shown() -> None:
    secret = "not-a-key-but-a-secret-value"
    with pytest.raises(EncryptionKeyError) as caught:
        StoreSettings(keys=[secret])
    assert secret not in str(caught.value)
    with pytest.raises(EncryptionKeyError, match="at least one key"):
        StoreSettings(keys=[])


def test_an_unknown_setting_or_settings_of_another_kind_is_refused() -> None:
    with pytest.raises(TypeError, match="unknown setting 'encryption_keys'; the settings are"):
        SQLAlchemyTokenStorage("sqlite://", encryption_keys=[KEY_A])  # type: ignore[call-arg]
    with pytest.raises(ConfigurationError, match=r"^settings must be a StoreSettings \(got dict"):
        TokenStore("sqlite://", settings={"keys": [KEY_A]})  # type: ignore[arg-type]


def test_the_repr_shows_key_ids_and_option_names_never_secrets() -> None:
    settings = StoreSettings(
        keys=[KEY_A, KEY_B], engine_options={"connect_args": {"password": "hunter2-secret"}}
    )
    shown = repr(settings)
    assert KEY_A not in shown
    assert KEY_B not in shown
    assert "hunter2" not in shown
    assert KeyRing([KEY_A]).primary_key_id in shown
    assert "engine_options=['connect_args']" in shown
    plain = settings.replace(engine_options={})  # SQLite takes no password
    with SQLAlchemyTokenStorage("sqlite://", settings=plain) as storage:
        assert KEY_A not in repr(storage)
        assert KEY_A not in repr(storage.settings)


def test_settings_are_frozen_and_keywords_replace_their_field() -> None:
    base = StoreSettings(keys=[KEY_A], placement=Placement("app_"), create_schema=False)
    with pytest.raises(AttributeError):
        base.create_schema = True  # type: ignore[misc]
    changed = base.replace(create_schema=True)
    assert (changed.create_schema, changed.placement, changed.keys) == (
        True,
        base.placement,
        base.keys,
    )
    assert base.create_schema is False
    assert StoreSettings.of(base) is base
    assert StoreSettings.of(None) == StoreSettings()
    # Given none, every storage shares the one frozen defaults object: nothing is built.
    assert StoreSettings.of(None) is StoreSettings.of(None) is DEFAULT_SETTINGS
    with (
        SQLAlchemyTokenStorage("sqlite://") as first,
        SQLAlchemyTokenStorage(first.engine, namespace="other") as second,
    ):
        assert first.settings is second.settings is DEFAULT_SETTINGS
    assert isinstance(StoreSettings().retry, RetryPolicy)
    with TokenStore("sqlite://", settings=base, retry=RetryPolicy(attempts=2)) as store:
        assert store.settings.retry.attempts == 2
        assert store.settings.placement == Placement("app_")


def test_settings_pickle_with_their_keys() -> None:
    settings = StoreSettings(keys=[KEY_A], engine_options={"pool_size": 3})
    again = pickle.loads(pickle.dumps(settings))
    assert again.keys is not None
    assert again.keys.key_ids == settings.keys.key_ids
    assert dict(again.engine_options) == {"pool_size": 3}


def test_one_settings_object_gives_a_storage_and_a_store_the_same_rows(
    empty_database_url: URL, namespace: str
) -> None:
    database_url = empty_database_url
    settings = StoreSettings(keys=[KEY_A], placement=Placement("shared_"))
    data = make_token_data("rs", access_token="AT-secret")
    with SQLAlchemyTokenStorage(database_url, namespace=namespace, settings=settings) as storage:
        storage.store_token_data_by_resource_server({"rs": data})
    with TokenStore(database_url, settings=settings) as store:
        found = store.for_namespace(namespace).get_token_data("rs")
        assert found is not None
        assert found.access_token == "AT-secret"
        assert store.stats().total.rows >= 1
        # the rows are sealed with the settings' key: without it they do not open
        report = store.rotate_keys(decrypt=True)
        assert report.unreadable == []
        assert report.rewritten >= 1
    with TokenStore(database_url, placement=Placement("shared_")) as clear:
        found = clear.for_namespace(namespace).get_token_data("rs")
        assert found is not None
        assert found.access_token == "AT-secret"


def test_the_store_runs_every_admin_operation_with_its_settings(
    empty_database_url: URL, namespace: str, tmp_path: Path
) -> None:
    database_url = empty_database_url
    settings = StoreSettings(keys=[KEY_A], placement=Placement("admin_"))
    now = int(time.time())
    with TokenStore(database_url, settings=settings) as store:
        store.for_namespace(namespace).store_token_data_by_resource_server(
            {
                "live": make_token_data("live"),
                "dead": make_token_data("dead", expires_at_seconds=now - 10, refresh_token=None),
            }
        )
        assert store.check().at_head  # the first storage created the schema
        assert namespace in store.namespaces()
        counts = {c.name: c.rows for c in store.stats().by_namespace}
        assert counts[namespace] == 2
        assert store.prune(dry_run=True) == 1
        assert store.prune() == 1

        exported = tmp_path / "tokens.json"
        assert store.export_file(exported, namespaces=[namespace]) == {namespace: 1}
        stream = io.StringIO()
        store.export_stream(stream, namespaces=[namespace])
        assert json.loads(stream.getvalue())["data"][namespace]["live"]["resource_server"]

        store.for_namespace(namespace).remove_namespace()
        report = store.import_files([exported])
        assert [(c.namespace, c.added) for c in report.counts] == [(namespace, 1)]

        with TokenStore(database_url, settings=settings.replace(keys=[KEY_B, KEY_A])) as next_:
            assert next_.rotate_keys().rewritten >= 1
            found = next_.for_namespace(namespace).get_token_data("live")
            assert found is not None
            assert found.access_token is not None
        assert store.status().at_head


def test_constructing_a_store_does_no_io(engine: Engine) -> None:
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    event.listen(engine, "before_cursor_execute", record)
    try:
        TokenStore(engine, create_schema=False, upgrade_schema=True).close()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert statements == []


def test_a_store_over_an_older_schema_checks_and_upgrades_it(empty_database_url: URL) -> None:
    engine = create_engine(empty_database_url)
    try:
        migrate(engine, OLDEST)
        with TokenStore(engine) as store:  # the default policy refuses to upgrade ...
            with pytest.raises(SchemaOutOfDateError) as caught:
                store.check()
            assert (caught.value.current, caught.value.head) == (OLDEST, head_revision())
            assert store.status().current == OLDEST
            with pytest.raises(SchemaOutOfDateError):
                store.for_namespace("n")
            assert store.upgrade() == head_revision()  # ... but upgrade() is the request
            assert store.check().at_head
            store.for_namespace("n").store_token_data_by_resource_server(
                {"rs": make_token_data("rs")}
            )
            assert store.namespaces() == ["n"]
    finally:
        engine.dispose()


def test_an_async_store_over_an_older_schema_checks_and_upgrades_it(
    empty_database_url: URL, loop_thread: LoopThread
) -> None:
    engine = create_engine(empty_database_url)
    try:
        migrate(engine, OLDEST)
    finally:
        engine.dispose()

    async def scenario() -> tuple[str | None, bool]:
        async_engine = create_async_engine(empty_database_url)
        try:
            store = AsyncTokenStore(async_engine, settings=StoreSettings(keys=[KEY_A]))
            try:
                await store.check()
            except SchemaOutOfDateError as exc:
                before = exc.current
            else:
                before = None
            await store.upgrade()
            after = await store.check()
            await store.for_namespace("n").store_token_data_by_resource_server(
                {"rs": make_token_data("rs")}
            )
            return before, after.at_head
        finally:
            await async_engine.dispose()

    assert loop_thread.run(scenario()) == (OLDEST, True)

"""Tokens encrypted at rest: sealing, refusal without the right key, rotation, hygiene."""

from __future__ import annotations

import logging
import pickle
from typing import Any

import pytest
from sqlalchemy import URL, Engine, event, select, text, update

from tests.support.sdk import make_token_data
from tokenstore_sql import (
    SchemaOutOfDateError,
    SQLAlchemyTokenStorage,
    StoreSettings,
    UnreadableTokenDataError,
    create_engine,
    generate_key,
)
from tokenstore_sql.crypto import KeyRing
from tokenstore_sql.errors import EncryptionKeyError
from tokenstore_sql.models import TokenRow
from tokenstore_sql.rotation import rotate_keys
from tokenstore_sql.schema import head_revision, migrate

KEY_A = generate_key()
KEY_B = generate_key()


def _raw_rows(engine: Engine, namespace: str) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        rows = connection.execute(select(TokenRow.__table__).where(TokenRow.namespace == namespace))
        return [dict(row) for row in rows.mappings()]


@pytest.fixture
def own_engine(empty_database_url: URL) -> Any:
    """An engine on a database of this test's own: rotation works database-wide."""
    engine = create_engine(empty_database_url)
    yield engine
    engine.dispose()


def _store_three(storage: Any) -> dict[str, Any]:
    data = {rs: make_token_data(rs) for rs in ("a.example.org", "b.example.org", "c.example.org")}
    data["c.example.org"].refresh_token = None
    storage.store_token_data_by_resource_server(data)
    return data


def test_encrypted_tokens_read_back_and_never_appear_in_the_table(
    engine: Engine, namespace: str, make_api_storage: Any
) -> None:
    storage = make_api_storage(namespace, keys=[KEY_A])
    stored = _store_three(storage)

    got = storage.get_token_data_by_resource_server()

    assert {rs: d.to_dict() for rs, d in got.items()} == {
        rs: d.to_dict() for rs, d in stored.items()
    }
    raw = _raw_rows(engine, namespace)
    everything = repr(raw)
    for data in stored.values():
        assert data.access_token not in everything
        if data.refresh_token:
            assert data.refresh_token not in everything
        assert data.scope in everything  # metadata stays queryable
    assert {row["token_key_id"] for row in raw} == {KeyRing([KEY_A]).primary_key_id}
    assert next(r for r in raw if r["resource_server"] == "c.example.org")["refresh_token"] is None


def test_a_storage_without_keys_says_keys_are_needed(
    engine: Engine, namespace: str, make_api_storage: Any
) -> None:
    _store_three(make_api_storage(namespace, keys=[KEY_A]))
    plain = make_api_storage(namespace)

    with pytest.raises(UnreadableTokenDataError) as caught:
        plain.get_token_data("a.example.org")

    assert "encryption keys" in str(caught.value)
    assert namespace in str(caught.value)
    assert "a.example.org" in str(caught.value)
    with pytest.raises(UnreadableTokenDataError):
        plain.get_token_data_by_resource_server()


def test_a_storage_with_other_keys_refuses_rather_than_return_ciphertext(
    engine: Engine, namespace: str, make_api_storage: Any
) -> None:
    _store_three(make_api_storage(namespace, keys=[KEY_A]))
    other = make_api_storage(namespace, keys=[KEY_B])

    with pytest.raises(UnreadableTokenDataError, match="not in the key ring"):
        other.get_token_data("a.example.org")


def test_a_ciphertext_moved_to_another_row_does_not_decrypt(
    engine: Engine, namespace: str, make_api_storage: Any
) -> None:
    storage = make_api_storage(namespace, keys=[KEY_A])
    _store_three(storage)
    raw = {row["resource_server"]: row for row in _raw_rows(engine, namespace)}
    with engine.begin() as connection:
        connection.execute(
            update(TokenRow)
            .where(TokenRow.namespace == namespace, TokenRow.resource_server == "b.example.org")
            .values(access_token=raw["a.example.org"]["access_token"])
        )

    assert storage.get_token_data("a.example.org") is not None
    with pytest.raises(UnreadableTokenDataError, match="moved from another row"):
        storage.get_token_data("b.example.org")


def test_every_key_of_the_ring_decrypts_and_the_first_encrypts(
    engine: Engine, namespace: str, make_api_storage: Any
) -> None:
    _store_three(make_api_storage(namespace, keys=[KEY_A]))
    both = make_api_storage(namespace, keys=[KEY_B, KEY_A])

    assert len(both.get_token_data_by_resource_server()) == 3
    both.store_token_data_by_resource_server(
        {"new.example.org": make_token_data("new.example.org")}
    )
    key_ids = {r["resource_server"]: r["token_key_id"] for r in _raw_rows(engine, namespace)}
    assert key_ids["new.example.org"] == KeyRing([KEY_B]).primary_key_id
    assert key_ids["a.example.org"] == KeyRing([KEY_A]).primary_key_id


def test_rotation_from_clear_to_key_a_to_key_b(own_engine: Engine, namespace: str) -> None:
    stored = _store_three(SQLAlchemyTokenStorage(own_engine, namespace=namespace))
    expected = {rs: d.to_dict() for rs, d in stored.items()}

    first = rotate_keys(own_engine, StoreSettings(keys=KeyRing([KEY_A])), batch_size=2)
    assert first.unreadable == []
    assert first.rewritten >= 3
    under_a = SQLAlchemyTokenStorage(own_engine, namespace=namespace, keys=[KEY_A])
    assert {
        rs: d.to_dict() for rs, d in under_a.get_token_data_by_resource_server().items()
    } == expected
    assert stored["a.example.org"].access_token not in repr(_raw_rows(own_engine, namespace))

    rotate_keys(own_engine, StoreSettings(keys=KeyRing([KEY_B, KEY_A])), batch_size=2)
    only_b = SQLAlchemyTokenStorage(own_engine, namespace=namespace, keys=[KEY_B])
    assert {
        rs: d.to_dict() for rs, d in only_b.get_token_data_by_resource_server().items()
    } == expected
    with pytest.raises(UnreadableTokenDataError):
        under_a.get_token_data("a.example.org")

    again = rotate_keys(own_engine, StoreSettings(keys=KeyRing([KEY_B])))
    assert again.rewritten == 0  # nothing left to do: rotation is idempotent


def test_rotation_reports_rows_no_key_can_open(own_engine: Engine, namespace: str) -> None:
    _store_three(SQLAlchemyTokenStorage(own_engine, namespace=namespace, keys=[KEY_A]))

    report = rotate_keys(own_engine, StoreSettings(keys=KeyRing([KEY_B])))

    mine = [pair for pair in report.unreadable if pair[0] == namespace]
    assert sorted(mine) == [
        (namespace, rs) for rs in ("a.example.org", "b.example.org", "c.example.org")
    ]


def test_an_interrupted_rotation_resumes(own_engine: Engine, namespace: str) -> None:
    storage = SQLAlchemyTokenStorage(own_engine, namespace=namespace)
    storage.store_token_data_by_resource_server(
        {f"rs{i:02d}": make_token_data(f"rs{i:02d}") for i in range(10)}
    )
    ring = KeyRing([KEY_A])
    calls = {"batches": 0}

    def stop_after_two_batches(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "token_key_id" in statement:
            calls["batches"] += 1
            if calls["batches"] > 2:
                raise KeyboardInterrupt

    event.listen(own_engine, "before_cursor_execute", stop_after_two_batches)
    try:
        with pytest.raises(KeyboardInterrupt):
            rotate_keys(own_engine, StoreSettings(keys=ring), batch_size=3)
    finally:
        event.remove(own_engine, "before_cursor_execute", stop_after_two_batches)
    key_ids = [r["token_key_id"] for r in _raw_rows(own_engine, namespace)]
    assert 0 < key_ids.count(ring.primary_key_id) < 10

    rotate_keys(own_engine, StoreSettings(keys=ring), batch_size=3)

    assert {r["token_key_id"] for r in _raw_rows(own_engine, namespace)} == {ring.primary_key_id}


def test_decrypting_stores_every_token_in_clear(own_engine: Engine, namespace: str) -> None:
    stored = _store_three(SQLAlchemyTokenStorage(own_engine, namespace=namespace, keys=[KEY_A]))

    rotate_keys(own_engine, StoreSettings(keys=KeyRing([KEY_A])), decrypt=True)

    raw = _raw_rows(own_engine, namespace)
    assert {r["token_key_id"] for r in raw} == {None}
    plain = SQLAlchemyTokenStorage(own_engine, namespace=namespace)
    assert (
        plain.get_token_data("a.example.org").access_token == stored["a.example.org"].access_token
    )  # type: ignore[union-attr]


def test_a_pickled_storage_keeps_its_keys(database_url: URL, namespace: str) -> None:
    storage = SQLAlchemyTokenStorage(database_url, namespace=namespace, keys=[KEY_A])
    _store_three(storage)

    copy = pickle.loads(pickle.dumps(storage))

    assert copy.get_token_data("a.example.org") is not None
    copy.close()
    storage.close()


@pytest.mark.parametrize("bad", ["not base64!!", "c2hvcnQ=", ""])
def test_malformed_keys_are_refused_without_showing_them(bad: str) -> None:
    with pytest.raises(EncryptionKeyError) as caught:
        KeyRing([bad] if bad else [])
    if bad:
        assert bad not in str(caught.value)


def test_reprs_never_show_keys(make_api_storage: Any, namespace: str) -> None:
    storage = make_api_storage(namespace, keys=[KEY_A])
    assert KEY_A not in repr(storage)
    assert KEY_A not in repr(storage.keys)
    assert KeyRing([KEY_A]).primary_key_id in repr(storage.keys)


@pytest.mark.parametrize("echo", [False, True])
def test_sqlalchemy_logging_shows_no_token_even_at_debug(
    open_api_storage: Any,
    database_url: URL,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
    echo: bool,
) -> None:
    caplog.set_level(logging.DEBUG)  # the host application logs everything,
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")  # SQLAlchemy's rows too
    storage = open_api_storage(database_url, namespace=namespace, engine_options={"echo": echo})
    data = make_token_data(
        "rs", access_token="LOGGED-ACCESS-SECRET", refresh_token="LOGGED-REFRESH-SECRET"
    )
    storage.store_token_data_by_resource_server({"rs": data})
    assert storage.get_token_data("rs") is not None
    storage.close()

    # SQLAlchemy logged what it ran (the sync storage's own statements run on the driver's
    # connection, out of its sight; the async storage's are logged)...
    assert any(record.name.startswith("sqlalchemy.engine") for record in caplog.records)
    assert "LOGGED-ACCESS-SECRET" not in caplog.text  # ...but neither bound nor fetched values
    assert "LOGGED-REFRESH-SECRET" not in caplog.text


def test_debug_echo_is_refused_because_it_logs_rows() -> None:
    with pytest.raises(ValueError, match="fetched row"):
        create_engine("sqlite://", echo="debug")


def test_upgrade_from_revision_0001_keeps_tokens(empty_database_url: URL) -> None:
    engine = create_engine(empty_database_url)
    migrate(engine, "0001")
    with engine.begin() as connection:  # a row as revision 0001 knew it, in plain SQL
        connection.execute(
            text(
                "INSERT INTO tokenstore_sql_tokens (namespace, resource_server, scope, "
                "access_token, refresh_token, expires_at_seconds, token_type, extra, created_at, "
                "updated_at) VALUES ('old', 'rs', 'openid', 'old-access', 'old-refresh', "
                "1900000000, 'Bearer', '{\"k\": \"v\"}', '2026-01-01 00:00:00', "
                "'2026-01-01 00:00:00')"
            )
        )

    with pytest.raises(SchemaOutOfDateError, match="tokenstore-sql upgrade"):
        SQLAlchemyTokenStorage(engine, namespace="old")
    migrate(engine, "head")
    storage = SQLAlchemyTokenStorage(engine, namespace="old")

    got = storage.get_token_data("rs")
    assert got is not None
    assert (got.access_token, got.refresh_token, got.extra) == (
        "old-access",
        "old-refresh",
        {"k": "v"},
    )
    with engine.connect() as connection:
        assert (
            connection.execute(text("SELECT version_num FROM tokenstore_sql_version")).scalar()
            == head_revision()
        )
    engine.dispose()

"""Keys full of NUL, U+FFFF, quotes and SQL are just data, stored the same on every backend.

``ExactKey`` escapes U+FFFF as U+FFFF U+FFFF and NUL as U+FFFF ``0``; everything else
is stored verbatim. These tests check the escape itself, every statement that binds or
reads a key, and what plain SQL sees in the table.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import URL, Engine, bindparam, select, text, tuple_
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.visitors import iterate
from sqlalchemy.types import NullType

from tests.support.sdk import TokenStorageData, make_token_data
from tokenstore_sql import (
    InvalidTokenDataError,
    SQLAlchemyTokenStorage,
    StoreSettings,
    UnreadableTokenDataError,
    create_engine,
    generate_key,
)
from tokenstore_sql.columns import (
    KEY_LENGTH,
    ExactKey,
    MalformedKeyError,
    decode_key,
    encode_key,
)
from tokenstore_sql.crypto import KeyRing
from tokenstore_sql.models import TOKENS_TABLE, TokenRow, tokens_table
from tokenstore_sql.rotation import rotate_keys
from tokenstore_sql.statements import statements_for

SECRET = "SECRET-token-value-never-shown"
ESC = "\uffff"


@pytest.fixture
def own_engine(empty_database_url: URL) -> Iterator[Engine]:
    """An engine on a database of this test's own, for tests that touch every row."""
    engine = create_engine(empty_database_url)
    yield engine
    engine.dispose()


HOSTILE_KEYS = [
    pytest.param("nul\x00inside", id="nul"),
    pytest.param("\x00", id="only-nul"),
    pytest.param("\x00\x00lead-and-trail\x00", id="many-nuls"),
    pytest.param(f"esc{ESC}inside", id="escape-char"),
    pytest.param(f"{ESC}0", id="escape-then-zero"),
    pytest.param(f"{ESC}{ESC}", id="two-escapes"),
    pytest.param(f"mixed\x00{ESC}0{ESC}\x00", id="nul-and-escape"),
    pytest.param('it\'s "quoted" `too`', id="quotes"),
    pytest.param("a;b;;c;", id="semicolons"),
    pytest.param("'; DROP TABLE x; --", id="drop-table"),
    pytest.param("SELECT * FROM tokenstore_sql_tokens WHERE 1=1 OR ''=''", id="sql-keywords"),
    pytest.param("back\\slash\\\\ \\0 \\x00 \\'", id="backslashes"),
    pytest.param("100% _under_ %_%", id="percent-underscore"),
    pytest.param("\U0001f511 \u00e9\u0301 \u2028", id="unicode"),
]


def _data(resource_server: str, **changes: Any) -> TokenStorageData:
    """Token data whose other text holds no NUL (only keys may)."""
    fields: dict[str, Any] = {"scope": "openid", "access_token": SECRET, "refresh_token": None}
    fields.update(changes)
    return make_token_data(resource_server, **fields)


def _stored_keys(engine: Engine, namespace_prefix: str) -> list[tuple[str, str]]:
    """Read the key columns with plain SQL, as an operator would: no type processing."""
    query = text(
        f"SELECT namespace, resource_server FROM {TOKENS_TABLE} "
        "WHERE namespace LIKE :prefix ORDER BY resource_server"
    )
    with engine.connect() as connection:
        rows = connection.execute(query, {"prefix": namespace_prefix + "%"}).all()
    return [(row[0], row[1]) for row in rows]


# --- the escape itself -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "stored"),
    [
        ("", ""),
        ("transfer.api.globus.org", "transfer.api.globus.org"),
        ("'; DROP TABLE x; --", "'; DROP TABLE x; --"),
        ("a\x00", f"a{ESC}0"),
        ("a\uffff", f"a{ESC}{ESC}"),
        (f"a{ESC}0", f"a{ESC}{ESC}0"),
        ("\x00\x00", f"{ESC}0{ESC}0"),
        (f"{ESC}\x00", f"{ESC}{ESC}{ESC}0"),
        ("0\x000", f"0{ESC}00"),
    ],
)
def test_encode_key_escapes_only_nul_and_the_escape_character(key: str, stored: str) -> None:
    assert encode_key(key) == stored
    assert decode_key(stored) == key


def test_ordinary_keys_are_returned_as_they_are() -> None:
    key = "ns-ordinary"
    assert encode_key(key) is key
    assert decode_key(key) is key


def test_encoding_round_trips_and_is_injective_over_tricky_strings() -> None:
    alphabet = ["\x00", ESC, "0", "a", "'", ";", "\\", "%", "_", " ", "\U0001f511", "\ufffe"]
    keys = ["".join(parts) for n in range(5) for parts in itertools.product(alphabet, repeat=n)]
    chooser = random.Random(20240229)
    keys += ["".join(chooser.choices(alphabet, k=chooser.randint(5, 40))) for _ in range(2000)]

    encoded: dict[str, str] = {}
    for key in keys:
        stored = encode_key(key)
        assert "\x00" not in stored
        assert len(stored) == len(key) + key.count("\x00") + key.count(ESC)
        assert decode_key(stored) == key
        assert encoded.setdefault(stored, key) == key, "two keys share one stored form"
        if "\x00" not in key and ESC not in key:
            assert stored == key


@pytest.mark.parametrize(
    ("stored", "position", "found"),
    [
        (ESC, 0, "at its end"),
        (f"abc{ESC}", 3, "at its end"),
        (f"a{ESC}x", 1, "followed by 'x'"),
        (f"{ESC}1", 0, "followed by '1'"),
        (f"{ESC}{ESC}{ESC}", 2, "at its end"),
        (f"ok{ESC}0{ESC}\x00", 4, "followed by '\\x00'"),
    ],
)
def test_decoding_a_malformed_key_raises_a_clear_error(
    stored: str, position: int, found: str
) -> None:
    with pytest.raises(MalformedKeyError) as caught:
        decode_key(stored)

    error = caught.value
    assert isinstance(error, UnreadableTokenDataError)
    assert (error.stored, error.position) == (stored, position)
    message = str(error)
    assert "U+FFFF" in message
    assert found in message
    assert f"position {position}" in message


def test_literal_sql_renders_keys_escaped() -> None:
    statement = select(TokenRow.namespace).where(TokenRow.namespace == "a\x00b")
    for dialect in (sqlite.dialect(), postgresql.dialect(), mysql.dialect()):
        rendered = str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        assert f"a{ESC}0b" in rendered
        assert "\x00" not in rendered


# --- every place a key is bound takes the column's type --------------------------------


def _binds(statement: Any) -> dict[str, BindParameter[Any]]:
    return {
        element.key: element for element in iterate(statement) if isinstance(element, BindParameter)
    }


def test_untyped_bindparams_compared_to_a_key_column_take_its_type() -> None:
    statements = statements_for()
    for statement in (
        statements.select_one,
        statements.delete_one,
        statements.select_namespace,
        statements.delete_namespace,
    ):
        binds = _binds(statement)
        assert isinstance(binds["namespace"].type, ExactKey)
    assert isinstance(_binds(statements.select_one)["resource_server"].type, ExactKey)
    # the behaviour the statements rely on: an untyped bindparam takes the column's type
    untyped = bindparam("anything")
    assert isinstance(untyped.type, NullType)
    comparison = tokens_table().c.namespace == untyped
    assert isinstance(comparison.right.type, ExactKey)  # type: ignore[attr-defined]


def test_in_and_plain_comparisons_take_the_key_type() -> None:
    statements = statements_for()
    in_binds = _binds(statements.select_tokens(["a\x00", "b"]))
    assert [type(b.type) for b in in_binds.values()] == [ExactKey]
    update_binds = _binds(statements.update_row_tokens("a\x00", "rs\x00", None))
    key_binds = [b for b in update_binds.values() if b.value in ("a\x00", "rs\x00")]
    assert len(key_binds) == 2
    assert all(isinstance(b.type, ExactKey) for b in key_binds)


def test_a_plain_tuple_compared_to_key_columns_takes_their_types() -> None:
    c = tokens_table().c
    binds = _binds(select(c.namespace).where(tuple_(c.namespace, c.resource_server) > ("a", "b")))
    assert [type(b.type) for b in binds.values()] == [ExactKey, ExactKey]


def test_the_rotation_cursor_binds_keys_with_the_key_type() -> None:
    statement = statements_for().select_rows_to_rekey("k", ("a\x00", "rs"), 10)
    key_binds = [b for b in _binds(statement).values() if b.value in ("a\x00", "rs")]
    assert len(key_binds) == 2
    assert all(isinstance(b.type, ExactKey) for b in key_binds)


# --- on every backend ------------------------------------------------------------------


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_hostile_namespaces_and_resource_servers_round_trip(
    engine: Engine, namespace: str, key: str
) -> None:
    storage = SQLAlchemyTokenStorage(engine, namespace=namespace + key)
    data = _data(key, scope=f"scope {key!r}")
    storage.store_token_data_by_resource_server({key: data, "plain": _data("plain")})

    got = storage.get_token_data(key)
    assert got is not None
    assert (got.resource_server, got.access_token) == (key, SECRET)
    assert sorted(storage.get_token_data_by_resource_server()) == sorted([key, "plain"])
    assert namespace + key in list(storage.iter_namespaces())

    storage.store_token_data_by_resource_server({key: _data(key, access_token="new")})
    assert storage.get_token_data(key).access_token == "new"  # type: ignore[union-attr]
    assert storage.remove_token_data(key) is True
    assert storage.get_token_data(key) is None
    assert storage.remove_namespace() == 1
    assert namespace + key not in list(storage.iter_namespaces())


def test_keys_that_differ_only_in_escapes_stay_distinct(engine: Engine, namespace: str) -> None:
    lookalikes = ["a", "a\x00", f"a{ESC}0", f"a{ESC}", f"a{ESC}{ESC}", "a0", "a\x00\x00"]
    storages = {
        key: SQLAlchemyTokenStorage(engine, namespace=namespace + key) for key in lookalikes
    }
    for key, storage in storages.items():
        storage.store_token_data_by_resource_server(
            {rs: _data(rs, access_token=f"{key!r}/{rs!r}") for rs in lookalikes}
        )

    for key, storage in storages.items():
        stored = storage.get_token_data_by_resource_server()
        assert sorted(stored) == sorted(lookalikes)
        for rs in lookalikes:
            assert stored[rs].access_token == f"{key!r}/{rs!r}"
            assert storage.get_token_data(rs).access_token == f"{key!r}/{rs!r}"  # type: ignore[union-attr]
    names = [name for name in storages["a"].iter_namespaces() if name.startswith(namespace)]
    assert sorted(names) == sorted(namespace + key for key in lookalikes)
    assert len(_stored_keys(engine, namespace)) == len(lookalikes) ** 2

    assert storages["a\x00"].remove_token_data(f"a{ESC}0") is True
    assert storages[f"a{ESC}0"].remove_namespace() == len(lookalikes)
    assert storages["a\x00"].get_token_data("a\x00") is not None
    assert storages["a"].get_token_data_by_resource_server().keys() == set(lookalikes)


def test_plain_sql_sees_ordinary_keys_verbatim_and_nul_escaped(
    engine: Engine, namespace: str
) -> None:
    ordinary = "'; DROP TABLE x; -- 100%_\\"
    with_nul = f"nul\x00{ESC}end"
    SQLAlchemyTokenStorage(engine, namespace=namespace).store_token_data_by_resource_server(
        {rs: _data(rs) for rs in (ordinary, with_nul)}
    )
    SQLAlchemyTokenStorage(
        engine, namespace=namespace + "\x00"
    ).store_token_data_by_resource_server({"rs": _data("rs")})

    assert sorted(_stored_keys(engine, namespace)) == sorted(
        [
            (namespace, ordinary),
            (namespace, f"nul{ESC}0{ESC}{ESC}end"),
            (namespace + f"{ESC}0", "rs"),
        ]
    )
    # what the README tells operators: an ordinary key is found with plain SQL as it is
    query = text(f"SELECT COUNT(*) FROM {TOKENS_TABLE} WHERE namespace = :ns")
    with engine.connect() as connection:
        assert connection.execute(query, {"ns": namespace}).scalar() == 2
        assert connection.execute(query, {"ns": encode_key(namespace + "\x00")}).scalar() == 1


def test_statements_read_keys_decoded(engine: Engine, namespace: str) -> None:
    keys = [namespace + "\x00", namespace + ESC, namespace + "'; --"]
    for key in keys:
        SQLAlchemyTokenStorage(engine, namespace=key).store_token_data_by_resource_server(
            {f"rs\x00{ESC}": _data(f"rs\x00{ESC}")}
        )
    statements = statements_for()

    with engine.connect() as connection:
        by_in = connection.execute(statements.select_tokens(keys)).mappings().all()
        distinct = connection.execute(statements.select_namespaces()).scalars().all()
        counts = connection.execute(statements.select_counts("namespace", 0)).all()
        by_rs = connection.execute(statements.select_counts("resource_server", 0)).all()

    assert sorted(row["namespace"] for row in by_in) == sorted(keys)
    assert {row["resource_server"] for row in by_in} == {f"rs\x00{ESC}"}
    assert set(keys) <= set(distinct)
    assert {row[0] for row in counts} >= set(keys)
    assert f"rs\x00{ESC}" in {row[0] for row in by_rs}


def test_keys_of_255_stored_characters_fit_and_longer_are_refused(
    engine: Engine, namespace: str
) -> None:
    fits = namespace + "\x00" * ((KEY_LENGTH - len(namespace)) // 2)
    fits += "x" * (KEY_LENGTH - len(encode_key(fits)))
    assert len(encode_key(fits)) == KEY_LENGTH
    storage = SQLAlchemyTokenStorage(engine, namespace=fits)
    server = ESC * 127 + "x"
    storage.store_token_data_by_resource_server({server: _data(server)})
    assert list(storage.get_token_data_by_resource_server()) == [server]
    assert fits in list(storage.iter_namespaces())

    too_long = "\x00" * 128
    with pytest.raises(InvalidTokenDataError, match="resource server is too long") as caught:
        storage.store_token_data_by_resource_server({too_long: _data(too_long)})
    assert "128 characters long (256 as stored" in str(caught.value)
    assert "at most 255" in str(caught.value)
    assert list(storage.get_token_data_by_resource_server()) == [server]
    with pytest.raises(InvalidTokenDataError, match="namespace is too long"):
        SQLAlchemyTokenStorage(engine, namespace=fits + ESC)


def test_a_hand_edited_key_gives_a_clear_error(own_engine: Engine, namespace: str) -> None:
    engine = own_engine
    storage = SQLAlchemyTokenStorage(engine, namespace=namespace)
    storage.store_token_data_by_resource_server({"rs": _data("rs", refresh_token=SECRET)})
    with engine.begin() as connection:
        connection.execute(
            text(f"UPDATE {TOKENS_TABLE} SET resource_server = :bad WHERE namespace = :ns"),
            {"bad": f"rs{ESC}x", "ns": namespace},
        )

    with pytest.raises(UnreadableTokenDataError) as caught:
        storage.get_token_data_by_resource_server()

    message = str(caught.value)
    assert isinstance(caught.value, MalformedKeyError)
    assert "U+FFFF followed by 'x' at position 2" in message
    assert SECRET not in message
    assert caught.value.__cause__ is None
    assert storage.get_token_data("rs") is None
    assert storage.remove_namespace() == 1


def test_rotation_walks_rows_with_escaped_keys(
    request: pytest.FixtureRequest, backend: str, own_engine: Engine, namespace: str
) -> None:
    engine = own_engine
    keys = [namespace + "\x00", namespace + f"{ESC}0"]
    for key in keys:
        SQLAlchemyTokenStorage(engine, namespace=key).store_token_data_by_resource_server(
            {rs: _data(rs, access_token=f"{key!r}{rs!r}") for rs in ("a\x00", "b")}
        )
    ring = KeyRing([generate_key()])

    report = rotate_keys(engine, StoreSettings(keys=ring), batch_size=1)

    assert report.rewritten == 4
    assert report.unreadable == []
    for key in keys:
        stored = SQLAlchemyTokenStorage(
            engine, namespace=key, keys=ring
        ).get_token_data_by_resource_server()
        assert {rs: d.access_token for rs, d in stored.items()} == {
            rs: f"{key!r}{rs!r}" for rs in ("a\x00", "b")
        }

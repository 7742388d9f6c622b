"""Reading a fetched row back into token data, without a server: values, types, refusals."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from sqlalchemy import Dialect, String
from sqlalchemy.dialects.sqlite import pysqlite
from sqlalchemy.types import TypeEngine

from tokenstore_sql import UnreadableTokenDataError
from tokenstore_sql._sdk import TokenStorageData, _keeps_only_its_arguments
from tokenstore_sql.codec import (
    READ_COLUMNS,
    seal_tokens,
    token_data_from_row,
    token_data_from_values,
)
from tokenstore_sql.columns import ExactKey, MalformedKeyError
from tokenstore_sql.compiled import CompiledStatement
from tokenstore_sql.crypto import KeyRing, generate_key
from tokenstore_sql.statements import statements_for

ROW: dict[str, Any] = {
    "resource_server": "rs",
    "identity_id": "ae341a98-d274-11e5-b888-dbae3a8ba545",
    "scope": "openid",
    "access_token": "SECRET-access",
    "refresh_token": None,
    "expires_at_seconds": 2_000_000_000,
    "token_type": "Bearer",
    "extra": {},
    "token_key_id": None,
}


def _select_one() -> CompiledStatement:
    return CompiledStatement.compile(statements_for().select_one, pysqlite.dialect())


def _read_as_row(row: dict[str, Any], keys: KeyRing | None = None) -> TokenStorageData:
    return token_data_from_row("ns", row, keys)


def _read_as_values(row: dict[str, Any], keys: KeyRing | None = None) -> TokenStorageData:
    return token_data_from_values("ns", [row[name] for name in READ_COLUMNS], keys)


# The two ways a read becomes token data: a row's mapping, or its values in column order.
READERS = pytest.mark.parametrize("read", [_read_as_row, _read_as_values])


def test_reads_select_the_columns_in_the_order_their_values_are_read() -> None:
    assert _select_one().column_names == READ_COLUMNS
    assert set(READ_COLUMNS) == set(ROW)


def test_a_fetched_rows_values_are_processed_in_place_of_their_columns() -> None:
    statement = _select_one()
    fetched = [ROW[name] for name in statement.column_names]
    fetched[0] = "rs\uffff0"  # a key as stored: unescaped when read
    fetched[READ_COLUMNS.index("extra")] = '{"a": 1}'
    values = statement.values(fetched)
    assert values[0] == "rs\x00"
    assert values[READ_COLUMNS.index("extra")] == {"a": 1}
    assert fetched[0] == "rs\uffff0"  # the driver's row is left as it came
    assert statement.row(fetched) == dict(zip(READ_COLUMNS, values, strict=True))


def test_an_empty_extra_is_a_new_dict_on_every_read_and_others_are_decoded() -> None:
    statement = _select_one()
    fetched = [ROW[name] for name in statement.column_names]
    at = statement.column_names.index("extra")

    first = statement.row([*fetched[:at], "{}", *fetched[at + 1 :]])
    second = statement.row([*fetched[:at], "{}", *fetched[at + 1 :]])
    decoded = statement.row([*fetched[:at], '{"a": [1, 2]}', *fetched[at + 1 :]])

    assert first["extra"] == second["extra"] == {}
    assert first["extra"] is not second["extra"]  # a caller may change its own
    assert decoded["extra"] == {"a": [1, 2]}


def test_a_row_of_the_wrong_width_is_refused() -> None:
    statement = _select_one()
    for read in (statement.row, statement.values):
        with pytest.raises(ValueError, match="a row of 1 values for 9 columns"):
            read(["rs"])


class _Text(str):
    """A subclass of str, as some drivers return."""


@READERS
def test_well_stored_rows_read_back_subclasses_included(read: Any) -> None:
    data = read({**ROW, "scope": _Text("openid"), "refresh_token": "r"})
    assert (data.scope, data.refresh_token, data.extra) == ("openid", "r", {})


@READERS
def test_sealed_tokens_are_opened_with_the_keys_and_refused_without(read: Any) -> None:
    keys = KeyRing([generate_key()])
    row = {**ROW, "namespace": "ns", "refresh_token": "SECRET-refresh"}
    seal_tokens(row, keys)
    assert row["access_token"] != "SECRET-access"
    data = read(row, keys)
    assert (data.access_token, data.refresh_token) == ("SECRET-access", "SECRET-refresh")
    with pytest.raises(UnreadableTokenDataError, match="encrypted and no encryption keys"):
        read(row)


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("expires_at_seconds", True, "expires_at_seconds is a bool"),
        ("expires_at_seconds", "2000000000", "expires_at_seconds is a str"),
        ("scope", None, "scope is missing"),
        ("extra", [], "extra is a list"),
        ("token_type", 7, "token_type is an int"),
    ],
)
@READERS
def test_a_wrongly_stored_value_is_named_without_the_tokens(
    field: str, value: Any, problem: str, read: Any
) -> None:
    with pytest.raises(UnreadableTokenDataError) as caught:
        read({**ROW, field: value})
    assert problem in str(caught.value)
    assert "SECRET" not in str(caught.value)


@READERS
def test_token_data_read_back_is_what_globus_sdks_constructor_makes(read: Any) -> None:
    # Built without the constructor where it only keeps its arguments: nothing tells
    # the two apart, neither their attributes nor globus-sdk's own serialization.
    assert _keeps_only_its_arguments()
    row = {**ROW, "refresh_token": "SECRET-refresh", "extra": {"kept": [1]}}
    data = read(row)
    made = TokenStorageData(
        **{name: row[name] for name in ("identity_id", "scope", "access_token")},
        resource_server="rs",
        refresh_token="SECRET-refresh",
        expires_at_seconds=2_000_000_000,
        token_type="Bearer",
        extra={"kept": [1]},
    )
    assert type(data) is TokenStorageData
    assert vars(data) == vars(made)
    assert list(vars(data)) == list(vars(made))
    assert data.to_dict() == made.to_dict()


class _Shouting(String):
    """A key type whose driver also processes values: upper case in, lower case out."""

    def bind_processor(self, dialect: Dialect) -> Any:
        return str.upper

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        return str.lower


class _ShoutingKey(ExactKey):
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        return _Shouting(255)


@pytest.mark.parametrize(
    ("key_type", "bound", "read"),
    [
        (ExactKey(), "a\uffff0b\uffff\uffffc", "a\x00b\uffffc"),
        (_ShoutingKey(), "A\uffff0B\uffff\uffffC", "a\x00b\uffffc"),
    ],
)
def test_key_columns_escape_as_bound_and_unescape_as_read(
    key_type: ExactKey, bound: str, read: str
) -> None:
    dialect = pysqlite.dialect()
    implementation = key_type.dialect_impl(dialect)
    bind = implementation.bind_processor(dialect)
    result = implementation.result_processor(dialect, None)
    assert bind is not None
    assert result is not None
    assert bind("a\x00b\uffffc") == bound
    assert result(bound) == read
    assert bind("plain") == ("PLAIN" if isinstance(key_type, _ShoutingKey) else "plain")
    if not isinstance(key_type, _ShoutingKey):
        assert bind(None) is None
        assert result(None) is None
        with pytest.raises(MalformedKeyError):
            result("bad\uffffx")


def test_parameters_are_bound_in_the_statements_order_each_by_its_type() -> None:
    dialect = pysqlite.dialect()  # positional: values in the order of the SQL's marks
    statements = statements_for()
    one = CompiledStatement.compile(statements.select_one, dialect)  # two keys: one processor
    keys = {"resource_server": "rs\x00", "namespace": "ns\uffff"}
    assert one.in_order is not None
    assert one.parameters(keys) == ("ns\uffff\uffff", "rs\uffff0")
    upsert = CompiledStatement.compile(statements.upsert(dialect), dialect)  # mixed types
    assert upsert.in_order is None
    assert upsert.positional is not None
    row = {
        **{name: ROW[name] for name in ROW if name != "extra"},
        "namespace": "ns\x00",
        "extra": {"a": 1},
        "refresh_lease_owner": None,
        "refresh_lease_until": None,
        "created_at": datetime(2030, 1, 2, tzinfo=timezone.utc),
        "updated_at": datetime(2030, 1, 2, tzinfo=timezone.utc),
    }
    names = [name for name, _ in upsert.positional]
    bound = dict(zip(names, upsert.parameters(row), strict=True))
    assert bound["namespace"] == "ns\uffff0"
    assert bound["extra"] == '{"a": 1}'
    assert bound["access_token"] == "SECRET-access"
    assert bound["updated_at"] == "2030-01-02 00:00:00.000000"  # naive UTC text on SQLite

"""Binding a write's values as the column types bind them, without a server."""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy.dialects.postgresql import psycopg
from sqlalchemy.dialects.sqlite import pysqlite

from tokenstore_sql._sdk import TokenStorageData
from tokenstore_sql.codec import rows_for_storage, stamped
from tokenstore_sql.compiled import CompiledStatement
from tokenstore_sql.statements import numbered, statements_for

NOW = datetime(2026, 12, 3, 8, 30, 15, 123456, tzinfo=timezone.utc)


def _row(**changes: Any) -> dict[str, Any]:
    """A row as a store writes it (through the codec), with columns replaced."""
    data = TokenStorageData(
        resource_server="rs",
        identity_id=None,
        scope="openid",
        access_token="SECRET-access",
        refresh_token=None,
        expires_at_seconds=2_000_000_000,
        token_type="Bearer",
    )
    (row,) = stamped(rows_for_storage("ns", {"rs": data}, None))
    return {**row, "created_at": NOW, "updated_at": NOW, **changes}


def _bound(**changes: Any) -> dict[str, Any]:
    """Bind one row through SQLite's upsert; give the values by column name."""
    dialect = pysqlite.dialect()
    statement = CompiledStatement.compile(statements_for().upsert(dialect), dialect)
    assert statement.positional is not None
    values = statement.parameters(_row(**changes))
    return dict(zip([name for name, _ in statement.positional], values, strict=True))


def test_timestamps_bind_as_their_own_value_whether_or_not_the_last_was_the_same() -> None:
    later = NOW + timedelta(microseconds=1)
    first = _bound()
    assert first["created_at"] == first["updated_at"] == "2026-12-03 08:30:15.123456"
    # A new object of another value, then one equal to the first but not the same object:
    # each binds as itself, not as whatever was bound last.
    assert _bound(created_at=later, updated_at=later)["updated_at"].endswith(".123457")
    copy = datetime.fromisoformat(NOW.isoformat())
    assert _bound(created_at=copy, updated_at=later)["created_at"].endswith(".123456")
    assert _bound(refresh_lease_until=later)["refresh_lease_until"].endswith(".123457")
    assert _bound()["refresh_lease_until"] is None


def test_a_naive_timestamp_is_refused_every_time() -> None:
    naive = NOW.replace(tzinfo=None)
    for _ in range(2):  # a refused value is not remembered as bound
        with pytest.raises(ValueError, match="timezone-aware"):
            _bound(updated_at=naive)


def test_an_empty_extra_binds_as_json_like_any_other() -> None:
    assert _bound()["extra"] == "{}"
    assert _bound(extra={"k": [1, "x"]})["extra"] == '{"k": [1, "x"]}'
    assert _bound(extra=OrderedDict())["extra"] == "{}"  # not a plain dict: encoded
    assert _bound(extra={"": {}})["extra"] == '{"": {}}'


def test_a_driver_that_wants_its_own_json_object_gets_it_for_an_empty_extra_too() -> None:
    dialect = psycopg.dialect()
    statement = CompiledStatement.compile(statements_for().upsert(dialect), dialect)
    values = statement.parameters(_row())
    assert isinstance(values, dict)
    assert not isinstance(values["extra"], str)  # psycopg's JSON wrapper, as for others
    other = statement.parameters(_row(extra={"a": 1}))
    assert isinstance(other, dict)
    assert type(values["extra"]) is type(other["extra"])


def test_many_rows_bind_as_one_statement_each_value_under_its_row_number() -> None:
    dialect = pysqlite.dialect()
    rows = [_row(namespace=f"ns-{i}", extra={"i": i}) for i in range(3)]
    statement = CompiledStatement.compile(statements_for().upsert(dialect, 3), dialect)
    assert statement.sql.count("?") == 3 * len(rows[0])
    values = statement.parameters(numbered(rows))
    assert list(values[:2]) == ["ns-0", "rs"]
    assert values.count('{"i": 2}') == 1
    assert values[len(rows[0]) * 2] == "ns-2"

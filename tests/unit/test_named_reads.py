"""Named reads: the statement's name and text, and the steps of one call, without a server."""

from __future__ import annotations

import pytest
from sqlalchemy.dialects.postgresql import psycopg

from tokenstore_sql import Placement
from tokenstore_sql.compiled import CompiledStatement
from tokenstore_sql.models import tokens_table
from tokenstore_sql.named_reads import ATTEMPTS, NAME_PREFIX, Exchange, named_read
from tokenstore_sql.statements import TokenStatements

SQL = "SELECT a FROM t WHERE x = %(ns)s::VARCHAR AND y = %(rs)s::VARCHAR OR x = %(ns)s::VARCHAR"


class _Quoting:
    """Stands in for libpq's quoting: wraps the bytes in quotes."""

    def escape_literal(self, data: bytes) -> bytes:
        return b"'" + data + b"'"


class _Error(Exception):
    def __init__(self, sqlstate: str | None) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


class _Cursor:
    def __init__(self) -> None:
        self.skipped = 0

    def nextset(self) -> bool:
        self.skipped += 1
        return True


def test_placeholders_become_numbered_parameters_each_name_once() -> None:
    read = named_read(SQL)
    assert read is not None
    assert read.order == ("ns", "rs")
    assert (
        read.prepare
        == (
            f"PREPARE {read.name.decode()} AS SELECT a FROM t "
            "WHERE x = $1::VARCHAR AND y = $2::VARCHAR OR x = $1::VARCHAR"
        ).encode()
    )


def test_the_name_is_made_from_the_whole_text() -> None:
    read, again = named_read(SQL), named_read(SQL.replace("SELECT a", "SELECT a "))
    assert read is not None
    assert again is not None
    name = read.name.decode()
    assert name.startswith(NAME_PREFIX)
    assert len(name) <= 63
    assert name.isidentifier()
    assert name == name.lower()
    assert again.name != read.name


def test_the_storages_reads_of_two_tables_get_two_names() -> None:
    dialect = psycopg.dialect()
    names = set()
    for table in (tokens_table(), tokens_table(Placement("other_"))):
        statements = TokenStatements(table)
        for statement in (statements.select_one, statements.select_namespace):
            read = named_read(CompiledStatement.compile(statement, dialect).sql)
            assert read is not None
            names.add(read.name)
    assert len(names) == 4


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO t (a) VALUES (%(a)s)",
        "DELETE FROM t WHERE x = %(ns)s",
        "SELECT a FROM t WHERE x LIKE 'a%%' AND y = %(rs)s",
        "SELECT a FROM t",
    ],
)
def test_only_selects_with_named_parameters_are_named_reads(sql: str) -> None:
    assert named_read(sql) is None


def test_the_execute_quotes_each_value_in_parameter_order() -> None:
    read = named_read(SQL)
    assert read is not None
    message = read.execute(_Quoting(), "utf-8", {"rs": "b.org", "ns": "user/é"})  # type: ignore[arg-type]
    assert message == b"EXECUTE " + read.name + b"('user/\xc3\xa9', 'b.org')"


@pytest.mark.parametrize("value", [None, 7, b"bytes"])
def test_a_value_that_is_not_text_is_never_put_in_the_sql(value: object) -> None:
    read = named_read(SQL)
    assert read is not None
    assert read.execute(_Quoting(), "utf-8", {"ns": "a", "rs": value}) is None  # type: ignore[arg-type]


def test_a_value_the_client_encoding_cannot_hold_is_never_put_in_the_sql() -> None:
    read = named_read(SQL)
    assert read is not None
    assert read.execute(_Quoting(), "ascii", {"ns": "user/é", "rs": "b"}) is None  # type: ignore[arg-type]


def _exchange(prepared: set[bytes]) -> tuple[Exchange, bytes, bytes]:
    read = named_read(SQL)
    assert read is not None
    execute = b"EXECUTE " + read.name + b"('a', 'b')"
    return Exchange(read, execute, prepared), read.prepare, execute


def test_a_first_read_prepares_and_executes_in_one_message_then_executes_alone() -> None:
    prepared: set[bytes] = set()
    exchange, prepare, execute = _exchange(prepared)
    assert exchange.message() == prepare + b"; " + execute
    cursor = _Cursor()
    assert exchange.received(cursor) is cursor
    assert cursor.skipped == 1  # the PREPARE's result
    assert prepared == {exchange.read.name}
    following, _, _ = _exchange(prepared)
    assert following.message() == execute
    assert following.received(cursor) is cursor
    assert cursor.skipped == 1


def test_a_session_without_the_statement_gets_it_prepared_again() -> None:
    exchange, prepare, execute = _exchange({named_read(SQL).name})  # type: ignore[union-attr]
    assert exchange.message() == execute
    assert exchange.answered(_Error("26000"))
    assert exchange.message() == prepare + b"; " + execute


def test_a_session_that_has_the_statement_already_gets_the_execute_alone() -> None:
    prepared: set[bytes] = set()
    exchange, _, execute = _exchange(prepared)
    exchange.message()
    assert exchange.answered(_Error("42P05"))
    assert exchange.message() == execute
    assert exchange.read.name in prepared


def test_a_statement_whose_columns_changed_type_is_deallocated_and_prepared_again() -> None:
    prepared = {named_read(SQL).name}  # type: ignore[union-attr]
    exchange, prepare, execute = _exchange(prepared)
    exchange.message()
    assert exchange.answered(_Error("0A000"))
    name = exchange.read.name
    assert exchange.message() == b"DEALLOCATE " + name + b"; " + prepare + b"; " + execute
    cursor = _Cursor()
    exchange.received(cursor)
    assert cursor.skipped == 2
    assert prepared == {name}


@pytest.mark.parametrize("sqlstate", [None, "57P01", "42P01", "40001"])
def test_other_errors_are_not_mended_here(sqlstate: str | None) -> None:
    exchange, _, _ = _exchange(set())
    exchange.message()
    assert not exchange.answered(_Error(sqlstate))


def test_after_a_few_answers_the_read_goes_unprepared() -> None:
    exchange, _, _ = _exchange(set())
    for _ in range(ATTEMPTS):
        assert exchange.message() is not None
        assert exchange.answered(_Error("26000"))
    assert exchange.message() is None

"""Least privilege: an account that may only read and write rows.

It works once the schema exists, and is told clearly what is missing when the schema
would have to be created or changed.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import URL, Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from tests.support.cli import Cli
from tests.support.databases import SERVER_PARAMS
from tests.support.sdk import make_token_data
from tokenstore_sql import SQLAlchemyTokenStorage, create_engine, generate_key, schema
from tokenstore_sql.errors import SchemaPrivilegeError
from tokenstore_sql.models import TOKENS_TABLE, VERSION_TABLE

pytestmark = pytest.mark.parametrize("backend", SERVER_PARAMS)
ROW_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"
# What the drivers say; none of it may reach our message.
DRIVER_PHRASES = ("permission denied", "command denied", "must be owner", "42000")


@contextmanager
def _engine(url: URL | str) -> Iterator[Engine]:
    engine = create_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def _run(url: URL, *statements: str) -> None:
    with _engine(url) as engine, engine.connect() as connection:
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        for statement in statements:
            connection.execute(text(statement))


@contextmanager
def row_only_account(database: URL, *, table_grants: bool) -> Iterator[URL]:
    """A new account with row privileges only, dropped afterwards; yields its URL.

    ``table_grants``: grant on our two tables (they must exist), else on the whole
    database (MySQL) or nothing but the schema (PostgreSQL).
    """
    name = f"tokenstore_rw_{secrets.token_hex(4)}"
    password = secrets.token_hex(12)
    if database.get_backend_name() == "postgresql":
        setup = [
            f"CREATE ROLE {name} LOGIN PASSWORD '{password}'",
            # PUBLIC may create in schema public before PostgreSQL 15; not here.
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
            f"GRANT USAGE ON SCHEMA public TO {name}",
        ]
        if table_grants:
            setup += [
                f"GRANT {ROW_PRIVILEGES} ON {TOKENS_TABLE} TO {name}",
                f"GRANT SELECT ON {VERSION_TABLE} TO {name}",
            ]
        teardown = [f"DROP OWNED BY {name}", f"DROP ROLE {name}"]
    else:
        accounts = ", ".join(f"'{name}'@'{host}'" for host in ("%", "localhost", "127.0.0.1"))
        db = f"`{database.database}`"
        setup = [f"CREATE USER {accounts} IDENTIFIED BY '{password}'"]
        if table_grants:
            setup += [
                f"GRANT {ROW_PRIVILEGES} ON {db}.{TOKENS_TABLE} TO {accounts}",
                f"GRANT SELECT ON {db}.{VERSION_TABLE} TO {accounts}",
            ]
        else:
            setup += [f"GRANT {ROW_PRIVILEGES} ON {db}.* TO {accounts}"]
        teardown = [f"DROP USER IF EXISTS {accounts}"]
    try:
        _run(database, *setup)
        yield database.set(username=name, password=password)
    finally:
        _run(database, *teardown)


def _tables(url: URL) -> list[str]:
    with _engine(url) as engine, engine.connect() as connection:
        return sorted(inspect(connection).get_table_names())


def _revision(url: URL) -> str | None:
    with _engine(url) as engine, engine.connect() as connection:
        return schema.current_revision(connection)


def _assert_clear(error: SchemaPrivilegeError, account: URL, revision: str) -> str:
    message = str(error)
    assert f"account {account.username!r}" in message
    assert f"/{account.database}" in message
    assert "may not create or change tables" in message
    assert f"revision {revision}" in message
    assert "run `tokenstore-sql upgrade` with an account that may" in message
    assert "grant" in message
    assert error.code in ("42501", "1142")
    assert error.__cause__ is None
    assert error.__suppress_context__
    for phrase in DRIVER_PHRASES:
        assert phrase not in message.lower()
    assert account.password is not None
    assert account.password not in message
    return message


def test_a_row_only_account_works_fully_once_the_schema_exists(
    cli: Cli, empty_database_url: URL, namespace: str
) -> None:
    SQLAlchemyTokenStorage(empty_database_url).close()  # the schema, made by the admin

    with row_only_account(empty_database_url, table_grants=True) as account:
        with _engine(account) as engine, pytest.raises(DBAPIError), engine.begin() as c:
            c.execute(text("CREATE TABLE tokenstore_probe (a INTEGER)"))  # truly no DDL

        data = {rs: make_token_data(rs, access_token=f"AT-{rs}") for rs in ("rs1", "rs2")}
        keys = [generate_key()]
        for ns, ring in ((namespace, keys), (f"{namespace}-clear", None)):
            with SQLAlchemyTokenStorage(account, namespace=ns, keys=ring) as storage:
                storage.store_token_data_by_resource_server(data)
                storage.store_token_data_by_resource_server({"rs1": data["rs1"]})  # upsert
                got = storage.get_token_data_by_resource_server()
                assert {rs: d.to_dict() for rs, d in got.items()} == {
                    rs: d.to_dict() for rs, d in data.items()
                }
                assert storage.remove_token_data("rs2") is True
                assert storage.get_token_data("rs2") is None
                assert ns in list(storage.iter_namespaces())
        with SQLAlchemyTokenStorage(account, namespace=namespace) as storage:
            assert storage.remove_namespace() == 1
            assert namespace not in list(storage.iter_namespaces())

        result = cli("check", "--url", account.render_as_string(hide_password=False))
        assert result.returncode == 0, result.stderr


def test_a_row_only_account_cannot_create_the_schema_and_says_what_is_missing(
    cli: Cli,
    empty_database_url: URL,
) -> None:
    with row_only_account(empty_database_url, table_grants=False) as account:
        with pytest.raises(SchemaPrivilegeError) as caught:
            SQLAlchemyTokenStorage(account)
        _assert_clear(caught.value, account, schema.head_revision())
        assert _tables(empty_database_url) == []

        url = account.render_as_string(hide_password=False)
        result = cli("upgrade", "--url", url)
        assert result.returncode == 1
        assert result.stderr.splitlines() == [f"error: {caught.value}"]
        assert _tables(empty_database_url) == []


def test_a_row_only_account_cannot_upgrade_an_older_schema_and_leaves_it_as_it_was(
    empty_database_url: URL,
) -> None:
    with _engine(empty_database_url) as engine:
        schema.migrate(engine, "0001")

    with row_only_account(empty_database_url, table_grants=True) as account:
        with pytest.raises(SchemaPrivilegeError) as caught:
            SQLAlchemyTokenStorage(account, upgrade_schema=True)
        _assert_clear(caught.value, account, schema.head_revision())

    assert _revision(empty_database_url) == "0001"
    with _engine(empty_database_url) as engine, engine.connect() as connection:
        columns = {c["name"] for c in inspect(connection).get_columns(TOKENS_TABLE)}
    assert "token_key_id" not in columns

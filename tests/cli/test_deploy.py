"""Deploy pipelines: ``tokenstore-sql check`` and the SQL of ``upgrade --sql`` applied by hand."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import URL, Engine, inspect, text

from tests.support.cli import Cli
from tests.support.databases import temporary_engine
from tests.support.deploy import apply_by_hand, offline_dialect, second_empty_database
from tests.support.sdk import make_token_data
from tokenstore_sql import SQLAlchemyTokenStorage, create_engine, schema
from tokenstore_sql.models import TOKENS_TABLE, VERSION_TABLE

HEAD = schema.head_revision()
FIRST = "0001"
INDEX = "ix_tokenstore_sql_tokens_token_key_id"


def _as_text(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def _set_version(url: URL, version: str) -> None:
    with temporary_engine(url) as engine, engine.begin() as connection:
        connection.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = :v"), {"v": version})


def _stderr_line(result: Any) -> str:
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert result.stdout == ""
    return str(lines[0])


# --- check -------------------------------------------------------------------------------


def test_check_exits_0_with_one_line_at_head(cli: Cli, empty_database_url: URL) -> None:
    url = _as_text(empty_database_url)
    assert cli("upgrade", "--url", url).returncode == 0

    result = cli("check", "--url", url)

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"database is at revision {HEAD} (head)\n"
    assert result.stderr == ""


def test_check_exits_1_naming_both_revisions_when_an_upgrade_is_pending(
    cli: Cli, empty_database_url: URL
) -> None:
    url = _as_text(empty_database_url)
    assert cli("upgrade", "--url", url, FIRST).returncode == 0

    result = cli("check", "--url", url)

    assert result.returncode == 1
    line = _stderr_line(result)
    assert f"revision {FIRST}" in line
    assert f"revision {HEAD}" in line
    assert "run `tokenstore-sql upgrade`" in line
    with temporary_engine(url) as engine, engine.connect() as connection:
        assert schema.current_revision(connection) == FIRST  # check changed nothing


def test_check_exits_1_on_an_empty_database_and_creates_nothing(
    cli: Cli, empty_database_url: URL
) -> None:
    url = _as_text(empty_database_url)

    result = cli("check", "--url", url)

    assert result.returncode == 1
    line = _stderr_line(result)
    assert "no tokenstore-sql schema" in line
    assert f"revision {HEAD}" in line
    assert "tokenstore-sql upgrade" in line
    with temporary_engine(url) as engine, engine.connect() as connection:
        assert inspect(connection).get_table_names() == []


def test_check_exits_3_when_the_database_is_newer_than_the_package(
    cli: Cli, empty_database_url: URL
) -> None:
    url = _as_text(empty_database_url)
    assert cli("upgrade", "--url", url).returncode == 0
    _set_version(empty_database_url, "9999")

    result = cli("check", "--url", url)

    assert result.returncode == 3
    line = _stderr_line(result)
    assert "9999" in line
    assert HEAD in line
    assert "upgrade the tokenstore-sql package" in line


@pytest.mark.sqlite
def test_check_exits_4_with_one_line_when_the_database_cannot_be_reached(cli: Cli) -> None:
    result = cli("check", "--url", "postgresql+psycopg://user:pw@127.0.0.1:1/x")

    assert result.returncode == 4
    line = _stderr_line(result)
    assert line.startswith("error: could not reach the database")
    assert "127.0.0.1:1" in line


def test_current_and_check_refuse_a_token_table_that_is_not_managed_alike(
    cli: Cli, empty_database_url: URL
) -> None:
    url = empty_database_url.render_as_string(hide_password=False)
    engine = create_engine(empty_database_url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE tokenstore_sql_tokens (namespace VARCHAR(20))"))
    engine.dispose()

    for command in ("current", "check"):
        result = cli(command, "--url", url)
        assert result.returncode == 1, command
        assert "not managed by tokenstore-sql" in _stderr_line(result), command


@pytest.mark.sqlite
def test_check_help_documents_every_exit_status(cli: Cli) -> None:
    result = cli("check", "--help")

    words = " ".join(result.stdout.split())
    phrases = ("0 at head", "1 when an upgrade is pending", "3 when the database", "4 when")
    for phrase in phrases:
        assert phrase in words, phrase


# --- upgrade --sql without a database ---------------------------------------------------


@pytest.mark.sqlite
@pytest.mark.parametrize(
    ("dialect", "collation"),
    [("mysql", "utf8mb4_0900_bin"), ("mariadb", "utf8mb4_nopad_bin")],
)
def test_sql_for_mysql_and_mariadb_differs_in_the_key_collation(
    cli: Cli, dialect: str, collation: str
) -> None:
    result = cli("upgrade", "--sql", "--dialect", dialect)

    assert result.returncode == 0, result.stderr
    assert result.stdout.count(f"COLLATE {collation}") == 2
    other = {"utf8mb4_0900_bin", "utf8mb4_nopad_bin"} - {collation}
    assert other.pop() not in result.stdout
    assert "CHARSET=utf8mb4 COLLATE utf8mb4_bin" in result.stdout


@pytest.mark.sqlite
def test_sql_takes_the_dialect_from_the_url_and_needs_no_database(cli: Cli) -> None:
    # Nothing listens on port 1: the SQL is written without connecting.
    result = cli("upgrade", "--sql", "--url", "postgresql+psycopg://u:pw@127.0.0.1:1/x")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("BEGIN;")
    assert "TIMESTAMP WITH TIME ZONE" in result.stdout
    assert f"INSERT INTO {VERSION_TABLE}" in result.stdout


@pytest.mark.sqlite
def test_sql_without_a_dialect_or_url_is_a_usage_error(cli: Cli) -> None:
    result = cli("upgrade", "--sql")

    assert result.returncode == 2
    assert "--dialect" in result.stderr
    assert result.stdout == ""


@pytest.mark.sqlite
def test_sql_for_a_range_only_holds_the_later_revisions(cli: Cli) -> None:
    result = cli("upgrade", "--sql", "--dialect", "postgresql", f"{FIRST}:head")

    assert result.returncode == 0, result.stderr
    assert f"CREATE TABLE {TOKENS_TABLE}" not in result.stdout
    assert f"CREATE TABLE {VERSION_TABLE}" not in result.stdout
    assert f"SET version_num='{HEAD}'" in result.stdout


# --- the printed SQL applied by hand gives the online upgrade's schema ------------------


def _snapshot(engine: Engine) -> dict[str, Any]:
    """Everything about our tables that a DBA's script could get wrong."""
    found: dict[str, Any] = {}
    with engine.connect() as connection:
        inspector = inspect(connection)
        for table in sorted(inspector.get_table_names()):
            found[table] = {
                "columns": [
                    (c["name"], c["type"].compile(dialect=engine.dialect), c["nullable"])
                    for c in inspector.get_columns(table)
                ],
                "primary key": inspector.get_pk_constraint(table),
                "indexes": sorted(
                    (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                    for i in inspector.get_indexes(table)
                ),
                "unique": inspector.get_unique_constraints(table),
                "checks": sorted(c["sqltext"] for c in inspector.get_check_constraints(table)),
                "options": inspector.get_table_options(table),
            }
        if engine.dialect.name in ("mysql", "mariadb"):
            found["collations"] = connection.execute(
                text(
                    "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, "
                    "CHARACTER_SET_NAME, COLLATION_NAME FROM information_schema.COLUMNS "
                    "WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME, ORDINAL_POSITION"
                )
            ).all()
            found["table collations"] = connection.execute(
                text(
                    "SELECT TABLE_NAME, TABLE_COLLATION, ENGINE FROM information_schema.TABLES "
                    "WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME"
                )
            ).all()
        if getattr(engine.dialect, "is_mariadb", False):  # its JSON is LONGTEXT + a check
            found["checks"] = connection.execute(
                text(
                    "SELECT TABLE_NAME, CONSTRAINT_NAME, CHECK_CLAUSE "
                    "FROM information_schema.CHECK_CONSTRAINTS "
                    "WHERE CONSTRAINT_SCHEMA = DATABASE() ORDER BY TABLE_NAME, CONSTRAINT_NAME"
                )
            ).all()
        found["version"] = connection.execute(text(f"SELECT * FROM {VERSION_TABLE}")).all()
    return found


@pytest.mark.parametrize("start", [None, FIRST], ids=["from-empty", "from-0001"])
def test_sql_applied_by_hand_gives_the_online_schema_and_a_working_storage(
    cli: Cli,
    start: str | None,
    empty_database_url: URL,
    request: pytest.FixtureRequest,
    tmp_path: Any,
    namespace: str,
) -> None:
    with (
        second_empty_database(request, tmp_path) as by_hand_url,
        temporary_engine(empty_database_url) as online,
        temporary_engine(by_hand_url) as by_hand,
    ):
        schema.migrate(online, "head")
        if start is not None:
            schema.migrate(by_hand, start)
        revisions = f"{start}:head" if start else "head"

        printed = cli("upgrade", "--sql", "--dialect", offline_dialect(online), revisions)
        assert printed.returncode == 0, printed.stderr
        apply_by_hand(by_hand_url, printed.stdout)

        expected = _snapshot(online)
        assert _snapshot(by_hand) == expected
        assert expected["version"] == [(HEAD,)]
        assert set(expected) >= {TOKENS_TABLE, VERSION_TABLE}

        data = make_token_data("rs", access_token="AT-by-hand")
        with SQLAlchemyTokenStorage(by_hand, namespace=namespace, create_schema=False) as storage:
            storage.store_token_data_by_resource_server({"rs": data})
            got = storage.get_token_data("rs")
        assert got is not None
        assert got.to_dict() == data.to_dict()

        # The comparison sees what a faulty script would leave out.
        with by_hand.begin() as connection:
            connection.execute(text(f"DROP INDEX {INDEX}" + _on_table(by_hand)))
        assert _snapshot(by_hand) != expected


def _on_table(engine: Engine) -> str:
    return f" ON {TOKENS_TABLE}" if engine.dialect.name in ("mysql", "mariadb") else ""

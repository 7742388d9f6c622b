"""Placement: table prefixes and PostgreSQL schemas keep deployments in one database apart."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import URL, Engine, inspect, text

from tests.support import REPO_ROOT
from tests.support.cli import Cli
from tests.support.databases import temporary_engine
from tests.support.deploy import apply_by_hand, offline_dialect, second_empty_database
from tests.support.sdk import make_token_data
from tokenstore_sql import Placement, SQLAlchemyTokenStorage, schema
from tokenstore_sql.deploy import alembic_include_name_for
from tokenstore_sql.errors import PlacementError
from tokenstore_sql.models import DEFAULT_PLACEMENT, metadata_for
from tokenstore_sql.statements import statements_for

HEAD = schema.head_revision()


def _url_text(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def _second_placement(backend: str) -> Placement:
    """Another deployment's placement: another prefix, or on PostgreSQL another schema."""
    if backend == "postgresql":
        return Placement(DEFAULT_PLACEMENT.table_prefix, "tenant_b")
    return Placement("tenant_b_")


def _tables(engine: Engine, schema_name: str | None = None) -> set[str]:
    """Every table in a schema (default: the connection's)."""
    with engine.connect() as connection:
        inspector = inspect(connection)
        if schema_name is not None and not inspector.has_schema(schema_name):
            return set()
        return set(inspector.get_table_names(schema=schema_name))


def _placed(engine: Engine, placement: Placement) -> set[str]:
    """Which of a placement's two tables exist."""
    ours = {placement.tokens_table, placement.version_table}
    return ours & _tables(engine, placement.schema)


def _differences(engine: Engine, placement: Placement) -> list[Any]:
    """What autogenerate finds between the placed tables and the placed models."""
    ours = {placement.tokens_table, placement.version_table}

    def only_ours(name: str | None, type_: str, parents: Mapping[str, Any]) -> bool:
        if type_ == "schema":
            return name == placement.schema
        return type_ != "table" or name in ours

    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "version_table": placement.version_table,
                "version_table_schema": placement.schema,
                "compare_type": True,
                "include_schemas": placement.schema is not None,
                "include_name": only_ours,
            },
        )
        return list(compare_metadata(context, metadata_for(placement)))


def test_two_placements_in_one_database_stay_independent(
    backend: str, empty_database_url: URL, namespace: str
) -> None:
    first, second = DEFAULT_PLACEMENT, _second_placement(backend)
    data_a = make_token_data("rs", access_token="AT-of-a")
    data_b = make_token_data("rs", access_token="AT-of-b")
    with (
        temporary_engine(empty_database_url) as engine,
        SQLAlchemyTokenStorage(engine, namespace=namespace, placement=first) as a,
        SQLAlchemyTokenStorage(engine, namespace=namespace, placement=second) as b,
    ):
        a.store_token_data_by_resource_server({"rs": data_a})
        only_b = make_token_data("only-b")
        b.store_token_data_by_resource_server({"rs": data_b, "only-b": only_b})

        got_a, got_b = a.get_token_data("rs"), b.get_token_data("rs")
        assert got_a is not None
        assert got_b is not None
        assert (got_a.access_token, got_b.access_token) == ("AT-of-a", "AT-of-b")
        assert a.get_token_data("only-b") is None
        assert set(b.get_token_data_by_resource_server()) == {"rs", "only-b"}

        assert a.remove_token_data("rs")
        assert b.get_token_data("rs") is not None
        assert list(a.iter_namespaces()) == []
        assert list(b.iter_namespaces()) == [namespace]

        # Each placement has its own version table: moving one leaves the other alone.
        schema.downgrade(engine, "base", second)
        assert _placed(engine, second) == set()  # version table dropped too
        assert _placed(engine, first) == {first.tokens_table, first.version_table}
        with engine.connect() as connection:
            assert schema.current_revision(connection, first) == HEAD
            assert schema.current_revision(connection, second) is None


def test_migrations_name_tables_and_indexes_by_the_placement(
    backend: str, empty_database_url: URL
) -> None:
    placement = _second_placement(backend)
    with temporary_engine(empty_database_url) as engine:
        schema.migrate(engine, "0001", placement)
        schema.migrate(engine, "head", placement)

        assert _placed(engine, placement) == {placement.tokens_table, placement.version_table}
        assert _placed(engine, DEFAULT_PLACEMENT) == set()
        assert _differences(engine, placement) == []
        with engine.connect() as connection:
            inspector = inspect(connection)
            indexes = inspector.get_indexes(placement.tokens_table, schema=placement.schema)
            primary = inspector.get_pk_constraint(placement.tokens_table, schema=placement.schema)
        assert [i["name"] for i in indexes] == [f"ix_{placement.tokens_table}_token_key_id"]
        if backend != "mysql":  # MySQL names every primary key PRIMARY
            assert primary["name"] == f"pk_{placement.tokens_table}"

        # The comparison sees a difference when there is one.
        with engine.begin() as connection:
            index = f"ix_{placement.tokens_table}_token_key_id"
            if backend == "mysql":
                connection.execute(text(f"DROP INDEX {index} ON {placement.tokens_table}"))
            else:
                connection.execute(text(f"DROP INDEX {placement.qualified(index)}"))
        assert _differences(engine, placement) != []


@pytest.mark.postgresql
def test_two_prefixes_in_one_postgresql_schema_do_not_clash(
    backend: str, empty_database_url: URL, namespace: str
) -> None:
    if backend != "postgresql":
        pytest.skip("PostgreSQL only")
    # Index and primary key names are per schema on PostgreSQL: they must follow the prefix.
    placements = [Placement("one_", "shared"), Placement("two_", "shared")]
    with temporary_engine(empty_database_url) as engine:
        for placement in placements:
            with SQLAlchemyTokenStorage(engine, namespace=namespace, placement=placement) as s:
                s.store_token_data_by_resource_server({"rs": make_token_data("rs")})
        assert _tables(engine, "shared") == {
            "one_tokens",
            "one_version",
            "two_tokens",
            "two_version",
        }


def test_a_schema_placement_is_refused_off_postgresql(
    backend: str, empty_database_url: URL
) -> None:
    if backend == "postgresql":
        pytest.skip("PostgreSQL takes schemas")
    with temporary_engine(empty_database_url) as engine:
        with pytest.raises(PlacementError, match="PostgreSQL only"):
            SQLAlchemyTokenStorage(engine, placement=Placement(schema="tenant"))
        with engine.connect() as connection:
            assert inspect(connection).get_table_names() == []


@pytest.mark.parametrize(
    ("prefix", "schema_name", "problem"),
    [
        ("Upper_", None, "lower-case"),
        ("has space", None, "lower-case"),
        ("drop;table", None, "lower-case"),
        ("9starts_with_digit", None, "lower-case"),
        ("p" * 41, None, "longer than 40"),
        ("ok_", "Bad-Schema", "schema"),
        ("ok_", "s" * 64, "schema"),
    ],
)
def test_bad_placements_are_refused_by_name(
    prefix: str, schema_name: str | None, problem: str
) -> None:
    with pytest.raises(PlacementError, match=problem):
        Placement(prefix, schema_name)


def test_the_placement_names_both_tables_and_an_empty_prefix_is_allowed() -> None:
    placement = Placement("", "auth")
    assert (placement.tokens_table, placement.version_table) == ("tokens", "version")
    assert str(placement) == "auth.tokens"
    assert statements_for(placement).table.fullname == "auth.tokens"
    assert statements_for(DEFAULT_PLACEMENT).table.fullname == "tokenstore_sql_tokens"


def test_the_environment_gives_the_placement(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENSTORE_SQL_TABLE_PREFIX", "env_")
    monkeypatch.setenv("TOKENSTORE_SQL_SCHEMA", "env_schema")
    assert Placement.from_environment() == Placement("env_", "env_schema")
    assert Placement.from_environment("arg_") == Placement("arg_", "env_schema")
    monkeypatch.delenv("TOKENSTORE_SQL_TABLE_PREFIX")
    monkeypatch.setenv("TOKENSTORE_SQL_SCHEMA", "")
    assert Placement.from_environment() == DEFAULT_PLACEMENT


def test_include_name_for_placements_leaves_out_only_their_tables() -> None:
    include = alembic_include_name_for(Placement("a_"), Placement("b_", "auth"))
    assert not include("a_tokens", "table", {"schema_name": None})
    assert not include("a_version", "table", {"schema_name": None})
    assert not include("b_tokens", "table", {"schema_name": "auth"})
    assert include("b_tokens", "table", {"schema_name": None})  # same name, other schema
    assert include("tokenstore_sql_tokens", "table", {"schema_name": None})
    assert include("a_tokens", "column", {"table_name": "x"})


# --- the command line ------------------------------------------------------------------


def test_every_database_command_takes_the_placement(
    cli: Cli, backend: str, empty_database_url: URL, namespace: str, tmp_path: Any
) -> None:
    url = _url_text(empty_database_url)
    placement = _second_placement(backend)
    options = ["--table-prefix", placement.table_prefix]
    if placement.schema is not None:
        options += ["--schema", placement.schema]

    upgraded = cli("upgrade", "--url", url, *options)
    assert upgraded.returncode == 0, upgraded.stderr
    with temporary_engine(empty_database_url) as engine:
        assert _placed(engine, placement) == {placement.tokens_table, placement.version_table}
        assert _placed(engine, DEFAULT_PLACEMENT) == set()
        with SQLAlchemyTokenStorage(engine, namespace=namespace, placement=placement) as s:
            s.store_token_data_by_resource_server({"rs": make_token_data("rs")})

    assert cli("check", "--url", url, *options).returncode == 0
    assert cli("check", "--url", url).returncode == 1  # the default placement has nothing
    assert cli("current", "--url", url, *options).stdout == f"{HEAD} (head)\n"
    assert cli("namespaces", "--url", url, *options).stdout == f"{namespace}\n"
    assert cli("namespaces", "--url", url).stdout == ""
    exported = cli("export", "--url", url, str(tmp_path / "out.json"), *options)
    assert exported.returncode == 0, exported.stderr
    imported = cli("import", "--url", url, str(tmp_path / "out.json"), "--table-prefix", "moved_")
    assert imported.returncode == 0, imported.stderr
    assert cli("namespaces", "--url", url, "--table-prefix", "moved_").stdout == f"{namespace}\n"
    stats = cli("stats", "--url", url, *options)
    assert "total: 1 row(s)" in stats.stdout, stats.stderr
    assert cli("prune", "--url", url, "--dry-run", *options).returncode == 0
    removed = cli("remove-namespace", "--url", url, namespace, "--yes", *options)
    assert "removed 1 row(s)" in removed.stdout, removed.stderr
    rotated = cli("rotate-keys", "--url", url, "--decrypt", *options)
    assert rotated.returncode == 0, rotated.stderr
    downgraded = cli("downgrade", "--url", url, "base", "--yes", *options)
    assert downgraded.returncode == 0, downgraded.stderr
    with temporary_engine(empty_database_url) as engine:
        assert _placed(engine, placement) == set()  # base drops the version table too


def test_the_command_line_reads_the_placement_from_the_environment(
    cli: Cli, empty_database_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _url_text(empty_database_url)
    monkeypatch.setenv("TOKENSTORE_SQL_TABLE_PREFIX", "from_env_")
    assert cli("upgrade", "--url", url).returncode == 0
    with temporary_engine(empty_database_url) as engine:
        assert _tables(engine) == {"from_env_tokens", "from_env_version"}
    assert cli("check", "--url", url).returncode == 0
    assert cli("check", "--url", url, "--table-prefix", "tokenstore_sql_").returncode == 1


def test_bad_placement_options_fail_with_one_line(cli: Cli, empty_database_url: URL) -> None:
    url = _url_text(empty_database_url)
    bad_prefix = cli("upgrade", "--url", url, "--table-prefix", "Bad-Prefix")
    assert bad_prefix.returncode == 1
    assert bad_prefix.stderr.startswith("error: table prefix 'Bad-Prefix'")
    assert len(bad_prefix.stderr.splitlines()) == 1
    if empty_database_url.get_backend_name() != "postgresql":
        on_other = cli("upgrade", "--url", url, "--schema", "tenant")
        assert on_other.returncode == 1
        assert "PostgreSQL only" in on_other.stderr
        assert "Traceback" not in on_other.stderr
    with temporary_engine(empty_database_url) as engine, engine.connect() as connection:
        assert inspect(connection).get_table_names() == []


def test_sql_for_a_placement_applied_by_hand_gives_the_placed_schema(
    cli: Cli,
    backend: str,
    empty_database_url: URL,
    request: pytest.FixtureRequest,
    tmp_path: Any,
    namespace: str,
) -> None:
    placement = _second_placement(backend)
    options = ["--table-prefix", placement.table_prefix]
    if placement.schema is not None:
        options += ["--schema", placement.schema]
    with second_empty_database(request, tmp_path) as url, temporary_engine(url) as engine:
        with engine.connect():  # tells MariaDB from MySQL
            pass
        printed = cli("upgrade", "--sql", "--dialect", offline_dialect(engine), *options)
        assert printed.returncode == 0, printed.stderr
        assert f"CREATE TABLE {placement.qualified(placement.tokens_table)} " in printed.stdout
        assert f"CREATE TABLE {placement.qualified(placement.version_table)} " in printed.stdout
        apply_by_hand(url, printed.stdout)

        assert _differences(engine, placement) == []
        with engine.connect() as connection:
            assert schema.current_revision(connection, placement) == HEAD
        with SQLAlchemyTokenStorage(
            engine, namespace=namespace, create_schema=False, placement=placement
        ) as storage:
            storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})
            assert storage.get_token_data("rs") is not None


def test_the_alembic_command_takes_the_placement_as_x_arguments(
    empty_database_url: URL,
) -> None:
    placement = Placement("from_x_")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "alembic",
            "-x",
            f"url={_url_text(empty_database_url)}",
            "-x",
            f"table_prefix={placement.table_prefix}",
            "upgrade",
            "head",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    with temporary_engine(empty_database_url) as engine:
        assert _tables(engine) == {"from_x_tokens", "from_x_version"}
        assert _differences(engine, placement) == []

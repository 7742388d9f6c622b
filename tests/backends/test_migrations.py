"""The migrations: the stairway, agreement with the models, naming, and the alembic command."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import URL, Connection, Engine, MetaData, String, inspect, text

from tests.support import REPO_ROOT
from tests.support.databases import BACKENDS, temporary_engine
from tests.support.sdk import make_token_data
from tokenstore_sql import SQLAlchemyTokenStorage, schema
from tokenstore_sql.models import TOKENS_TABLE, VERSION_TABLE, metadata

MYSQL_ONLY = [p for p in BACKENDS if p.values[0] == "mysql"]
KEY_COLUMNS = ("namespace", "resource_server")


def _script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(schema.alembic_config())


def _revisions_base_first() -> list[Script]:
    return list(reversed(list(_script_directory().walk_revisions())))


@pytest.fixture
def engine(empty_database_url: URL) -> Iterator[Engine]:
    """An engine on an empty database of the test's own, upgraded to head."""
    with temporary_engine(empty_database_url) as made:
        schema.migrate(made, "head")
        yield made


def _current(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return schema.current_revision(connection)


def _tables(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return set(inspect(connection).get_table_names())


def _differences(engine: Engine, target: MetaData) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"version_table": VERSION_TABLE, "compare_type": True}
        )
        return list(compare_metadata(context, target))


def test_each_revision_upgrades_downgrades_and_upgrades_again(empty_database_url: URL) -> None:
    revisions = _revisions_base_first()
    assert revisions, "no revisions found"
    with temporary_engine(empty_database_url) as engine:
        for script in revisions:
            schema.migrate(engine, script.revision)
            assert _current(engine) == script.revision

            schema.downgrade(engine, "-1")
            assert _current(engine) == script.down_revision

            schema.migrate(engine, script.revision)
            assert _current(engine) == script.revision


def test_base_to_head_to_base_to_head_leaves_a_working_schema(
    engine: Engine, namespace: str
) -> None:
    head = schema.head_revision()
    assert _current(engine) == head
    assert set(metadata.tables) <= _tables(engine)

    schema.downgrade(engine, "base")
    assert _current(engine) is None
    assert not set(metadata.tables) & _tables(engine)

    schema.migrate(engine, "head")
    assert _current(engine) == head
    data = make_token_data("rs")
    with SQLAlchemyTokenStorage(engine, namespace=namespace) as storage:
        storage.store_token_data_by_resource_server({"rs": data})
        got = storage.get_token_data("rs")
    assert got is not None
    assert got.to_dict() == data.to_dict()


def test_migrated_schema_matches_the_models(engine: Engine) -> None:

    assert _differences(engine, metadata) == []

    # The comparison must be able to see a change: a copy of the models with one
    # column's type altered has to be reported on this backend.
    altered = MetaData()
    for table in metadata.tables.values():
        table.to_metadata(altered)
    tokens = altered.tables[TOKENS_TABLE]
    tokens.c.identity_id.type = String(100)
    found = _differences(engine, altered)
    assert any("identity_id" in repr(diff) and "modify_type" in repr(diff) for diff in found)


def _token_columns(connection: Connection, *facts: str) -> list[Any]:
    """(column name, *facts) for each column of the token table, from MySQL's catalog."""
    return list(
        connection.execute(
            text(
                f"SELECT COLUMN_NAME, {', '.join(facts)} FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :table"
            ),
            {"table": TOKENS_TABLE},
        ).all()
    )


@pytest.mark.parametrize("backend", MYSQL_ONLY)
def test_extra_is_stored_as_json_on_mysql_and_mariadb(engine: Engine) -> None:
    # Alembic's MySQL comparison treats JSON and LONGTEXT as the same type, because
    # MariaDB implements JSON as LONGTEXT with a json_valid() check and reflects it as
    # LONGTEXT. The model comparison therefore cannot tell JSON from plain LONGTEXT on
    # this family; this test checks that one column precisely instead.
    with engine.connect() as connection:
        data_type = dict(_token_columns(connection, "DATA_TYPE"))["extra"]
        if getattr(engine.dialect, "is_mariadb", False):
            checks = connection.execute(
                text(
                    "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
                    "WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = :table"
                ),
                {"table": TOKENS_TABLE},
            ).scalars()
            assert data_type.lower() == "longtext"
            assert "json_valid(`extra`)" in list(checks)
        else:
            assert data_type.lower() == "json"


def test_version_table_is_ours_and_no_alembic_version_table_is_made(
    engine: Engine,
) -> None:
    assert VERSION_TABLE == "tokenstore_sql_version"

    tables = _tables(engine)
    assert "tokenstore_sql_version" in tables
    assert "alembic_version" not in tables
    with engine.connect() as connection:
        recorded = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars()
        assert list(recorded) == [schema.head_revision()]


@pytest.mark.parametrize("backend", MYSQL_ONLY)
def test_key_columns_use_a_binary_no_pad_collation_on_mysql(engine: Engine) -> None:
    with engine.connect() as connection:
        rows = _token_columns(connection, "CHARACTER_SET_NAME", "COLLATION_NAME")
        keys = {name: (charset, collation) for name, charset, collation in rows}
        for column in KEY_COLUMNS:
            charset, collation = keys[column]
            assert charset == "utf8mb4"
            assert collation.endswith("_bin"), f"{column} uses {collation}"
            # Whatever its name, the collation must neither pad nor fold case.
            same = connection.execute(
                text(
                    f"SELECT _utf8mb4'a' COLLATE {collation} = _utf8mb4'a ', "
                    f"_utf8mb4'a' COLLATE {collation} = _utf8mb4'A'"
                )
            ).one()
            assert tuple(same) == (0, 0), f"{column} ({collation}) pads or folds case"


def test_migrations_have_exactly_one_head() -> None:
    heads = _script_directory().get_heads()
    assert len(heads) == 1, f"heads: {heads}"
    assert heads[0] == schema.head_revision()


def test_revision_ids_count_up_from_0001_and_start_their_file_names() -> None:
    revisions = _revisions_base_first()
    previous: str | None = None
    for number, script in enumerate(revisions, start=1):
        assert script.revision == f"{number:04d}"
        assert script.down_revision == previous
        assert script.path is not None
        assert Path(script.path).name.startswith(f"{script.revision}_")
        previous = script.revision

    versions = schema.migrations_dir() / "versions"
    on_disk = {path.resolve() for path in versions.glob("*.py")}
    assert on_disk == {Path(script.path).resolve() for script in revisions}


def _imported_modules(source: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_imported_modules_sees_the_models_import_in_every_spelling() -> None:
    for spelling in (
        "import tokenstore_sql.models",
        "from tokenstore_sql.models import TokenRow",
        "from tokenstore_sql import models",
    ):
        assert "tokenstore_sql.models" in _imported_modules(spelling)


def test_no_revision_imports_the_models() -> None:
    files = sorted((schema.migrations_dir() / "versions").glob("*.py"))
    assert files
    for path in files:
        source = path.read_text(encoding="utf-8")
        assert "tokenstore_sql.models" not in _imported_modules(source), path.name
        assert "tokenstore_sql.models" not in source, path.name


def test_alembic_upgrade_head_from_a_checkout_uses_our_version_table(
    empty_database_url: URL,
) -> None:
    env = {key: value for key, value in os.environ.items() if key != "TOKENSTORE_SQL_URL"}
    env["TOKENSTORE_SQL_URL"] = empty_database_url.render_as_string(hide_password=False)

    result = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    head = schema.head_revision()
    assert f"-> {head}" in result.stderr
    with temporary_engine(empty_database_url) as engine:
        assert _current(engine) == head
        tables = _tables(engine)
        assert set(metadata.tables) <= tables
        assert "alembic_version" not in tables

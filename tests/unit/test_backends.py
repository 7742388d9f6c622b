"""The backends package: one module per database, and the only place that names them.

No database server is needed: these tests read the backend modules and the package's
source.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import types
from pathlib import Path

import pytest
from sqlalchemy.dialects import mysql, postgresql, sqlite

import tokenstore_sql
from tokenstore_sql.backends import (
    BACKEND_MODULES,
    Backend,
    all_backends,
    backend_for,
    backend_from,
    find_backend,
)
from tokenstore_sql.errors import TokenStoreError, UnsupportedDatabaseError
from tokenstore_sql.models import tokens_table
from tokenstore_sql.statements import KEY_COLUMNS, UPDATED_COLUMNS, statements_for

PACKAGE = Path(tokenstore_sql.__file__).parent
DIALECT_NAMES = frozenset({"sqlite", "postgresql", "postgres", "mysql", "mariadb"})
# Modules outside backends/ that may still compare a dialect name, and why.
ALLOWED = {
    # Offline SQL is written from a name alone, with no dialect to ask: MariaDB's is the
    # MySQL dialect with is_mariadb set.
    "deploy.py",
}
DIALECTS = {
    "sqlite": sqlite.dialect(),
    "postgresql": postgresql.dialect(),
    "mysql": mysql.dialect(),
}


@pytest.mark.parametrize("module_name", BACKEND_MODULES)
def test_each_backend_module_provides_every_field(module_name: str) -> None:
    module = importlib.import_module(f"tokenstore_sql.backends.{module_name}")
    for field in dataclasses.fields(Backend):
        assert hasattr(module, field.name), field.name
        value = getattr(module, field.name)
        if field.type == "bool":
            assert isinstance(value, bool), field.name
        elif field.type.startswith("Callable"):
            assert callable(value) or (value is None and field.type.endswith("| None")), field.name
    backend = backend_from(module)
    assert backend.name == module_name
    assert module_name in backend.dialect_names
    assert set(backend.single_statement) == {False, True}
    for code in backend.privilege_codes:  # a refusal is reported with its name
        assert backend.condition_name(code), code


def test_a_backend_module_missing_fields_is_refused_by_name() -> None:
    module = types.ModuleType("tokenstore_sql.backends.newdb")
    module.name = "newdb"  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match=r"newdb lacks title, misspelled_schemes, "):
        backend_from(module)


@pytest.mark.parametrize("module_name", BACKEND_MODULES)
def test_each_backend_builds_its_upsert(module_name: str) -> None:
    backend = backend_for(module_name)
    statement = backend.upsert(tokens_table(), KEY_COLUMNS, UPDATED_COLUMNS)
    sql = str(statement.compile(dialect=DIALECTS[module_name]))
    assert sql.startswith("INSERT INTO tokenstore_sql_tokens")
    assert "ON CONFLICT" in sql or "ON DUPLICATE KEY UPDATE" in sql


@pytest.mark.parametrize("module_name", BACKEND_MODULES)
def test_each_backends_largest_upsert_stays_within_every_parameter_limit(module_name: str) -> None:
    rows = backend_for(module_name).rows_per_upsert
    assert isinstance(rows, int)
    assert rows >= 1
    statement = statements_for().upsert(DIALECTS[module_name], rows)
    parameters = statement.compile(dialect=DIALECTS[module_name]).params
    # SQLite (since 3.32) takes 32,766 parameters a statement; PostgreSQL and MySQL 65,535.
    assert len(parameters) == rows * len(tokens_table().columns) <= 32_766


def test_the_registry_knows_each_dialect_name_once() -> None:
    dialects = [name for backend in all_backends() for name in backend.dialect_names]
    assert dialects == ["sqlite", "postgresql", "mysql", "mariadb"]
    assert [backend.name for backend in all_backends()] == list(BACKEND_MODULES)
    assert backend_for("mariadb") is backend_for("mysql")
    assert find_backend("oracle") is None


@pytest.mark.parametrize("name", ["oracle", "mssql", "postgres", ""])
def test_the_registry_refuses_other_dialects_by_name(name: str) -> None:
    with pytest.raises(UnsupportedDatabaseError) as raised:
        backend_for(name)
    assert isinstance(raised.value, TokenStoreError)
    assert raised.value.dialect == name
    assert f"does not support the {name!r} database" in str(raised.value)


@pytest.mark.parametrize(
    ("dialect", "code", "transient", "name"),
    [
        ("postgresql", "40P01", True, "deadlock_detected"),
        ("postgresql", "08006", True, "connection_failure"),
        ("postgresql", "42501", False, "insufficient_privilege"),
        ("mysql", "1213", True, "deadlock"),
        ("mariadb", "1927", True, "connection killed"),
        ("mysql", "1142", False, "table access denied"),
        ("sqlite", "517", True, "database is locked (busy snapshot)"),
        ("sqlite", "8", False, "read-only database"),
        ("sqlite", "busy", False, None),
    ],
)
def test_codes_are_named_and_classified_by_their_backend(
    dialect: str, code: str, transient: bool, name: str | None
) -> None:
    backend = backend_for(dialect)
    assert backend.is_transient_code(code) is transient
    assert backend.condition_name(code) == name


def test_mariadb_and_mysql_keys_get_their_own_no_pad_collation() -> None:
    maria = mysql.dialect(is_mariadb=True)
    maria_key = str(backend_for("mariadb").key_type(maria, 255).compile(dialect=maria))
    mysql_key = str(backend_for("mysql").key_type(DIALECTS["mysql"], 255).compile(dialect=maria))
    assert "utf8mb4_nopad_bin" in maria_key
    assert "utf8mb4_0900_bin" in mysql_key


def _dialect_name_comparisons(path: Path) -> list[int]:
    """Give the lines of ``path`` that compare something with a dialect's name."""

    def names_a_dialect(node: ast.expr) -> bool:
        if isinstance(node, ast.Constant):
            return node.value in DIALECT_NAMES
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return any(names_a_dialect(item) for item in node.elts)
        return False

    return [
        node.lineno
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Compare)
        and any(names_a_dialect(side) for side in (node.left, *node.comparators))
    ]


def test_no_module_outside_backends_compares_dialect_names() -> None:
    found = {
        str(path.relative_to(PACKAGE)): lines
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] != "backends"
        and str(path.relative_to(PACKAGE)) not in ALLOWED
        and (lines := _dialect_name_comparisons(path))
    }
    assert found == {}, "ask tokenstore_sql.backends instead of comparing dialect names"


def test_the_source_scan_finds_a_comparison(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        'a = dialect.name == "sqlite"\nb = name in ("mysql", "mariadb")\nc = x != 1\n',
        encoding="utf-8",
    )
    assert _dialect_name_comparisons(probe) == [1, 2]

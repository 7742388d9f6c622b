"""Sphinx directives that write the schema pages from the package itself.

- ``tokenstore-columns``: the token table's columns, with each database's column type,
  from :func:`tokenstore_sql.models.tokens_table`;
- ``tokenstore-offline-sql DIALECT``: the migrations from an empty database to head as
  SQL for one database, from :func:`tokenstore_sql.deploy.offline_sql` (Alembic's offline
  mode, the same script ``tokenstore-sql upgrade --sql`` prints);
- ``tokenstore-migrations``: every revision in ``migrations/versions``, oldest first,
  with its docstring;
- ``tokenstore-error-tree``: the error classes as a tree, from ``tokenstore_sql.errors``;
- ``tokenstore-raisers``: for each error, the documented functions and methods whose
  ``:raises:`` fields name it.

Nothing here is copied by hand, so the pages cannot drift from the schema.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import re
from typing import Any

from alembic.script import ScriptDirectory
from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sqlalchemy.dialects import mysql, postgresql, sqlite

import tokenstore_sql
from tokenstore_sql import errors
from tokenstore_sql.deploy import OFFLINE_DIALECTS, offline_sql
from tokenstore_sql.models import tokens_table
from tokenstore_sql.schema import alembic_config

_DIALECTS = {
    "SQLite": sqlite.dialect(),
    "PostgreSQL": postgresql.dialect(),
    "MySQL": mysql.dialect(),
}


def _cell(text: str, literal: bool = True) -> nodes.entry:
    paragraph = nodes.paragraph()
    paragraph += nodes.literal(text, text) if literal and text else nodes.Text(text)
    return nodes.entry("", paragraph)


def _table(header: list[str], rows: list[list[nodes.entry]]) -> nodes.table:
    group = nodes.tgroup(cols=len(header))
    group += [nodes.colspec(colwidth=1) for _ in header]
    head = nodes.thead()
    head += nodes.row("", *(_cell(name, literal=False) for name in header))
    body = nodes.tbody()
    body += [nodes.row("", *cells) for cells in rows]
    group += [head, body]
    table = nodes.table()
    table += group
    return table


class ColumnsDirective(SphinxDirective):
    """The token table's columns, their types per database, and its indexes."""

    def run(self) -> list[nodes.Node]:
        """Build the nodes."""
        table = tokens_table()
        rows = []
        for column in table.columns:
            types = [column.type.compile(dialect=d) for d in _DIALECTS.values()]
            key = "primary key" if column.primary_key else ""
            null = "NULL" if column.nullable else "NOT NULL"
            rows.append([_cell(column.name), *map(_cell, types), _cell(null), _cell(key, False)])
        header = ["column", *_DIALECTS, "null", "key"]
        indexes = nodes.bullet_list()
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            columns = ", ".join(c.name for c in index.columns)
            item = nodes.paragraph()
            item += [nodes.literal(text=str(index.name)), nodes.Text(f" on ({columns})")]
            indexes += nodes.list_item("", item)
        primary = nodes.paragraph()
        names = ", ".join(c.name for c in table.primary_key.columns)
        primary += [
            nodes.Text("Primary key "),
            nodes.literal(text=str(table.primary_key.name)),
            nodes.Text(f" on ({names}). Indexes:"),
        ]
        return [_table(header, rows), primary, indexes]


class OfflineSqlDirective(SphinxDirective):
    """The SQL that creates the schema at head on one database."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        """Build the nodes."""
        dialect = self.arguments[0]
        if dialect not in OFFLINE_DIALECTS:
            raise self.error(f"unknown dialect {dialect!r}")
        # Alembic reports each step at INFO; the page needs only the SQL.
        alembic_logger = logging.getLogger("alembic")
        level = alembic_logger.level
        alembic_logger.setLevel(logging.WARNING)
        try:
            sql = offline_sql(dialect).strip()
        finally:
            alembic_logger.setLevel(level)
        block = nodes.literal_block(sql, sql, language="sql")
        return [block]


class MigrationsDirective(SphinxDirective):
    """Each revision, oldest first: its id, what it revises, and its docstring."""

    def run(self) -> list[nodes.Node]:
        """Build the nodes."""
        script = ScriptDirectory.from_config(alembic_config())
        revisions = list(reversed(list(script.walk_revisions())))
        result: list[nodes.Node] = []
        for revision in revisions:
            self.env.note_dependency(revision.path)
            doc = inspect.cleandoc(revision.module.__doc__ or "")
            lines = [
                line
                for line in doc.splitlines()
                if not line.startswith(("Revision ID:", "Revises:", "Create Date:"))
            ]
            title = lines[0] if lines else revision.revision
            section = nodes.section(ids=[f"migration-{revision.revision}"])
            section += nodes.title(text=f"{revision.revision}: {title}")
            revises = revision.down_revision or "an empty database"
            facts = nodes.paragraph()
            facts += [
                nodes.Text("File "),
                nodes.literal(text=f"migrations/versions/{revision.path.rsplit('/', 1)[-1]}"),
                nodes.Text("; revises "),
                nodes.literal(text=str(revises)),
                nodes.Text("."),
            ]
            section += facts
            body = StringList(lines[1:], source=revision.path)
            self.state.nested_parse(body, self.content_offset, section)
            result.append(section)
        return result


# The modules whose public names the reference documents under their own name; the
# top level's names are documented as ``tokenstore_sql.NAME``.
DOCUMENTED_MODULES = (
    "models",
    "deploy",
    "maintenance",
    "rotation",
    "transfer",
    "exporting",
    "refresh",
    "async_refresh",
    "locks",
    "namespaces",
    "admin",
    "async_admin",
    "settings",
    "testing",
)
_RAISES = re.compile(r":raises (\w+):")


def _error_classes() -> list[type[BaseException]]:
    return [
        value
        for value in vars(errors).values()
        if isinstance(value, type)
        and issubclass(value, errors.TokenStoreError)
        and value.__module__ == errors.__name__
    ]


class ErrorTreeDirective(SphinxDirective):
    """The error classes as nested lists, each under its tokenstore-sql base."""

    def run(self) -> list[nodes.Node]:
        """Build the nodes."""
        classes = _error_classes()
        lines: list[str] = []

        def add(cls: type[BaseException], depth: int) -> None:
            others = [
                b.__name__
                for b in cls.__bases__
                if b.__module__ == "builtins" and b is not Exception
            ]
            also = f" (also ``{'``, ``'.join(others)}``)" if others else ""
            lines.append(f"{'  ' * depth}- :class:`~tokenstore_sql.errors.{cls.__name__}`{also}")
            lines.append("")
            for sub in classes:
                if cls in sub.__bases__:
                    add(sub, depth + 1)

        add(errors.TokenStoreError, 0)
        container = nodes.container()
        self.state.nested_parse(StringList(lines), self.content_offset, container)
        return container.children


def _documented_callables() -> list[tuple[str, Any]]:
    """Every documented function, class and method, by the name the reference gives it."""
    found: list[tuple[str, Any]] = []
    owners = [("tokenstore_sql", name) for name in tokenstore_sql.__all__]
    for module_name in DOCUMENTED_MODULES:
        module = importlib.import_module(f"tokenstore_sql.{module_name}")
        public = getattr(module, "__all__", None) or [
            name
            for name, value in vars(module).items()
            if not name.startswith("_") and getattr(value, "__module__", None) == module.__name__
        ]
        owners += [(module.__name__, name) for name in public]
    seen: set[int] = set()
    for module_name, name in owners:
        value = getattr(importlib.import_module(module_name), name)
        if id(value) in seen or not callable(value):
            continue
        seen.add(id(value))
        found.append((f"{module_name}.{name}", value))
        if inspect.isclass(value):
            for attr, member in vars(value).items():
                if not attr.startswith("_") and callable(member):
                    found.append((f"{module_name}.{name}.{attr}", member))
    return found


def _short(target: str) -> str:
    """``Class.method`` for a method, the bare name for a function or class."""
    parts = target.split(".")
    return ".".join(parts[-2:]) if parts[-2][:1].isupper() else parts[-1]


class RaisersDirective(SphinxDirective):
    """For each error, the documented callables whose docstrings say they raise it."""

    def run(self) -> list[nodes.Node]:
        """Build the nodes."""
        raisers: dict[str, list[str]] = {cls.__name__: [] for cls in _error_classes()}
        for target, value in _documented_callables():
            for error in _RAISES.findall(inspect.getdoc(value) or ""):
                if error in raisers and target not in raisers[error]:
                    raisers[error].append(target)
        lines: list[str] = []
        for error, targets in raisers.items():
            if not targets:
                continue
            links = ", ".join(f":py:obj:`{_short(t)} <{t}>`" for t in targets)
            lines += [f"- :class:`~tokenstore_sql.errors.{error}`: {links}", ""]
        container = nodes.container()
        self.state.nested_parse(StringList(lines), self.content_offset, container)
        return container.children


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the directives."""
    app.add_directive("tokenstore-columns", ColumnsDirective)
    app.add_directive("tokenstore-offline-sql", OfflineSqlDirective)
    app.add_directive("tokenstore-migrations", MigrationsDirective)
    app.add_directive("tokenstore-error-tree", ErrorTreeDirective)
    app.add_directive("tokenstore-raisers", RaisersDirective)
    return {"parallel_read_safe": True, "version": "1"}

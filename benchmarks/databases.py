"""The databases a run measures: where they come from, scratch databases, and bulk fills.

SQLite files live in the run's working directory. PostgreSQL and MySQL come from admin
URLs in the environment; the run creates a randomly named scratch database on each
server and drops it at the end.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import secrets
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sqlalchemy import URL, Engine, event, make_url, text
from sqlalchemy import create_engine as plain_engine
from sqlalchemy.pool import NullPool

from tokenstore_sql.models import TOKENS_TABLE

from .data import COLUMNS, by_resource_server, filler_namespace, filler_rows

URL_VARIABLES: Final = {
    "postgresql": "TOKENSTORE_SQL_BENCH_POSTGRESQL_URL",
    "mysql": "TOKENSTORE_SQL_BENCH_MYSQL_URL",
}
BACKENDS: Final = ("sqlite", "postgresql", "mysql")
DRIVERS: Final = {"sqlite": "sqlite3", "postgresql": "psycopg", "mysql": "pymysql"}
_FILL_BATCH: Final = 5000


@dataclass
class Database:
    """One backend's database for this run, and how many namespaces it holds."""

    backend: str
    url: URL
    namespaces: int = 0

    def raw_connection(self, *, autocommit: bool = False) -> Any:
        """Open a new connection of the bare driver (sqlite3, psycopg, pymysql)."""
        if self.backend == "sqlite":
            connection = sqlite3.connect(self.url.database or "", isolation_level=None)
            connection.execute("PRAGMA busy_timeout = 30000")
            connection.execute("PRAGMA synchronous = FULL")
            return connection
        dialect = plain_engine(self.url, poolclass=NullPool).dialect
        cargs, cparams = dialect.create_connect_args(self.url)
        connection = dialect.loaded_dbapi.connect(*cargs, **cparams)
        if self.backend == "mysql":
            connection.autocommit(autocommit)
        else:
            connection.autocommit = autocommit
        return connection


def available(backends: list[str]) -> tuple[list[str], dict[str, str]]:
    """Split the wanted backends into those with a server and the reasons for the rest."""
    chosen, skipped = [], {}
    for backend in backends:
        variable = URL_VARIABLES.get(backend)
        if variable is not None and not os.environ.get(variable, "").strip():
            skipped[backend] = f"{variable} is not set"
        else:
            chosen.append(backend)
    return chosen, skipped


@contextlib.contextmanager
def open_database(backend: str, workdir: Path, tag: str) -> Iterator[Database]:
    """Give an empty database on ``backend``, dropped (or left in ``workdir``) afterwards."""
    if backend == "sqlite":
        yield Database(backend, make_url(f"sqlite:///{workdir / f'tokenstore-sql-{tag}.db'}"))
        return
    admin_url = make_url(os.environ[URL_VARIABLES[backend]])
    name = f"tokenstore_bench_{secrets.token_hex(5)}"
    admin = plain_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    quoted = f'"{name}"' if backend == "postgresql" else f"`{name}`"
    create = f"CREATE DATABASE {quoted}"
    create += (
        " ENCODING 'UTF8' TEMPLATE template0"
        if backend == "postgresql"
        else " CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
    )
    with admin.connect() as connection:
        connection.execute(text(create))
    try:
        yield Database(backend, admin_url.set(database=name))
    finally:
        force = " WITH (FORCE)" if backend == "postgresql" else ""
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {quoted}{force}"))
        admin.dispose()


def fill(database: Database, target: int) -> None:
    """Add filler namespaces (five rows each) until the table holds ``target`` namespaces."""
    # The measured namespace counts as the first; filler numbers continue from there.
    start, stop = max(database.namespaces, 1), target
    if stop > start:
        insert_rows(database, filler_rows(start, stop, database.backend))
    database.namespaces = max(database.namespaces, target)


def insert_rows(database: Database, rows: Iterable[tuple[Any, ...]]) -> None:
    """Insert rows of tokenstore-sql's table, values in the order of ``COLUMNS``.

    One separate connection, batched multi-row inserts, one commit per batch.
    """
    connection = database.raw_connection()
    mark = "?" if database.backend == "sqlite" else "%s"
    insert = (
        f"INSERT INTO {TOKENS_TABLE} ({', '.join(COLUMNS)}) "
        f"VALUES ({', '.join([mark] * len(COLUMNS))})"
    )
    pending = iter(rows)
    try:
        while batch := list(itertools.islice(pending, _FILL_BATCH)):
            if database.backend == "sqlite":
                connection.execute("BEGIN")
                connection.executemany(insert, batch)
                connection.execute("COMMIT")
            else:
                with connection.cursor() as cursor:
                    cursor.executemany(insert, batch)
                connection.commit()
    finally:
        connection.close()


def fill_sdk_sqlite(path: Path, start: int, stop: int) -> None:
    """Add filler namespaces to a globus-sdk ``SQLiteTokenStorage`` file."""
    template = [(rs, json.dumps(data.to_dict())) for rs, data in by_resource_server().items()]
    connection = sqlite3.connect(path)
    try:
        rows = (
            (filler_namespace(index), rs, blob)
            for index in range(max(start, 1), stop)
            for rs, blob in template
        )
        with connection:
            connection.executemany(
                "INSERT INTO token_storage(namespace, resource_server, token_data_json) "
                "VALUES (?, ?, ?)",
                rows,
            )
    finally:
        connection.close()


def count_statements(engine: Engine) -> list[str]:
    """Record every statement the engine sends, and every connection taken, from now on.

    For the no-I/O check: the storage's reads run on the driver's connection, out of
    sight of SQLAlchemy's statement events, so taking a connection counts too.
    """
    seen: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    @event.listens_for(engine.pool, "checkout")
    def _taken(*args: Any) -> None:
        seen.append("(connection taken from the pool)")

    return seen


def fill_sdk_json(path: Path, start: int, stop: int) -> None:
    """Add filler namespaces to a globus-sdk ``JSONTokenStorage`` file, rewriting it."""
    document = json.loads(path.read_text(encoding="utf-8"))
    template = {rs: data.to_dict() for rs, data in by_resource_server().items()}
    for index in range(max(start, 1), stop):
        document["data"][filler_namespace(index)] = template
    path.write_text(json.dumps(document), encoding="utf-8")

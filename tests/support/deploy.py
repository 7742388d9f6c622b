"""What a DBA does with ``upgrade --sql``: split the printed script and apply it by hand."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import URL, Engine

from .databases import scratch_database, temporary_engine


def statements(sql: str) -> list[str]:
    """Split Alembic's offline script into statements, as a DBA's client would."""
    body = "\n".join(line for line in sql.splitlines() if not line.startswith("--"))
    return [part.strip() for part in re.split(r";\s*\n", body) if part.strip()]


def apply_by_hand(url: URL, sql: str) -> None:
    """Run a printed script on ``url`` outside Alembic and outside the package."""
    if url.get_backend_name() == "sqlite":
        assert url.database is not None
        with sqlite3.connect(url.database) as connection:
            connection.executescript(sql)
        return
    # Statement by statement, as sent: PostgreSQL's script brings its own BEGIN/COMMIT.
    with (
        temporary_engine(url, isolation_level="AUTOCOMMIT") as engine,
        engine.connect() as connection,
    ):
        for statement in statements(sql):
            connection.exec_driver_sql(statement)


def offline_dialect(engine: Engine) -> str:
    """The ``--dialect`` that prints SQL for the server behind ``engine`` (once connected)."""
    if getattr(engine.dialect, "is_mariadb", False):
        return "mariadb"
    return engine.dialect.name


@contextmanager
def second_empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[URL]:
    """Another empty database on the test's backend, for the script applied by hand."""
    if request.getfixturevalue("backend") == "sqlite":
        yield URL.create("sqlite", database=str(tmp_path / "by-hand.db"))
        return
    with scratch_database(request.getfixturevalue("server_url")) as url:
        yield url

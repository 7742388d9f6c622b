"""Which database servers a test run uses, and scratch databases on them.

A server URL comes from (1) the environment, one variable per backend; else (2) a
container started by testcontainers when a Docker engine answers; else (3) the tests
for that backend skip with a reason that names the variable, except under CI, where
they fail: CI must never pass by skipping a database it was meant to test.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import URL, Engine, make_url, text

from tokenstore_sql import create_engine

from .private_servers import in_ci

SERVER_BACKENDS = ("postgresql", "mysql")
# parametrize("backend", ...) with the backend's mark, for tests that choose their backends
BACKENDS = [
    pytest.param(name, marks=getattr(pytest.mark, name)) for name in ("sqlite", *SERVER_BACKENDS)
]
SERVER_PARAMS = BACKENDS[1:]
URL_VARIABLES = {
    "postgresql": "TOKENSTORE_SQL_TEST_POSTGRESQL_URL",
    "mysql": "TOKENSTORE_SQL_TEST_MYSQL_URL",
}
EXAMPLE_URLS = {
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
    "mysql": "mysql+pymysql://root@127.0.0.1:3306/test",
}


@dataclass(frozen=True)
class ServerChoice:
    """Where a backend's server comes from for this run.

    ``source`` is ``"environment"`` (``url`` set), ``"docker"`` (start a container), or
    ``None`` (unavailable: skip, or fail when ``must_fail``).
    """

    backend: str
    source: str | None
    url: str | None = None
    reason: str = ""
    must_fail: bool = False


def resolve_server(
    backend: str, environ: Mapping[str, str], docker_available: Callable[[], bool]
) -> ServerChoice:
    """Decide where ``backend``'s server comes from, without connecting to anything."""
    variable = URL_VARIABLES[backend]
    url = environ.get(variable, "").strip()
    if url:
        return ServerChoice(backend, "environment", url=url)
    if docker_available():
        return ServerChoice(backend, "docker")
    return ServerChoice(backend, None, reason=no_server_reason(backend), must_fail=in_ci(environ))


def no_server_reason(backend: str) -> str:
    """Why ``backend``'s tests skip: no URL in the environment and no Docker engine.

    The run's summary gathers the tests skipped for this reason into one line
    (tests/support/skips.py), which reads the backend back from the words.
    """
    return (
        f"no {backend} server: set {URL_VARIABLES[backend]} "
        f"(for example {EXAMPLE_URLS[backend]}) or start a Docker engine for testcontainers"
    )


def docker_available() -> bool:
    """Tell whether a Docker engine answers (testcontainers needs one)."""
    try:
        import docker  # installed with testcontainers

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@contextlib.contextmanager
def container_url(backend: str) -> Iterator[str]:
    """Start a throwaway server with testcontainers and yield its admin URL."""
    if backend == "postgresql":
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:15", driver="psycopg") as pg:
            yield pg.get_connection_url()
    else:
        from testcontainers.mysql import MySqlContainer

        with MySqlContainer("mariadb:10.11") as maria:
            yield maria.get_connection_url().replace("mysql://", "mysql+pymysql://", 1)


def scratch_name() -> str:
    """A random database name that cannot clash with another run's or another worker's.

    Under pytest-xdist the worker's id (``gw0``, ``gw1``...) is part of the name, so a
    database left behind by a killed run says which worker made it.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return f"tokenstore_test_{worker}_{secrets.token_hex(6)}"


@contextlib.contextmanager
def scratch_database(server_url: str, name: str | None = None) -> Iterator[URL]:
    """Create an empty database on a server, yield its URL, and drop it afterwards."""
    admin_url = make_url(server_url)
    name = name or scratch_name()
    # pre-ping: a test may restart the server while the scratch database is in use
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    try:
        with admin.connect() as connection:
            if admin_url.get_backend_name() == "postgresql":
                connection.execute(
                    text(f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' TEMPLATE template0")
                )
            else:
                connection.execute(
                    text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
                )
        yield admin_url.set(database=name)
    finally:
        with admin.connect() as connection:
            if admin_url.get_backend_name() == "postgresql":
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            else:
                connection.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


class Servers:
    """The run's database servers and scratch databases, made on first use, closed once."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self._stack = contextlib.ExitStack()
        self._choices: dict[str, ServerChoice] = {}
        self._urls: dict[str, str] = {}
        self._scratch: dict[str, URL] = {}

    def choice(self, backend: str) -> ServerChoice:
        """Where ``backend`` comes from (decided once per run)."""
        if backend not in self._choices:
            self._choices[backend] = resolve_server(backend, self._environ, docker_available)
        return self._choices[backend]

    def admin_url(self, backend: str) -> str:
        """The server's admin URL, starting a container if that is the choice."""
        if backend not in self._urls:
            choice = self.choice(backend)
            if choice.source == "environment":
                assert choice.url is not None
                self._urls[backend] = choice.url
            else:
                self._urls[backend] = self._stack.enter_context(container_url(backend))
        return self._urls[backend]

    def scratch_url(self, backend: str) -> URL:
        """The run's shared scratch database on ``backend``."""
        if backend not in self._scratch:
            self._scratch[backend] = self._stack.enter_context(
                scratch_database(self.admin_url(backend))
            )
        return self._scratch[backend]

    def close(self) -> None:
        """Drop the scratch databases and stop any containers."""
        self._stack.close()


def reachable_admin_url(servers: Servers, backend: str) -> str:
    """The admin URL of ``backend``'s server, once it answers.

    Skips when there is no server for it, fails when CI expects one or when the server
    does not answer: a test never passes by skipping a database it was given.
    """
    choice = servers.choice(backend)
    if choice.source is None:
        if choice.must_fail:
            pytest.fail(f"CI expects every database: {choice.reason}", pytrace=False)
        pytest.skip(choice.reason)
    url = servers.admin_url(backend)
    probe = create_engine(url, pool_pre_ping=False)
    try:
        with probe.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        shown = make_url(url).render_as_string(hide_password=True)
        pytest.fail(f"{backend} server {shown} cannot be reached ({type(exc).__name__})")
    finally:
        probe.dispose()
    return url


def assert_nothing_checked_out(engine: Engine) -> None:
    """Fail when a connection was not returned to the pool."""
    checked_out = getattr(engine.pool, "checkedout", lambda: 0)()
    assert checked_out == 0, f"{checked_out} connection(s) left checked out"


@contextlib.contextmanager
def temporary_engine(url: URL | str, **options: Any) -> Iterator[Engine]:
    """An engine with tokenstore-sql's defaults, disposed when the block ends."""
    engine = create_engine(url, **options)
    try:
        yield engine
    finally:
        engine.dispose()

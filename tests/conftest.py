"""Database selection, scratch databases and shared fixtures for the whole suite.

Every backend test runs on SQLite (a fresh file per test), PostgreSQL and MySQL (a
scratch database per run, shared by the run's tests, which use unique namespaces).
Narrow a local run with marks: ``pytest -m "not mysql"``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import URL, Engine, make_url

from tokenstore_sql import (
    AsyncSQLAlchemyTokenStorage,
    SQLAlchemyTokenStorage,
    create_async_engine,
    create_engine,
)

from .support.apis import BlockingAsyncStorage, LoopThread, dispose
from .support.cli import Cli
from .support.databases import (
    BACKENDS,
    Servers,
    assert_nothing_checked_out,
    reachable_admin_url,
    scratch_database,
)
from .support.fake_auth import FakeAuth, mocked

# One summary line for the tests skipped for want of a database server.
pytest_plugins = ["tests.support.skips"]


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep the tests that start private servers on one worker, one after another.

    Their module fixtures start one cluster per module, and their servers' ports are
    probed before they are bound: on one worker two such servers never start at once.
    Grouped tests (these, and the benchmark's) go first: a group is the longest piece of
    work one worker takes, and started last it would leave the others idle at the end.
    """
    for item in items:
        if item.get_closest_marker("topology") is not None:
            item.add_marker(pytest.mark.xdist_group("topology"))
    items.sort(key=lambda item: item.get_closest_marker("xdist_group") is None)


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    """The run's servers; scratch databases are dropped when the run ends."""
    made = Servers(os.environ)
    yield made
    made.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each backend in turn: sqlite, postgresql, mysql."""
    return str(request.param)


@pytest.fixture
def server_url(backend: str, servers: Servers) -> str:
    """The admin URL of the server under test (not for SQLite)."""
    assert backend != "sqlite"
    return reachable_admin_url(servers, backend)


@pytest.fixture
def database_url(backend: str, servers: Servers, tmp_path: Path) -> URL:
    """Room for this test: a new SQLite file, or the run's scratch database on a server."""
    if backend == "sqlite":
        return make_url(f"sqlite:///{tmp_path / 'tokens.db'}")
    reachable_admin_url(servers, backend)
    return servers.scratch_url(backend)


@pytest.fixture
def empty_database_url(backend: str, servers: Servers, tmp_path: Path) -> Iterator[URL]:
    """A database of this test's own, empty, dropped afterwards."""
    if backend == "sqlite":
        yield make_url(f"sqlite:///{tmp_path / 'empty.db'}")
        return
    with scratch_database(reachable_admin_url(servers, backend)) as url:
        yield url


def _engine(url: URL) -> Iterator[Engine]:
    """An engine with tokenstore-sql's defaults; the test must return every connection."""
    made = create_engine(url)
    yield made
    assert_nothing_checked_out(made)
    made.dispose()


@pytest.fixture
def engine(database_url: URL) -> Iterator[Engine]:
    """An engine with tokenstore-sql's defaults; the test must return every connection."""
    yield from _engine(database_url)


@pytest.fixture
def empty_engine(empty_database_url: URL) -> Iterator[Engine]:
    """:func:`engine` on :func:`empty_database_url`: a database of this test's own, empty."""
    yield from _engine(empty_database_url)


@pytest.fixture
def cli() -> Cli:
    """The command line, run in this process (``process=True``: a real one); see support/cli.py."""
    return Cli()


@pytest.fixture
def auth() -> Iterator[FakeAuth]:
    """A fake Globus Auth that globus-sdk's HTTP calls reach, for the whole test."""
    made = FakeAuth()
    with mocked(made):
        yield made


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test's own home directory (where GlobusApp keeps its files), no TOKENSTORE_SQL_*."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("USERPROFILE", str(tmp_path))
    for variable in ("URL", "KEYS", "TABLE_PREFIX", "SCHEMA"):
        monkeypatch.delenv(f"TOKENSTORE_SQL_{variable}", raising=False)
    return tmp_path


@pytest.fixture
def namespace() -> str:
    """A namespace no other test uses."""
    return f"ns-{uuid.uuid4()}"


@pytest.fixture
def storage(engine: Engine, namespace: str) -> Iterator[SQLAlchemyTokenStorage]:
    """Our storage on the backend under test, in a namespace of its own."""
    with SQLAlchemyTokenStorage(engine, namespace=namespace) as made:
        yield made


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    """An event loop in a thread of its own, for the async storage under the sync suite."""
    made = LoopThread()
    yield made
    made.close()


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest) -> str:
    """Each API in turn: SQLAlchemyTokenStorage, AsyncSQLAlchemyTokenStorage."""
    return str(request.param)


@pytest.fixture
def make_api_storage(
    api: str, engine: Engine, database_url: URL, loop_thread: LoopThread
) -> Iterator[Callable[..., Any]]:
    """A factory of storages of the API under test, all on the test's database.

    The async storage comes behind the sync method names (tests/support/apis.py), so one test
    body checks both.
    """
    async_engine = create_async_engine(database_url) if api == "async" else None
    made: list[Any] = []

    def make(namespace: str, **options: Any) -> Any:
        storage: Any
        if async_engine is None:
            storage = SQLAlchemyTokenStorage(engine, namespace=namespace, **options)
        else:
            inner = AsyncSQLAlchemyTokenStorage(async_engine, namespace=namespace, **options)
            storage = BlockingAsyncStorage(inner, loop_thread)
        made.append(storage)
        return storage

    yield make
    for storage in made:
        storage.close()
    if async_engine is not None:
        dispose(async_engine, loop_thread)


@pytest.fixture
def open_api_storage(api: str, loop_thread: LoopThread) -> Iterator[Callable[..., Any]]:
    """A factory of storages of the API under test on any URL, each with its own engine."""
    made: list[Any] = []

    def open_storage(url: URL, **options: Any) -> Any:
        storage: Any
        if api == "sync":
            storage = SQLAlchemyTokenStorage(url, **options)
        else:
            storage = BlockingAsyncStorage(AsyncSQLAlchemyTokenStorage(url, **options), loop_thread)
        made.append(storage)
        return storage

    yield open_storage
    for storage in made:
        storage.close()


@pytest.fixture
def api_storage(make_api_storage: Callable[..., Any], namespace: str) -> Any:
    """A storage of the API under test, in a namespace of its own."""
    return make_api_storage(namespace)

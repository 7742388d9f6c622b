"""Many processes and threads, killed sessions, outages and deadlocks: nothing is lost.

Each test is bounded in time. Server faults are injected without disturbing other test
runs on the same servers: sessions are killed only in a database of the test's own, and
outages happen behind a TCP proxy (see ``tests/support/faults.py``). A real server restart
happens only on a private PostgreSQL server that the test starts and stops for itself
(see ``tests/support/private_servers.py``); the shared servers are never restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import sqlite3
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import URL, Engine, event, func, make_url, select, text
from sqlalchemy.exc import OperationalError

from tests.support.databases import SERVER_PARAMS
from tests.support.faults import TcpProxy, kill_session, kill_sessions, session_id, wait_until
from tests.support.private_servers import StopMode, private_postgresql
from tests.support.sdk import make_token_data
from tests.support.sdk_files import write_json
from tests.support.threads import errors_in_threads
from tests.support.tracing import before_statements
from tokenstore_sql import (
    AsyncSQLAlchemyTokenStorage,
    SQLAlchemyTokenStorage,
    StorageUnavailableError,
    StoreSettings,
    TokenStoreError,
    create_engine,
)
from tokenstore_sql.async_pools import handoff_for, settle
from tokenstore_sql.backends import backend_of
from tokenstore_sql.models import TokenRow
from tokenstore_sql.retries import RetryPolicy
from tokenstore_sql.transactions import WRITE_TRANSACTION_OPTION
from tokenstore_sql.transfer import import_token_files

SHARED_KEYS = ("shared-0", "shared-1", "shared-2")
PASSWORD = "hunter2-SECRET"


def _work(url: str, namespace: str, worker: int, operations: int, barrier: Any, out: str) -> None:
    """One process's share of the mixed workload; writes what it did to ``out`` as JSON.

    A fixed number of operations, not a fixed time: how many a worker gets through in a
    given time depends on the machine (and on how SQLite hands its lock round), whereas
    what is checked here, that nothing is lost or fails, must hold on any machine.
    """
    written: dict[str, list[str]] = {}
    last_own: str | None = None  # "store:<value>" or "remove" for the key only we write
    errors: list[str] = []
    ops = 0
    own = f"own-{worker}"
    rng = random.Random(worker)

    def store(*keys: str) -> None:
        nonlocal last_own
        value = f"w{worker}-{ops}"
        for key in keys:
            written.setdefault(key, []).append(value)
        storage.store_token_data_by_resource_server(
            {key: make_token_data(key, access_token=value) for key in keys}
        )
        if own in keys:
            last_own = f"store:{value}"

    with SQLAlchemyTokenStorage(url, namespace=namespace) as storage:
        barrier.wait(60)
        while ops < operations:
            ops += 1
            choice = rng.random()
            try:
                if choice < 0.25:
                    store(rng.choice(SHARED_KEYS))
                elif choice < 0.4:
                    store(*rng.sample(SHARED_KEYS, 3))  # all three, in a random order
                elif choice < 0.55:
                    storage.remove_token_data(rng.choice(SHARED_KEYS))
                elif choice < 0.7:
                    store(own)
                elif choice < 0.75:
                    storage.remove_token_data(own)
                    last_own = "remove"
                elif choice < 0.9:
                    storage.get_token_data(rng.choice(SHARED_KEYS))
                else:
                    storage.get_token_data_by_resource_server()
            except Exception:
                errors.append(traceback.format_exc(limit=1))
    Path(out).write_text(
        json.dumps({"written": written, "last_own": last_own, "errors": errors, "ops": ops})
    )


def test_processes_writing_and_removing_the_same_keys_lose_nothing(
    database_url: URL, namespace: str, tmp_path: Path
) -> None:
    # 200 operations take each worker well under a second on an idle machine; the join
    # timeout only bounds a hung run, however loaded the machine.
    workers, operations = 4, 200
    url = database_url.render_as_string(hide_password=False)
    SQLAlchemyTokenStorage(url, namespace=namespace).close()  # the schema, before the race
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(workers)
    outs = [str(tmp_path / f"worker-{n}.json") for n in range(workers)]
    processes = [
        context.Process(target=_work, args=(url, namespace, n, operations, barrier, outs[n]))
        for n in range(workers)
    ]
    for process in processes:
        process.start()
    deadline = time.monotonic() + 300
    for process in processes:
        process.join(timeout=max(deadline - time.monotonic(), 1))
        if process.is_alive():
            process.kill()

    assert [p.exitcode for p in processes] == [0] * workers
    reports = [json.loads(Path(out).read_text()) for out in outs]
    assert [r["errors"] for r in reports] == [[]] * workers
    assert [r["ops"] for r in reports] == [operations] * workers
    written: dict[str, set[str]] = {}
    for report in reports:
        for key, values in report["written"].items():
            written.setdefault(key, set()).update(values)

    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            counts = connection.execute(
                select(TokenRow.resource_server, func.count())
                .where(TokenRow.namespace == namespace)
                .group_by(TokenRow.resource_server)
            ).all()
    finally:
        engine.dispose()
    assert all(count == 1 for _, count in counts)
    with SQLAlchemyTokenStorage(url, namespace=namespace) as reader:
        stored = reader.get_token_data_by_resource_server()
    for key, data in stored.items():
        assert data.access_token in written[key], f"{key} holds a value nobody wrote"
    for n, report in enumerate(reports):  # a key with a single writer ends as it left it
        own, last = f"own-{n}", report["last_own"]
        if last is None or last == "remove":
            assert own not in stored
        else:
            assert own in stored, f"{own}: its last store was lost"
            assert stored[own].access_token == last.removeprefix("store:")


def test_threads_over_many_storages_sharing_one_engine_all_succeed(engine: Engine) -> None:
    def work(worker: int) -> None:
        for i in range(10):
            storage = SQLAlchemyTokenStorage(engine, namespace=f"user-{worker}-{i % 3}")
            storage.store_token_data_by_resource_server(
                {"rs": make_token_data("rs", access_token=f"{worker}-{i}")}
            )
            assert storage.get_token_data("rs") is not None
            if i % 4 == 0:
                storage.remove_token_data("rs")

    assert errors_in_threads(work, 8, timeout=60) == []
    reader = SQLAlchemyTokenStorage(engine, namespace="user-0-1")
    assert reader.get_token_data("rs") is not None


@contextlib.contextmanager
def _sqlite_write_lock(path: str, *, release_after: float | None) -> Iterator[None]:
    """Hold a SQLite file's write lock from another connection, for a while or throughout."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    release = None
    if release_after is not None:
        release = threading.Timer(release_after, holder.rollback)
        release.start()
    try:
        yield
    finally:
        if release is not None:
            release.cancel()
            release.join()
        holder.close()


def _write(storage: SQLAlchemyTokenStorage, path: str) -> None:
    """A write of each kind tokenstore-sql makes: a storage call, and an engine transaction."""
    if path == "storage":
        storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})
    else:
        options = {WRITE_TRANSACTION_OPTION: True}  # how rotation, imports and locks write
        with (
            storage.engine.connect().execution_options(**options) as connection,
            connection.begin(),
        ):
            connection.execute(text("DELETE FROM tokenstore_sql_tokens WHERE 0"))


@pytest.mark.sqlite
@pytest.mark.parametrize("path", ["storage", "transaction"])
def test_a_sqlite_writer_waits_for_the_lock_and_keeps_its_busy_timeout(
    tmp_path: Path, path: str
) -> None:
    database = str(tmp_path / "t.db")
    options = {"sqlite_busy_timeout_ms": 20_000, "pool_size": 1}
    with SQLAlchemyTokenStorage(f"sqlite:///{database}", engine_options=options) as storage:
        with _sqlite_write_lock(database, release_after=0.3):
            _write(storage, path)  # polls for the lock until the holder lets go

        with storage.engine.connect() as connection:  # the same pooled connection
            busy = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
        assert busy == 20_000  # restored for statements that wait in SQLite's handler


@pytest.mark.sqlite
@pytest.mark.parametrize("path", ["storage", "transaction"])
def test_a_sqlite_writer_gives_up_once_the_busy_timeout_has_passed(
    tmp_path: Path, path: str
) -> None:
    database = str(tmp_path / "t.db")
    options = {"sqlite_busy_timeout_ms": 300, "pool_size": 1}
    url = f"sqlite:///{database}"
    with SQLAlchemyTokenStorage(
        url, engine_options=options, retry=RetryPolicy(attempts=1)
    ) as storage:
        with _sqlite_write_lock(database, release_after=None):
            started = time.monotonic()
            with pytest.raises((StorageUnavailableError, OperationalError)) as caught:
                _write(storage, path)
            waited = time.monotonic() - started

        assert waited >= 0.3  # the whole timeout, never less
        assert waited < 10  # and not forever (a loose bound: machines vary)
        failure = caught.value
        if isinstance(failure, OperationalError):  # an engine transaction: the driver's error
            assert getattr(failure.orig, "sqlite_errorcode", None) == 5  # SQLITE_BUSY
        else:  # a storage call: the retry policy's
            assert isinstance(failure, StorageUnavailableError)
            assert failure.code == "5"
        with storage.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 300
        _write(storage, path)  # the lock is free again: the connection still works


# The faults below need a server: these tests run on PostgreSQL and MySQL only.
servers_only = pytest.mark.parametrize("backend", SERVER_PARAMS)
postgresql_only = pytest.mark.parametrize("backend", SERVER_PARAMS[:1])


@pytest.fixture
def own_database(server_url: str, empty_database_url: URL) -> tuple[str, URL]:
    """(admin URL, URL of a database of this test's own): its sessions may all be killed."""
    return server_url, empty_database_url


def _filled_storage(url: URL, namespace: str, **options: Any) -> SQLAlchemyTokenStorage:
    """A storage holding three rows, with three connections in its engine's pool."""
    storage = SQLAlchemyTokenStorage(url, namespace=namespace, **options)
    storage.store_token_data_by_resource_server(
        {rs: make_token_data(rs, access_token=f"old-{rs}") for rs in ("a", "b", "c")}
    )
    connections = [storage.engine.connect() for _ in range(3)]
    for connection in connections:
        connection.close()
    return storage


def _use(storage: SQLAlchemyTokenStorage) -> None:
    storage.store_token_data_by_resource_server({"d": make_token_data("d")})
    assert storage.get_token_data("a") is not None
    assert storage.remove_token_data("d") is True
    assert set(storage.get_token_data_by_resource_server()) == {"a", "b", "c"}


@servers_only
def test_killed_idle_sessions_are_replaced_at_checkout(
    own_database: tuple[str, URL], namespace: str
) -> None:
    # No retries, and pre-ping asked for: the pre-ping alone must notice the dead sessions.
    admin_url, url = own_database
    storage = _filled_storage(
        url, namespace, retry=RetryPolicy(attempts=1), engine_options={"pool_pre_ping": True}
    )
    assert kill_sessions(admin_url, url.database or "") >= 1
    _use(storage)
    storage.close()


@servers_only
def test_killed_idle_sessions_are_retried_without_pre_ping(
    own_database: tuple[str, URL], namespace: str
) -> None:
    # No pre-ping (the default): the retry policy alone must recover.
    admin_url, url = own_database
    storage = _filled_storage(url, namespace)
    assert kill_sessions(admin_url, url.database or "") >= 1
    for _ in range(4):  # each pooled connection is dead in turn
        _use(storage)
    storage.close()


@contextlib.contextmanager
def _kill_first_write(storage: SQLAlchemyTokenStorage, admin_url: str) -> Iterator[list[int]]:
    """Kill the session under the first write, as the driver is about to send its upsert.

    (A store is one autocommit statement on our PostgreSQL and MySQL engines: there is no
    separate commit to kill it before.)
    """
    killed: list[int] = []

    def kill(connection: Any, sql: str) -> None:
        if not killed and sql.lstrip().upper().startswith("INSERT"):
            killed.append(session_id(connection))
            kill_session(admin_url, killed[0])

    with before_statements(storage.engine, kill):
        yield killed


@servers_only
@pytest.mark.parametrize(
    "retried", [True, False], ids=["retried-applied-whole", "no-retry-nothing"]
)
def test_a_session_killed_mid_write_is_applied_whole_or_not_at_all(
    own_database: tuple[str, URL], namespace: str, retried: bool
) -> None:
    admin_url, url = own_database
    options = {} if retried else {"retry": RetryPolicy(attempts=1)}
    storage = _filled_storage(url, namespace, **options)
    failure = contextlib.nullcontext() if retried else pytest.raises(StorageUnavailableError)
    with _kill_first_write(storage, admin_url) as killed, failure:
        storage.store_token_data_by_resource_server(
            {rs: make_token_data(rs, access_token=f"new-{rs}") for rs in ("a", "b", "c")}
        )

    assert len(killed) == 1
    stored = storage.get_token_data_by_resource_server()
    expected = "new" if retried else "old"
    assert {rs: d.access_token for rs, d in stored.items()} == {
        rs: f"{expected}-{rs}" for rs in ("a", "b", "c")
    }
    storage.close()


@servers_only
@pytest.mark.parametrize(
    "retried", [True, False], ids=["retried-applied-whole", "no-retry-nothing"]
)
def test_an_import_killed_between_its_upserts_is_applied_whole_or_not_at_all(
    own_database: tuple[str, URL], namespace: str, retried: bool, tmp_path: Path
) -> None:
    admin_url, url = own_database
    engine = create_engine(url)
    # On PostgreSQL the rows go in statements of many: killed before the last one, the
    # rows already sent in the import's transaction must go with it.
    per_statement = backend_of(engine.dialect).rows_per_upsert
    count = 2 * per_statement + 3
    tokens = {f"{namespace}-{i:03}": {"rs": make_token_data("rs")} for i in range(count)}
    path = write_json(tmp_path / "tokens.json", tokens)
    retry = RetryPolicy() if retried else RetryPolicy(attempts=1)
    kill_at = 2 if per_statement > 1 else 1  # the upserts the driver is about to send
    upserts: list[int] = []

    def kill(connection: Any, sql: str) -> None:
        if sql.lstrip().startswith("INSERT INTO tokenstore_sql_tokens"):
            upserts.append(session_id(connection))
            if len(upserts) == kill_at:
                kill_session(admin_url, upserts[-1])

    failure = contextlib.nullcontext() if retried else pytest.raises(StorageUnavailableError)
    try:
        with before_statements(engine, kill), failure:
            import_token_files(engine, [path], StoreSettings(retry=retry))
        with engine.connect() as connection:
            stored = connection.execute(select(func.count()).select_from(TokenRow)).scalar()
    finally:
        engine.dispose()

    assert len(upserts) >= kill_at
    assert stored == (count if retried else 0)


def _deadlock(dialect: str) -> Exception:
    """The error a driver raises for a deadlock (or SQLite's busy database), its own class."""
    if dialect == "postgresql":
        import psycopg.errors

        return psycopg.errors.DeadlockDetected("deadlock detected")
    if dialect in ("mysql", "mariadb"):
        import pymysql.err

        # as PyMySQL 1.1+ raises it: the error number, and SQLSTATE 40001
        return pymysql.err.OperationalError(1213, "Deadlock found", sqlstate="40001")
    import sqlite3

    busy = sqlite3.OperationalError("database is locked")
    busy.sqlite_errorcode = 5  # type: ignore[attr-defined]  # set by sqlite3 itself
    return busy


@contextlib.contextmanager
def _conflicts(engine: Engine, times: int) -> Iterator[list[int]]:
    """Make the first ``times`` writes on ``engine`` fail as the driver fails a deadlock.

    On PostgreSQL and MySQL the driver raises it as it is about to send the upsert. On
    SQLite, whose statements cannot be interrupted from outside, the connection for the
    write raises it as it leaves the pool.
    """
    seen: list[int] = []
    dialect = engine.dialect.name

    def conflict(connection: Any, sql: str) -> None:
        if sql.lstrip().upper().startswith("INSERT") and len(seen) < times:
            seen.append(1)
            raise _deadlock(dialect)

    def conflict_at_checkout(*args: Any) -> None:
        if len(seen) < times:
            seen.append(1)
            raise _deadlock(dialect)

    if dialect == "sqlite":
        event.listen(engine.pool, "checkout", conflict_at_checkout)
        try:
            yield seen
        finally:
            event.remove(engine.pool, "checkout", conflict_at_checkout)
    else:
        with before_statements(engine, conflict):
            yield seen


def test_deadlocks_are_retried_until_the_write_succeeds(
    storage: SQLAlchemyTokenStorage,
) -> None:
    retry = RetryPolicy(attempts=5, first_delay=0.01)
    storage = SQLAlchemyTokenStorage(storage.engine, namespace=storage.namespace, retry=retry)
    with _conflicts(storage.engine, 3) as seen:
        storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})

    assert len(seen) == 3
    assert storage.get_token_data("rs") is not None


def test_a_lasting_deadlock_surfaces_within_the_deadline(
    storage: SQLAlchemyTokenStorage,
) -> None:
    retry = RetryPolicy(attempts=1000, first_delay=0.05, max_delay=0.2, deadline=1.0)
    storage = SQLAlchemyTokenStorage(storage.engine, namespace=storage.namespace, retry=retry)
    started = time.monotonic()

    with (
        _conflicts(storage.engine, 10**6) as seen,
        pytest.raises(StorageUnavailableError) as caught,
    ):
        storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})

    elapsed = time.monotonic() - started
    assert 0.5 < elapsed < 2.0
    assert 3 < len(seen) < 1000
    assert caught.value.code in ("40P01", "1213", "5")
    assert storage.get_token_data("rs") is None


@pytest.fixture
def proxy(database_url: URL) -> Iterator[tuple[TcpProxy, URL]]:
    """A proxy in front of the run's scratch database, and the scratch URL through it."""
    default_port = 5432 if database_url.get_backend_name() == "postgresql" else 3306
    made = TcpProxy(database_url.host or "127.0.0.1", database_url.port or default_port)
    yield made, made.url_for(database_url)
    made.stop()


@servers_only
def test_a_short_outage_is_ridden_out(proxy: tuple[TcpProxy, URL], namespace: str) -> None:
    server, url = proxy
    storage = _filled_storage(url, namespace, retry=RetryPolicy(attempts=50, deadline=10.0))

    with server.outage(1.0):
        started = time.monotonic()
        _use(storage)  # waits through the outage

    assert time.monotonic() - started > 0.5
    storage.close()


@contextlib.contextmanager
def _password_url(url: URL, admin_url: str) -> Iterator[URL]:
    """``url`` with a user that has a password (PostgreSQL here trusts local users)."""
    if url.get_backend_name() == "postgresql":
        yield url.set(password=PASSWORD)
        return
    user = f"tokenstore_pw_{os.getpid()}"
    admin = create_engine(make_url(admin_url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{PASSWORD}'"))
            connection.execute(text(f"GRANT ALL ON `{url.database}`.* TO '{user}'@'%'"))
        yield url.set(username=user, password=PASSWORD)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP USER IF EXISTS '{user}'@'%'"))
        admin.dispose()


def _assert_names_database_but_not_secrets(error: BaseException, url: URL) -> None:
    shown = [str(error), repr(error), "".join(traceback.format_exception(error))]
    for text_ in shown:
        assert PASSWORD not in text_
        assert "SECRET" not in text_
    assert "127.0.0.1" in shown[0]
    assert (url.database or "") in shown[0]


@servers_only
def test_a_server_gone_for_good_fails_within_the_deadline_naming_it(
    proxy: tuple[TcpProxy, URL], namespace: str, server_url: str
) -> None:
    server, plain_url = proxy
    with _password_url(plain_url, server_url) as url:
        storage = _filled_storage(url, namespace, retry=RetryPolicy(deadline=2.0, attempts=100))
        server.stop()

        started = time.monotonic()
        with pytest.raises(StorageUnavailableError) as caught:
            storage.get_token_data("a")

        assert time.monotonic() - started < 4.0
        _assert_names_database_but_not_secrets(caught.value, url)
        storage.close()


@postgresql_only
def test_a_host_that_never_answers_is_given_up_on_after_connect_timeout(
    database_url: URL, namespace: str
) -> None:
    # libpq waits for a silent host as long as the OS does, unless connect_timeout is set.
    # (PyMySQL's connect_timeout does not cover the handshake; see engines.py.)
    server = TcpProxy(database_url.host or "127.0.0.1", database_url.port or 5432)
    url = database_url
    storage = _filled_storage(
        server.url_for(url),
        namespace,
        retry=RetryPolicy(deadline=1.0),
        engine_options={"connect_timeout": 2},
    )
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            storage.get_token_data("a")
        except BaseException as exc:
            outcome.append(exc)

    with server.black_hole():
        started = time.monotonic()
        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        caller.join(timeout=12)
        elapsed = time.monotonic() - started
    assert not caller.is_alive(), "the call hung on a silent server"
    assert len(outcome) == 1
    assert isinstance(outcome[0], StorageUnavailableError)
    assert elapsed < 8.0
    storage.close()


@pytest.mark.parametrize(
    "case",
    [
        pytest.param("postgresql-closed-port", marks=pytest.mark.postgresql),
        pytest.param("mysql-closed-port", marks=pytest.mark.mysql),
        pytest.param("sqlite-not-a-database", marks=pytest.mark.sqlite),
        pytest.param("sqlite-no-such-directory", marks=pytest.mark.sqlite),
    ],
)
def test_opening_a_database_that_is_down_fails_fast_naming_it(case: str, tmp_path: Path) -> None:
    if case == "postgresql-closed-port":
        url = make_url(f"postgresql+psycopg://app:{PASSWORD}@127.0.0.1:1/tokens")
    elif case == "mysql-closed-port":
        url = make_url(f"mysql+pymysql://app:{PASSWORD}@127.0.0.1:1/tokens")
    elif case == "sqlite-not-a-database":
        path = tmp_path / "tokens"
        path.write_bytes(b"this is not a SQLite database, but a file of 40+ bytes" * 4)
        url = make_url(f"sqlite:///{path}")
    else:
        (tmp_path / "file").write_text("")
        url = make_url(f"sqlite:///{tmp_path / 'file' / 'tokens'}")
    started = time.monotonic()

    with pytest.raises(TokenStoreError) as caught:
        SQLAlchemyTokenStorage(url, retry=RetryPolicy(deadline=2.0))

    assert time.monotonic() - started < 4.0
    shown = [
        str(caught.value),
        repr(caught.value),
        "".join(traceback.format_exception(caught.value)),
    ]
    assert all(PASSWORD not in text_ for text_ in shown)
    if case == "sqlite-no-such-directory":
        assert f"{tmp_path / 'file'}, does not exist" in shown[0]
    else:
        assert "tokens" in shown[0]
    if url.host:
        assert url.host in shown[0]


@pytest.mark.postgresql
@pytest.mark.topology
@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a_postgresql_restart_is_ridden_out(mode: StopMode, namespace: str) -> None:
    # A "fast" stop disconnects every client, an "immediate" one is a crash; either way
    # the server is down for a while and then back on the same port.
    with private_postgresql() as server:
        url = server.create_database("tokens")
        # Attempts enough to outlast a restart of a few seconds; the default gives up sooner.
        storage = _filled_storage(
            url, namespace, retry=RetryPolicy(attempts=60, max_delay=0.5, deadline=30.0)
        )
        down = threading.Event()
        failures: list[BaseException] = []

        def restart() -> None:
            try:
                server.stop(mode)
                down.set()
                time.sleep(1.0)  # an outage the call below has to wait through
                server.start()
            except BaseException as exc:
                failures.append(exc)
            finally:
                down.set()

        restarter = threading.Thread(target=restart, daemon=True)
        restarter.start()
        try:
            assert down.wait(timeout=60)
            started = time.monotonic()
            _use(storage)  # during the restart: retried until the server is back
            waited = time.monotonic() - started
            restarter.join(timeout=90)
            assert not restarter.is_alive()
            assert failures == []
            assert waited > 0.5, "the call did not meet the outage"
            _use(storage)
        finally:
            restarter.join(timeout=90)
            probe = create_engine(url)
            assert wait_until(lambda: probe.connect().close() is None, timeout=60)
            probe.dispose()
            storage.close()


@pytest.mark.postgresql
@pytest.mark.topology
def test_an_async_restart_meets_the_kept_connection_and_the_batched_gets(namespace: str) -> None:
    # The server restarts while a connection is kept for the next call (the loop blocked,
    # so no turn gives it back), and again before gets that wait together on a pool of
    # two: each get is retried on a new connection, and the pool ends whole.
    with private_postgresql() as server:
        url = server.create_database("tokens")

        async def main() -> tuple[int, list[Any], int, int]:
            storage = AsyncSQLAlchemyTokenStorage(
                url,
                namespace=namespace,
                retry=RetryPolicy(attempts=60, max_delay=0.5, deadline=30.0),
                engine_options={"pool_size": 2, "max_overflow": 0},
            )
            pool = storage.engine.sync_engine.pool
            await storage.store_token_data_by_resource_server(
                {rs: make_token_data(rs) for rs in ("a", "b", "c")}
            )
            await storage.get_token_data("a")
            kept = pool.checkedout()  # type: ignore[attr-defined]
            server.restart("fast")  # blocking: the loop does not turn meanwhile
            found = [await storage.get_token_data("a")]
            server.restart("immediate")
            found += await asyncio.gather(
                *(storage.get_token_data("abc"[i % 3]) for i in range(20))
            )
            await settle(pool)
            handoff = handoff_for(storage.engine.sync_engine)
            held = handoff.held if handoff is not None else -1
            out = pool.checkedout()  # type: ignore[attr-defined]
            await storage.aclose()
            return kept, found, held, out

        kept, found, held, out = asyncio.run(main())
    assert kept == 1
    assert [data.access_token if data else None for data in found] == [
        "access-a-SECRET",
        *(f"access-{'abc'[i % 3]}-SECRET" for i in range(20)),
    ]
    assert (held, out) == (0, 0)

"""Schema bootstrap and the checks that refuse a schema this package cannot use."""

from __future__ import annotations

import multiprocessing
import os
import stat
import threading
from pathlib import Path

import pytest
from sqlalchemy import URL, inspect, text

from tests.support.sdk import make_token_data
from tokenstore_sql import SchemaOutOfDateError, SQLAlchemyTokenStorage, create_engine
from tokenstore_sql.errors import SchemaNotManagedError, SchemaTooNewError
from tokenstore_sql.models import TOKENS_TABLE, VERSION_TABLE
from tokenstore_sql.schema import head_revision


def _tables(url: URL) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return set(inspect(connection).get_table_names())
    finally:
        engine.dispose()


def _versions(url: URL) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return list(
                connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars()
            )
    finally:
        engine.dispose()


def _execute(url: URL, *statements: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.execute(text(statement))
    finally:
        engine.dispose()


def test_opening_an_empty_database_creates_the_schema_at_head(empty_database_url: URL) -> None:
    with SQLAlchemyTokenStorage(empty_database_url) as storage:
        storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})

    assert {TOKENS_TABLE, VERSION_TABLE} <= _tables(empty_database_url)
    assert "alembic_version" not in _tables(empty_database_url)
    assert _versions(empty_database_url) == [head_revision()]


def test_an_empty_database_is_left_alone_when_creation_is_off(empty_database_url: URL) -> None:
    with pytest.raises(SchemaOutOfDateError) as caught:
        SQLAlchemyTokenStorage(empty_database_url, create_schema=False)

    assert "tokenstore-sql upgrade" in str(caught.value)
    assert caught.value.current is None
    assert caught.value.head == head_revision()
    assert TOKENS_TABLE not in _tables(empty_database_url)


def test_an_unknown_revision_asks_for_a_newer_package(empty_database_url: URL) -> None:
    SQLAlchemyTokenStorage(empty_database_url).close()
    _execute(empty_database_url, f"UPDATE {VERSION_TABLE} SET version_num = '9999'")

    with pytest.raises(SchemaTooNewError) as caught:
        SQLAlchemyTokenStorage(empty_database_url)

    message = str(caught.value)
    assert "9999" in message
    assert head_revision() in message
    assert "upgrade the tokenstore-sql package" in message
    assert isinstance(caught.value, SchemaOutOfDateError)  # callers catching that see it too


def test_a_token_table_without_version_record_is_not_guessed_at(empty_database_url: URL) -> None:
    _execute(empty_database_url, f"CREATE TABLE {TOKENS_TABLE} (namespace VARCHAR(10))")

    with pytest.raises(SchemaNotManagedError, match="not managed by tokenstore-sql"):
        SQLAlchemyTokenStorage(empty_database_url)

    assert VERSION_TABLE not in _tables(empty_database_url)


def test_an_applications_own_alembic_history_is_untouched(empty_database_url: URL) -> None:
    _execute(
        empty_database_url,
        "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)",
        "INSERT INTO alembic_version (version_num) VALUES ('app0042')",
    )

    SQLAlchemyTokenStorage(empty_database_url).close()

    engine = create_engine(empty_database_url)
    with engine.connect() as connection:
        app_versions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    engine.dispose()
    assert app_versions == [("app0042",)]
    assert _versions(empty_database_url) == [head_revision()]


def _open_and_store(url: str, worker: int, start: multiprocessing.synchronize.Event) -> None:
    start.wait(30)
    with SQLAlchemyTokenStorage(url, namespace=f"worker-{worker}") as storage:
        storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})


def test_simultaneous_first_opens_all_succeed_and_create_the_schema_once(
    empty_database_url: URL,
) -> None:
    workers = 6
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    url = empty_database_url.render_as_string(hide_password=False)
    processes = [
        context.Process(target=_open_and_store, args=(url, n, start)) for n in range(workers)
    ]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(timeout=120)

    assert [p.exitcode for p in processes] == [0] * workers
    assert _versions(empty_database_url) == [head_revision()]
    with SQLAlchemyTokenStorage(empty_database_url) as storage:
        assert sorted(storage.iter_namespaces()) == [f"worker-{n}" for n in range(workers)]


@pytest.mark.sqlite
def test_a_new_sqlite_file_is_readable_by_its_owner_only(tmp_path: object) -> None:
    os.mkdir(os.path.join(str(tmp_path), "nested"))
    path = os.path.join(str(tmp_path), "nested", "tokens.db")
    SQLAlchemyTokenStorage(f"sqlite:///{path}").close()

    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


@pytest.mark.sqlite
def test_sqlite_databases_use_wal_and_full_sync(tmp_path: object) -> None:
    storage = SQLAlchemyTokenStorage(f"sqlite:///{tmp_path}/t.db")
    with storage, storage.engine.connect() as connection:
        journal = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
        synchronous = connection.exec_driver_sql("PRAGMA synchronous").scalar()
        busy = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
    assert (journal, synchronous) == ("wal", 2)
    assert busy == 30_000


def test_threads_creating_schemas_in_different_databases_at_once_all_succeed(
    tmp_path: Path,
) -> None:
    # No database lock puts them in line, and Alembic keeps a running command's state
    # in module globals: without one command at a time per process, they mix.
    barrier = threading.Barrier(4)
    failures: list[str] = []

    def first_start(n: int) -> None:
        barrier.wait(10)
        try:
            with SQLAlchemyTokenStorage(f"sqlite:///{tmp_path / f'db{n}.sqlite'}") as storage:
                storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}")

    for _ in range(3):
        for path in tmp_path.glob("db*"):
            path.unlink()
        threads = [threading.Thread(target=first_start, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert failures == []

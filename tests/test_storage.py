"""Engine ownership, close, repr, construction cost, transactions and threads."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import URL, Engine, event, make_url, text, update

from tokenstore_sql import (
    DatabaseOperationError,
    Placement,
    SQLAlchemyTokenStorage,
    StorageUnavailableError,
    TokenRow,
    UnreadableTokenDataError,
    create_engine,
)
from tokenstore_sql._sdk import TokenStorage
from tokenstore_sql.retries import RetryPolicy

from .sdk import make_token_data
from .tracing import before_statements, sent_statements


def test_is_a_globus_sdk_token_storage(storage: SQLAlchemyTokenStorage) -> None:
    assert isinstance(storage, TokenStorage)


def test_storage_from_a_url_owns_and_disposes_its_engine(database_url: Any) -> None:
    storage = SQLAlchemyTokenStorage(database_url, namespace="owner")
    disposed: list[bool] = []
    event.listen(storage.engine.pool, "close", lambda *a: disposed.append(True))
    storage.get_token_data_by_resource_server()

    storage.close()
    storage.close()  # a second close is harmless

    assert storage.owns_engine is True
    assert disposed, "closing the storage did not close its pooled connection"


def test_storage_from_an_engine_leaves_the_engine_alone(engine: Engine) -> None:
    with SQLAlchemyTokenStorage(engine, namespace="borrower") as storage:
        storage.get_token_data_by_resource_server()
    assert storage.owns_engine is False
    # the caller's engine still works and still has its pooled connection
    assert engine.pool.checkedin() >= 1  # type: ignore[attr-defined]
    with engine.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar() == 1


def test_repr_names_dialect_and_namespace_and_hides_the_password() -> None:
    url = make_url("postgresql+psycopg://app:hunter2@db.example.org:5432/tokens")
    storage = object.__new__(SQLAlchemyTokenStorage)
    storage.engine = create_engine(url)
    storage.namespace = "user-1"
    storage.placement = Placement("app_", "auth")

    shown = repr(storage)

    assert "postgresql" in shown
    assert "'user-1'" in shown
    assert "db.example.org" in shown
    assert "auth.app_tokens" in shown
    assert "hunter2" not in shown


def test_repr_and_str_of_a_storage_never_show_tokens(api_storage: Any) -> None:
    storage = api_storage  # either API
    storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})
    assert "SECRET" not in repr(storage)
    assert "SECRET" not in str(storage)


def test_constructing_more_storages_on_a_checked_engine_sends_no_sql(engine: Engine) -> None:
    SQLAlchemyTokenStorage(engine, namespace="first")
    checkouts: list[object] = []
    event.listen(engine.pool, "checkout", lambda *args: checkouts.append(args))
    with sent_statements(engine) as statements:
        for i in range(50):
            SQLAlchemyTokenStorage(engine, namespace=f"user-{i}")
    assert statements == []
    assert checkouts == []  # not even a connection taken


# What the driver sends for a store of three resource servers, a get, a get-all and a
# remove: one statement per call. SQLite writes add BEGIN IMMEDIATE, between two PRAGMA
# busy_timeout (the lock is polled for with SQLite's busy handler off; all in-process
# calls), and COMMIT (its reads send no BEGIN), and its trace shows the upsert once per
# row (one prepared statement, no round trips); on PostgreSQL every call runs in
# autocommit mode (psycopg pipelines the rows of a store as one implicit transaction);
# MySQL connections are in autocommit mode and spared COMMIT and ROLLBACK when no
# transaction is open.
_SENT_PER_CALL = {
    "sqlite": [
        *["PRAGMA", "BEGIN", "PRAGMA", *["INSERT"] * 3, "COMMIT"],
        *["SELECT", "SELECT"],
        *["PRAGMA", "BEGIN", "PRAGMA", "DELETE", "COMMIT"],
    ],
    "postgresql": ["INSERT", "SELECT", "SELECT", "DELETE"],
    "mysql": ["INSERT", "SELECT", "SELECT", "DELETE"],
}


def test_each_call_sends_one_statement(storage: SQLAlchemyTokenStorage) -> None:
    data = {rs: make_token_data(rs) for rs in ("a", "b", "c")}
    engine = storage.engine
    with sent_statements(engine) as sent:
        storage.store_token_data_by_resource_server(data)
        storage.get_token_data("a")
        storage.get_token_data_by_resource_server()
        storage.remove_token_data("a")
    assert [s.verb for s in sent] == _SENT_PER_CALL[engine.dialect.name]
    work = [s for s in sent if s.verb not in ("PRAGMA", "BEGIN", "COMMIT")]
    assert all("tokenstore_sql_tokens" in s.sql for s in work)
    if engine.dialect.name != "sqlite":
        assert all(s.autocommit for s in sent)
    # The engine's other transactions are still real ones, on the same pooled connection.
    with sent_statements(engine) as sent, engine.begin() as connection:
        connection.execute(text("SELECT 1")).all()
    if engine.dialect.name == "postgresql":  # psycopg sends BEGIN itself, not by a cursor
        assert [(s.verb, s.autocommit) for s in sent] == [("SELECT", False)]
    else:
        assert [s.verb for s in sent] == ["BEGIN", "SELECT", "COMMIT"]


def test_a_failed_commit_stores_none_of_several_resource_servers(
    storage: SQLAlchemyTokenStorage,
) -> None:
    if storage.engine.dialect.name != "sqlite":
        pytest.skip("a store is one autocommit statement there: no separate commit to fail")

    def refuse_commit(action: int, what: str | None, *args: Any) -> int:
        if action == sqlite3.SQLITE_TRANSACTION and what == "COMMIT":
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    def on_checkout(dbapi_connection: Any, *args: Any) -> None:
        dbapi_connection.set_authorizer(refuse_commit)

    event.listen(storage.engine.pool, "checkout", on_checkout)
    try:
        with pytest.raises(DatabaseOperationError):
            storage.store_token_data_by_resource_server(
                {rs: make_token_data(rs) for rs in ("a", "b", "c")}
            )
    finally:
        event.remove(storage.engine.pool, "checkout", on_checkout)
    storage.engine.dispose()  # connections without the authorizer from here on
    assert storage.get_token_data_by_resource_server() == {}


_REFUSE_C_TRIGGERS = {
    "sqlite": [
        "CREATE TRIGGER refuse_c BEFORE INSERT ON tokenstore_sql_tokens "
        "WHEN NEW.resource_server = 'c' BEGIN SELECT RAISE(ABORT, 'refused'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_c() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.resource_server = 'c' THEN RAISE EXCEPTION 'refused'; END IF; "
        "RETURN NEW; END $$",
        "CREATE TRIGGER refuse_c BEFORE INSERT ON tokenstore_sql_tokens "
        "FOR EACH ROW EXECUTE FUNCTION refuse_c()",
    ],
    "mysql": [
        "CREATE TRIGGER refuse_c BEFORE INSERT ON tokenstore_sql_tokens FOR EACH ROW "
        "BEGIN IF NEW.resource_server = 'c' THEN "
        "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused'; END IF; END"
    ],
}


def test_a_store_refused_at_its_last_row_stores_none_of_them(
    open_api_storage: Any, empty_database_url: URL, namespace: str
) -> None:
    # The database itself refuses the third row, after the first two were written.
    storage = open_api_storage(empty_database_url, namespace=namespace)  # either API
    storage.store_token_data_by_resource_server({"old": make_token_data("old")})
    engine = create_engine(empty_database_url)
    with engine.begin() as connection:
        for statement in _REFUSE_C_TRIGGERS[engine.dialect.name]:
            connection.exec_driver_sql(statement)
    engine.dispose()
    with pytest.raises(DatabaseOperationError) as caught:
        storage.store_token_data_by_resource_server(
            {rs: make_token_data(rs, access_token=f"SECRET-{rs}") for rs in ("a", "b", "c")}
        )
    assert "SECRET" not in str(caught.value)
    assert set(storage.get_token_data_by_resource_server()) == {"old"}


def test_store_updates_timestamps_but_keeps_created_at(
    storage: SQLAlchemyTokenStorage, engine: Engine
) -> None:
    storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})
    storage.store_token_data_by_resource_server({"rs": make_token_data("rs", access_token="2")})
    with engine.connect() as connection:
        created, updated = connection.execute(
            TokenRow.__table__.select()
            .with_only_columns(TokenRow.created_at, TokenRow.updated_at)
            .where(TokenRow.namespace == storage.namespace)
        ).one()
    assert created.tzinfo is not None
    assert updated > created


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        ("extra", [1, 2], "extra is a list"),
        ("extra", "just text", "extra is a str"),
        ("extra", 7, "extra is an int"),
        ("identity_id", None, None),
    ],
)
def test_a_hand_edited_row_raises_naming_namespace_and_resource_server(
    storage: SQLAlchemyTokenStorage, engine: Engine, column: str, value: Any, problem: str | None
) -> None:
    storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})
    with engine.begin() as connection:
        connection.execute(
            update(TokenRow).where(TokenRow.namespace == storage.namespace).values({column: value})
        )
    if problem is None:  # a nullable column: the row is still readable
        assert storage.get_token_data("rs") is not None
        return

    with pytest.raises(UnreadableTokenDataError) as caught:
        storage.get_token_data("rs")

    message = str(caught.value)
    assert storage.namespace in message
    assert "'rs'" in message
    assert problem in message
    assert "SECRET" not in message
    with pytest.raises(UnreadableTokenDataError):
        storage.get_token_data_by_resource_server()


def test_threads_sharing_one_storage_all_succeed(storage: SQLAlchemyTokenStorage) -> None:
    _share_between_threads(storage)


@pytest.mark.sqlite
def test_threads_sharing_an_in_memory_storage_see_one_database() -> None:
    with SQLAlchemyTokenStorage("sqlite://", namespace="in-memory") as storage:
        _share_between_threads(storage)


def _share_between_threads(storage: SQLAlchemyTokenStorage) -> None:
    errors: list[BaseException] = []
    written: set[str] = set()
    lock = threading.Lock()

    def work(worker: int) -> None:
        try:
            for i in range(15):
                token = f"w{worker}-{i}"
                storage.store_token_data_by_resource_server(
                    {"shared": make_token_data("shared", access_token=token)}
                )
                with lock:
                    written.add(token)
                storage.store_token_data_by_resource_server(
                    {f"own-{worker}": make_token_data(f"own-{worker}")}
                )
                storage.get_token_data_by_resource_server()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    stored = storage.get_token_data_by_resource_server()
    assert sorted(stored) == sorted(["shared", *(f"own-{n}" for n in range(8))])
    assert stored["shared"].access_token in written


def test_an_unsupported_database_is_refused_at_construction() -> None:
    from tokenstore_sql import UnsupportedDatabaseError

    fake = create_engine("sqlite://")
    fake.dialect.name = "oracle"
    with pytest.raises(UnsupportedDatabaseError, match="oracle"):
        SQLAlchemyTokenStorage(fake)


def _fail_each_call(
    storage: SQLAlchemyTokenStorage, call: str, lasting: bool
) -> tuple[list[int], object]:
    """Make every attempt of a read ("get") or a write ("remove") fail in the driver.

    A get fails as its connection leaves the pool. A remove meets real SQLite faults: a
    write lock another connection holds (transient), or a trigger that refuses the
    DELETE with a message naming a secret (lasting). Gives the attempts made, and what
    must stay alive until the call has failed (the lock holder).
    """
    attempts: list[int] = []
    path = storage.engine.url.database or ""
    if call == "get":
        error: Exception
        if lasting:
            error = sqlite3.IntegrityError("Failing row contains SECRET")
        else:
            error = sqlite3.OperationalError("database is locked")
            error.sqlite_errorcode = 5  # type: ignore[attr-defined]

        def fail(*args: Any) -> None:
            attempts.append(1)
            raise error

        event.listen(storage.engine.pool, "checkout", fail)
        return attempts, None
    event.listen(storage.engine.pool, "checkout", lambda *args: attempts.append(1))
    other = sqlite3.connect(path, isolation_level=None)
    if lasting:
        other.execute(
            "CREATE TRIGGER refuse_delete BEFORE DELETE ON tokenstore_sql_tokens "
            "BEGIN SELECT RAISE(ABORT, 'Failing row contains SECRET'); END"
        )
        other.close()
    else:
        other.execute("BEGIN IMMEDIATE")  # held while the caller keeps it
    return attempts, other


@pytest.mark.parametrize("call", ["get", "remove"])
def test_transient_failures_are_retried_then_reported(tmp_path: Path, call: str) -> None:
    storage = SQLAlchemyTokenStorage(
        f"sqlite:///{tmp_path / 'r.db'}", engine_options={"sqlite_busy_timeout_ms": 10}
    )
    storage.retry = RetryPolicy(attempts=3, first_delay=0.001)
    attempts, _holder = _fail_each_call(storage, call, lasting=False)
    with pytest.raises(StorageUnavailableError) as caught:
        getattr(storage, f"{call}_token_data")("rs")
    assert len(attempts) == 3
    assert "sqlite:" in str(caught.value)
    assert caught.value.code == "5"
    assert str(caught.value).endswith("(code 5 database is locked (busy))")
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None  # the driver's error is not reachable


@pytest.mark.parametrize("call", ["get", "remove"])
def test_lasting_failures_are_not_retried_and_hide_the_driver_text(
    tmp_path: Path, call: str
) -> None:
    storage = SQLAlchemyTokenStorage(f"sqlite:///{tmp_path / 'r.db'}")
    storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})
    attempts, _holder = _fail_each_call(storage, call, lasting=True)
    with pytest.raises(DatabaseOperationError) as caught:
        getattr(storage, f"{call}_token_data")("rs")
    assert len(attempts) == 1
    assert "SECRET" not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None  # whose text quotes the row


def test_a_pickled_storage_works_with_an_engine_of_its_own(
    database_url: Any, namespace: str
) -> None:
    import pickle

    original = SQLAlchemyTokenStorage(database_url, namespace=namespace)
    original.store_token_data_by_resource_server({"rs": make_token_data("rs")})

    copy = pickle.loads(pickle.dumps(original))

    assert copy.engine is not original.engine
    assert copy.owns_engine is True
    assert copy.namespace == namespace
    assert copy.get_token_data("rs") is not None
    copy.close()
    original.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_gets_connections_of_its_own(storage: SQLAlchemyTokenStorage) -> None:
    storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})
    with storage.engine.connect() as connection:  # the parent now has a pooled connection
        parent_connection = connection.connection.dbapi_connection
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report whether it reuses the parent's connection, then exit
        try:
            with storage.engine.connect() as connection:
                reused = connection.connection.dbapi_connection is parent_connection
            found = storage.get_token_data("rs") is not None
            storage.store_token_data_by_resource_server({"child": make_token_data("child")})
            os.write(write, f"{int(reused)}{int(found)}".encode())
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 2).decode()
    os.waitpid(pid, 0)
    os.close(read)

    assert answer == "01", "the child reused the parent's connection or could not read"
    assert storage.get_token_data("child") is not None
    assert storage.get_token_data("rs") is not None


@pytest.mark.parametrize("engine_kind", ["ours", "plain"])
def test_each_get_sees_the_latest_committed_value(
    database_url: URL, namespace: str, engine_kind: str
) -> None:
    # Gets run on the driver's connection. On a pool of one connection, a read that left
    # a transaction open would pin MySQL's REPEATABLE READ snapshot (and PostgreSQL's
    # connection in a transaction) for the next get. Also on an engine not made by
    # tokenstore-sql, whose connections are in the driver's default (transaction) mode.
    import sqlalchemy

    options: dict[str, Any] = {"pool_size": 1, "max_overflow": 0}
    if database_url.get_backend_name() == "sqlite":
        options = {}
    make = create_engine if engine_kind == "ours" else sqlalchemy.create_engine
    reader_engine = make(database_url, **options)
    reader = SQLAlchemyTokenStorage(reader_engine, namespace=namespace)
    writer = SQLAlchemyTokenStorage(database_url, namespace=namespace)
    try:
        for value in ("first", "second", "third"):
            writer.store_token_data_by_resource_server(
                {"rs": make_token_data("rs", access_token=value)}
            )
            assert reader.get_token_data("rs").access_token == value  # type: ignore[union-attr]
            assert reader.get_token_data_by_resource_server()["rs"].access_token == value
        with reader_engine.connect() as connection:  # back in the driver's default mode
            driver = connection.connection.driver_connection
            if reader_engine.dialect.name == "postgresql":
                assert driver.autocommit is False  # type: ignore[union-attr]
    finally:
        writer.close()
        reader_engine.dispose()


def test_a_call_interrupted_mid_statement_leaves_no_broken_connection_in_the_pool(
    storage: SQLAlchemyTokenStorage,
) -> None:
    if storage.engine.dialect.name == "sqlite":
        pytest.skip("sqlite3 statements cannot be interrupted from a hook")
    storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})
    invalidated: list[object] = []
    event.listen(storage.engine.pool, "invalidate", lambda *args: invalidated.append(args))

    def interrupt(connection: Any, sql: str) -> None:
        if sql.lstrip().upper().startswith("SELECT"):
            raise KeyboardInterrupt

    with before_statements(storage.engine, interrupt), pytest.raises(KeyboardInterrupt):
        storage.get_token_data("rs")
    assert len(invalidated) == 1  # the pool replaces it rather than hand it out again
    assert storage.get_token_data("rs") is not None


@pytest.mark.parametrize(
    ("url", "described"),
    [
        ("postgresql+psycopg://app:pw@db:5433/tokens", "postgresql://db:5433/tokens"),
        (
            "postgresql+psycopg://app:pw@/tokens?host=a:5432&host=b:5432"
            "&target_session_attrs=read-write",
            "postgresql://a:5432,b:5432/tokens",
        ),
        (
            "postgresql+psycopg://app@/tokens?host=a,b&port=5001,5002",
            "postgresql://a:5001,b:5002/tokens",
        ),
        ("mysql+pymysql://root:pw@/test", "mysql://localhost/test"),
    ],
)
def test_a_database_is_named_by_its_hosts_never_its_credentials(url: str, described: str) -> None:
    from tokenstore_sql.engines import describe_database

    assert describe_database(make_url(url)) == described


@pytest.mark.parametrize("parameter", ["password", "sslpassword", "passwd"])
def test_a_password_in_the_urls_query_is_masked_too(parameter: str) -> None:
    from tokenstore_sql.engines import masked_url

    url = make_url(f"postgresql+psycopg://app:first@/tokens?host=a&{parameter}=SECRET")
    shown = masked_url(url)
    assert "SECRET" not in shown
    assert "first" not in shown
    assert f"{parameter}=%2A%2A%2A" in shown or f"{parameter}=***" in shown

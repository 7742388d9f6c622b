"""Engine ownership, close, repr, construction cost, transactions and threads."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import URL, Engine, event, make_url, text, update

from tests.support.databases import SERVER_PARAMS
from tests.support.sdk import make_token_data
from tests.support.threads import errors_in_threads
from tests.support.tracing import before_statements, sent_statements
from tokenstore_sql import (
    Placement,
    SQLAlchemyTokenStorage,
    StorageUnavailableError,
    UnreadableTokenDataError,
    create_engine,
)
from tokenstore_sql._sdk import TokenStorage
from tokenstore_sql.errors import DatabaseOperationError
from tokenstore_sql.models import TokenRow
from tokenstore_sql.retries import RetryPolicy
from tokenstore_sql.settings import StoreSettings


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
    storage.settings = StoreSettings(placement=Placement("app_", "auth"))

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
# autocommit mode, and a store's rows go in one statement (each statement is planned);
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
    if engine.dialect.name == "postgresql":  # the three rows' values, in one statement
        assert [f"namespace_{i})s" in sent[0].sql for i in range(4)] == [True] * 3 + [False]
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
    written: set[str] = set()
    lock = threading.Lock()

    def work(worker: int) -> None:
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

    assert errors_in_threads(work, 8, timeout=120) == []
    stored = storage.get_token_data_by_resource_server()
    assert sorted(stored) == sorted(["shared", *(f"own-{n}" for n in range(8))])
    assert stored["shared"].access_token in written


def test_an_unsupported_database_is_refused_at_construction() -> None:
    from tokenstore_sql.errors import UnsupportedDatabaseError

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
        f"sqlite:///{tmp_path / 'r.db'}",
        engine_options={"sqlite_busy_timeout_ms": 10},
        retry=RetryPolicy(attempts=3, first_delay=0.001),
    )
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


# Caller engines: a storage given an engine made with sqlalchemy.create_engine, whose
# connections are in the driver's default (transaction) mode and whose pool rolls each
# one back on return. See tokenstore_sql/direct_drivers.py and direct_pymysql.py.


def _caller_engine(url: URL, **options: Any) -> Engine:
    import sqlalchemy

    return sqlalchemy.create_engine(url, pool_size=1, max_overflow=0, **options)


def _calls(storage: SQLAlchemyTokenStorage) -> dict[str, Any]:
    three = {rs: make_token_data(rs) for rs in ("a", "b", "c")}
    return {
        "store 3": lambda: storage.store_token_data_by_resource_server(three),
        "get": lambda: storage.get_token_data("a"),
        "get miss": lambda: storage.get_token_data("absent"),
        "get all": storage.get_token_data_by_resource_server,
        "store 1": lambda: storage.store_token_data_by_resource_server({"d": make_token_data("d")}),
        "remove": lambda: storage.remove_token_data("a"),
        "remove namespace": storage.remove_namespace,
    }


def _session(dbapi_connection: Any) -> tuple[object, bool]:
    """A driver connection's autocommit mode, and whether a transaction is open."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        return dbapi_connection.isolation_level, dbapi_connection.in_transaction
    if type(dbapi_connection).__module__.startswith("psycopg"):
        return dbapi_connection.autocommit, dbapi_connection.info.transaction_status != 0
    # MariaDB's server status does not flag a transaction that has only read.
    cursor = dbapi_connection.cursor()
    cursor.execute("SELECT @@in_transaction")
    (open_,) = cursor.fetchone()
    cursor.close()
    return dbapi_connection.get_autocommit(), bool(open_)


@pytest.mark.parametrize("mode", ["transactions", "autocommit"])
def test_a_caller_engine_gets_each_connection_back_as_it_lent_it(
    database_url: URL, namespace: str, mode: str
) -> None:
    options = {"isolation_level": "AUTOCOMMIT"} if mode == "autocommit" else {}
    caller = _caller_engine(database_url, **options)
    storage = SQLAlchemyTokenStorage(caller, namespace=namespace)
    lent: list[tuple[object, bool]] = []
    returned: list[tuple[tuple[object, bool], bool]] = []

    def on_checkout(dbapi_connection: Any, *args: Any) -> None:
        lent.append(_session(dbapi_connection))

    def on_reset(dbapi_connection: Any, record: Any, state: Any) -> None:
        returned.append((_session(dbapi_connection), state.transaction_was_reset))

    event.listen(caller.pool, "checkout", on_checkout)
    event.listen(caller.pool, "reset", on_reset)
    try:
        for call in _calls(storage).values():
            call()
    finally:
        event.remove(caller.pool, "checkout", on_checkout)
        event.remove(caller.pool, "reset", on_reset)
        caller.dispose()
    assert len(set(lent)) == 1, lent
    assert lent[0][1] is False  # lent with no transaction open
    # As lent, no transaction open; and the pool was told so (the private API of
    # direct._check_in still works): it skipped its own rollback.
    assert returned == [(lent[0], True)] * len(lent)


def _mysql_commands(dbapi_connection: Any) -> dict[str, int]:
    cursor = dbapi_connection.cursor()
    cursor.execute("SHOW SESSION STATUS WHERE Variable_name IN %s", (_COUNTED,))
    counts = {name.lower().removeprefix("com_"): int(value) for name, value in cursor.fetchall()}
    cursor.close()
    return counts


MYSQL = [p for p in SERVER_PARAMS if p.values[0] == "mysql"]
_COUNTED = ("Com_select", "Com_insert", "Com_delete", "Com_commit", "Com_rollback", "Com_begin")


@contextmanager
def _mysql_round_trips(engine: Engine) -> Iterator[dict[str, Any]]:
    """Count a call's socket writes (the client waits after each) and server commands.

    From checkout to checkin: the pool's reset on return included.
    """
    seen: dict[str, Any] = {"writes": 0}

    def on_checkout(dbapi_connection: Any, *args: Any) -> None:
        seen["before"] = _mysql_commands(dbapi_connection)
        send = dbapi_connection._write_bytes

        def counted(data: bytes) -> None:
            seen["writes"] += 1
            send(data)

        dbapi_connection._write_bytes = counted

    def on_checkin(dbapi_connection: Any, record: Any) -> None:
        del dbapi_connection._write_bytes
        after = _mysql_commands(dbapi_connection)
        seen["commands"] = {
            k: n - seen["before"][k] for k, n in after.items() if n > seen["before"][k]
        }

    event.listen(engine.pool, "checkout", on_checkout)
    event.listen(engine.pool, "checkin", on_checkin)
    try:
        yield seen
    finally:
        event.remove(engine.pool, "checkout", on_checkout)
        event.remove(engine.pool, "checkin", on_checkin)


_CALLER_SENT = {
    "sqlite": {
        "store 3": ["BEGIN", "INSERT", "INSERT", "INSERT", "COMMIT"],
        "store 1": ["BEGIN", "INSERT", "COMMIT"],
        "remove": ["BEGIN", "DELETE", "COMMIT"],
        "remove namespace": ["BEGIN", "DELETE", "COMMIT"],
    },
}
_STATEMENT = {"store 3": "INSERT", "store 1": "INSERT", "remove": "DELETE"}
_STATEMENT["remove namespace"] = "DELETE"
_ENDING = {"INSERT": "commit", "DELETE": "commit", "SELECT": "rollback"}


def test_each_call_on_a_caller_engine_is_one_round_trip(database_url: URL, namespace: str) -> None:
    caller = _caller_engine(database_url)
    storage = SQLAlchemyTokenStorage(caller, namespace=namespace)
    backend = caller.dialect.name
    try:
        for name, call in _calls(storage).items():
            with sent_statements(caller) as sent:
                call()
            verb = _STATEMENT.get(name, "SELECT")
            # What the driver sends through its own API: no BEGIN, COMMIT or ROLLBACK
            # on PostgreSQL and MySQL (psycopg in autocommit mode for the call; MySQL's
            # ending goes in the statement's write, below), the pool's reset included.
            assert [s.verb for s in sent] == _CALLER_SENT.get(backend, {}).get(name, [verb]), name
            if backend == "postgresql":
                assert all(s.autocommit for s in sent)
            if backend != "mysql":
                continue
            with _mysql_round_trips(caller) as trips:
                call()
            assert trips["writes"] == 1, name
            assert trips["commands"] == {verb.lower(): 1, _ENDING[verb]: 1}, name
    finally:
        caller.dispose()


@pytest.mark.parametrize("backend", MYSQL, indirect=True)
def test_calls_on_a_mysql_engine_of_ours_are_one_statement_each(database_url: URL) -> None:
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    storage = SQLAlchemyTokenStorage(engine, namespace="ours-round-trips")
    try:
        for name, call in _calls(storage).items():
            with _mysql_round_trips(engine) as trips:
                call()
            verb = _STATEMENT.get(name, "SELECT").lower()
            assert (trips["writes"], trips["commands"]) == (1, {verb: 1}), name
    finally:
        engine.dispose()


def test_a_refused_store_on_a_caller_engine_leaves_its_connection_in_step(
    empty_database_url: URL, namespace: str
) -> None:
    # On MySQL the refused INSERT's COMMIT was already on its way: the answers to both
    # are read, and the connection serves the next call. Nothing is stored.
    caller = _caller_engine(empty_database_url)
    storage = SQLAlchemyTokenStorage(caller, namespace=namespace)
    storage.store_token_data_by_resource_server({"old": make_token_data("old")})
    with caller.begin() as connection:
        for statement in _REFUSE_C_TRIGGERS[caller.dialect.name]:
            connection.exec_driver_sql(statement)
    invalidated: list[object] = []
    event.listen(caller.pool, "invalidate", lambda *args: invalidated.append(args))
    try:
        for refused in (["c"], ["a", "b", "c"]):
            with pytest.raises(DatabaseOperationError):
                storage.store_token_data_by_resource_server(
                    {rs: make_token_data(rs) for rs in refused}
                )
            assert set(storage.get_token_data_by_resource_server()) == {"old"}
        assert invalidated == []
        with caller.connect() as connection:
            assert _session(connection.connection.dbapi_connection)[1] is False
    finally:
        caller.dispose()


def test_the_private_apis_of_the_fast_path_are_there() -> None:
    # direct._check_in tells the pool a connection is clean with SQLAlchemy's private
    # _close_special; direct_pymysql sends MySQL's COMMIT or ROLLBACK with PyMySQL's
    # internals. Both fall back to a round trip more if these go: this test says so.
    import inspect

    from sqlalchemy.dialects import mysql
    from sqlalchemy.pool.base import _ConnectionFairy

    from tokenstore_sql import direct_pymysql
    from tokenstore_sql.compiled import compiled_for
    from tokenstore_sql.statements import statements_for

    assert "transaction_reset" in inspect.signature(_ConnectionFairy._close_special).parameters
    assert direct_pymysql._pipelining()
    upsert = compiled_for(statements_for().upsert(mysql.dialect()), mysql.dialect())
    pattern = direct_pymysql._insert_values()
    assert pattern is not None
    assert pattern.match(upsert.sql)


@pytest.mark.parametrize("backend", MYSQL, indirect=True)
def test_a_literal_never_outgrows_its_bound(database_url: URL) -> None:
    # A multi-row store on a caller's MySQL engine is sent with its COMMIT only when
    # PyMySQL will send it as one statement; that is judged from these bounds.
    import datetime
    from decimal import Decimal

    from tokenstore_sql.direct_pymysql import _literal_bound

    values = [
        "plain",
        "quote ' and \" back\\slash \n\r\x00\x1a",
        "non-ASCII é 漢 🙂",
        b"bytes ' \x00 \xff",
        0,
        -(10**30),
        True,
        1.5e-300,
        Decimal("-12.50"),
        None,
        datetime.datetime(2024, 1, 2, 3, 4, 5, 678901),
        datetime.date(2024, 1, 2),
    ]
    engine = _caller_engine(database_url)
    try:
        driver = engine.raw_connection()
        try:
            for value in values:
                literal = driver.driver_connection.escape(value)  # type: ignore[union-attr]
                assert len(literal.encode()) <= (_literal_bound(value) or 0), value
        finally:
            driver.close()
    finally:
        engine.dispose()
    assert _literal_bound(object()) is None  # an unknown type: sent the usual way


def test_settings_fields_are_read_only_views_of_the_settings(tmp_path: Path) -> None:
    retry = RetryPolicy(attempts=2, first_delay=0.001)
    with SQLAlchemyTokenStorage(f"sqlite:///{tmp_path / 's.db'}", retry=retry) as storage:
        assert storage.retry is storage.settings.retry is retry
        assert storage.placement is storage.settings.placement
        assert storage.keys is None
        for field in ("retry", "keys", "placement"):
            with pytest.raises(AttributeError):
                setattr(storage, field, getattr(storage, field))
        assert storage.retry is retry  # a new policy is a new storage

"""The error hierarchy: one base, safe messages, codes named, no driver text reachable.

These tests need no server: driver errors are made by hand, as each driver raises
them (PostgreSQL's SQLSTATE, MySQL's error number, SQLite's result code), each with
a text that must never come out.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import globus_sdk
import pytest
import sqlalchemy
from sqlalchemy import Engine, insert, inspect
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, StatementError

import tokenstore_sql
import tokenstore_sql.errors
from tests.support.tracing import sent_statements
from tokenstore_sql import (
    DatabaseError,
    RetryPolicy,
    SQLAlchemyTokenStorage,
    StorageUnavailableError,
    StoreSettings,
    TokenStore,
    TokenStoreError,
    create_engine,
    generate_key,
)
from tokenstore_sql import engines as engines_module
from tokenstore_sql.cli._common import CommandError, DatabaseUnreachableError, database
from tokenstore_sql.conditions import condition_name
from tokenstore_sql.crypto import KeyRing
from tokenstore_sql.errors import (
    ConfigurationError,
    DatabaseOperationError,
    EncryptionKeyError,
    SchemaPrivilegeError,
)
from tokenstore_sql.locks import locked_transaction
from tokenstore_sql.messages import failure_detail
from tokenstore_sql.models import TokenRow, metadata
from tokenstore_sql.refresh import refresh_once
from tokenstore_sql.rotation import rotate_keys

SECRET = "SECRET-driver-text-quoting-a-row"

# The codes our tests and README show, per database, each of which must have a name.
SHOWN_CODES = [
    *(("sqlite", code) for code in ("5", "8", "13", "517", "1")),
    *(
        ("postgresql", code)
        for code in (
            *("25006", "57014", "42501", "3D000", "28P01", "28000", "08001", "08006"),
            *("53300", "40001", "40P01", "57P01"),
        )
    ),
    *(
        ("mysql", code)
        for code in ("1045", "1049", "1406", "1205", "1213", "1142", "1044", "2003", "2013")
    ),
    ("mysql", "1047"),
]


# --- one base -------------------------------------------------------------------------


def _exported_exception_classes() -> dict[str, type[BaseException]]:
    """Every exception class of the top level and every one a module of ours defines."""
    exported = {name: getattr(tokenstore_sql, name) for name in tokenstore_sql.__all__}
    for module_info in pkgutil.walk_packages(tokenstore_sql.__path__, "tokenstore_sql."):
        if module_info.name.endswith("__main__") or module_info.name.startswith(
            "tokenstore_sql.cli"
        ):  # the command line's own errors are click's, and end in an exit status
            continue
        module = importlib.import_module(module_info.name)
        exported.update(
            (f"{module.__name__}.{name}", value)
            for name, value in vars(module).items()
            if getattr(value, "__module__", None) == module.__name__
        )
    return {
        name: value
        for name, value in exported.items()
        if isinstance(value, type) and issubclass(value, BaseException)
    }


def test_every_exported_error_class_is_a_token_store_error() -> None:
    classes = _exported_exception_classes()

    assert "DatabaseError" in classes
    assert len(classes) > 10
    for name, cls in classes.items():
        assert issubclass(cls, TokenStoreError), name


def test_database_error_is_the_base_of_both_failure_kinds() -> None:
    assert issubclass(DatabaseError, TokenStoreError)
    assert issubclass(StorageUnavailableError, DatabaseError)
    assert issubclass(DatabaseOperationError, DatabaseError)
    assert DatabaseError.__doc__ is not None
    for attribute in (".operation", ".database", ".code", ".condition"):
        assert attribute in DatabaseError.__doc__


# --- driver errors, as the drivers raise them -----------------------------------------


class _PostgresqlError(Exception):
    """A psycopg-like error: its SQLSTATE as ``sqlstate``."""

    def __init__(self, text: str, sqlstate: str | None) -> None:
        super().__init__(text)
        self.sqlstate = sqlstate


def _driver_error(dialect: str, code: str) -> Exception:
    if dialect == "postgresql":
        return _PostgresqlError(SECRET, code)
    if dialect == "mysql":
        return Exception(int(code), SECRET)  # PyMySQL: (errno, message)
    error = sqlite3.OperationalError(SECRET)
    error.sqlite_errorcode = int(code)  # type: ignore[attr-defined]  # as sqlite3 sets it
    return error


_URLS = {
    "sqlite": "sqlite://",
    "postgresql": "postgresql+psycopg://app@db.example/app",
    "mysql": "mysql+pymysql://app@db.example/app",
}


def _engine(dialect: str) -> Engine:
    """An engine that is never connected: the dialect and URL are all that is read."""
    return sqlalchemy.create_engine(_URLS[dialect])


def _failure(dialect: str, code: str, kind: type[DBAPIError] = OperationalError) -> TokenStoreError:
    """The error a storage call raises when every attempt fails with this driver error."""

    def fail() -> None:
        raise kind("SELECT secret", {"token": SECRET}, _driver_error(dialect, code))

    engine = _engine(dialect)
    try:
        with pytest.raises(TokenStoreError) as raised:
            RetryPolicy(attempts=1).run("read token data", engine, fail)
    finally:
        engine.dispose()
    return raised.value


def _chain(error: BaseException) -> list[BaseException]:
    """The error and everything reachable from it as a cause or context."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def test_database_error_catches_a_transient_and_a_lasting_failure() -> None:
    busy = _failure("sqlite", "5")
    refused = _failure("sqlite", "19", IntegrityError)

    assert isinstance(busy, StorageUnavailableError)
    assert isinstance(refused, DatabaseOperationError)
    for error in (busy, refused):
        with pytest.raises(DatabaseError):
            raise error


@pytest.mark.parametrize(("dialect", "code"), SHOWN_CODES)
def test_every_code_we_show_has_a_name(dialect: str, code: str) -> None:
    assert condition_name(dialect, code)


@pytest.mark.parametrize(("dialect", "code"), SHOWN_CODES)
def test_a_message_gives_a_known_code_with_its_name(dialect: str, code: str) -> None:
    error = _failure(dialect, code)

    assert isinstance(error, DatabaseError)
    assert error.code == code
    assert error.condition == condition_name(dialect, code)
    assert str(error).endswith(f"(code {code} {error.condition})")


@pytest.mark.parametrize(
    ("dialect", "code", "name"),
    [
        ("postgresql", "57014", "query_canceled"),
        ("postgresql", "25006", "read_only_sql_transaction"),
        ("mysql", "1205", "lock wait timeout"),
        ("sqlite", "517", "database is locked (busy snapshot)"),
        ("sqlite", "261", "database is locked (busy recovery)"),
        ("sqlite", "8", "read-only database"),
    ],
)
def test_codes_are_named_by_their_database(dialect: str, code: str, name: str) -> None:
    assert condition_name(dialect, code) == name


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        (
            'connection to server at "db" failed: FATAL: sorry, too many clients already',
            "too many connections",
        ),
        ('connection to server at "db" failed: Connection refused', "connection refused"),
        ("FATAL: the database system is starting up", "server starting up"),
    ],
)
def test_a_connection_failure_without_a_code_names_its_cause(text: str, cause: str) -> None:
    def fail() -> None:
        raise OperationalError(None, None, _PostgresqlError(f"{text} {SECRET}", None))

    engine = _engine("postgresql")
    with pytest.raises(StorageUnavailableError) as raised:
        RetryPolicy(attempts=1).run("open the storage", engine, fail)
    engine.dispose()

    assert (
        str(raised.value) == f"could not open the storage on postgresql://db.example/app ({cause})"
    )
    assert raised.value.code is None
    assert raised.value.__context__ is None


def test_a_code_with_no_known_name_is_shown_alone() -> None:
    error = _failure("postgresql", "XX999")

    assert str(error).endswith("(code XX999)")
    assert error.condition is None


def test_failure_detail_writes_code_then_name() -> None:
    assert failure_detail("57014", "query_canceled") == " (code 57014 query_canceled)"
    assert failure_detail("57014", None) == " (code 57014)"
    assert failure_detail(None, "connection refused") == " (connection refused)"
    assert failure_detail(None, None) == ""


def test_a_privilege_error_names_its_code() -> None:
    error = SchemaPrivilegeError(
        "app", "postgresql://db.example/app", "0002", "42501", "insufficient_privilege"
    )

    assert "(code 42501 insufficient_privilege)" in str(error)
    assert error.condition == "insufficient_privilege"


@pytest.mark.parametrize(
    ("dialect", "code", "kind"),
    [
        ("sqlite", "5", OperationalError),
        ("sqlite", "19", IntegrityError),
        ("postgresql", "57014", OperationalError),
        ("mysql", "1406", OperationalError),
    ],
)
def test_no_driver_text_is_reachable_from_a_database_error(
    dialect: str, code: str, kind: type[DBAPIError]
) -> None:
    error = _failure(dialect, code, kind)

    assert error.__cause__ is None
    assert error.__context__ is None
    for linked in _chain(error):
        assert SECRET not in str(linked)
        assert SECRET not in repr(linked)


def test_the_command_line_gives_a_code_with_its_name() -> None:
    with pytest.raises(CommandError) as raised, database("sqlite://"):
        raise OperationalError("UPDATE secret", None, _driver_error("sqlite", "8"))

    message = raised.value.format_message()
    assert message == "database error on sqlite::memory: (code 8 read-only database)"
    assert SECRET not in message


def test_the_command_line_gives_a_transient_code_with_its_name() -> None:
    with pytest.raises(DatabaseUnreachableError) as raised, database("sqlite://"):
        raise OperationalError("UPDATE secret", None, _driver_error("sqlite", "517"))

    assert raised.value.format_message().endswith("(code 517 database is locked (busy snapshot))")


def test_a_sqlite_file_that_cannot_be_created_names_its_errno(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any) -> int:
        raise PermissionError(13, f"Permission denied: {SECRET}")

    monkeypatch.setattr(engines_module.os, "open", refuse)
    with pytest.raises(DatabaseOperationError) as raised:
        create_engine(f"sqlite:///{tmp_path / 'x.db'}")

    assert str(raised.value).endswith("(code EACCES permission denied)")
    assert raised.value.__cause__ is None
    assert SECRET not in str(raised.value)


# --- what used to escape as a bare ValueError -----------------------------------------


def test_echo_debug_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="echo='debug'"):
        create_engine("sqlite://", echo="debug")


def test_rotating_without_keys_is_an_encryption_key_error() -> None:
    engine = create_engine("sqlite://")
    try:
        with pytest.raises(EncryptionKeyError, match="encryption keys"):
            rotate_keys(engine, StoreSettings())
    finally:
        engine.dispose()


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, "100", None])
def test_a_batch_size_below_one_is_a_configuration_error(batch_size: Any) -> None:
    engine = create_engine("sqlite://")
    try:
        with pytest.raises(ConfigurationError, match=r"^batch_size must be a whole number"):
            rotate_keys(
                engine, StoreSettings(keys=KeyRing([generate_key()])), batch_size=batch_size
            )
    finally:
        engine.dispose()


def test_an_unknown_conflict_policy_is_a_configuration_error(tmp_path: Path) -> None:
    with TokenStore(f"sqlite:///{tmp_path / 'x.db'}") as store:
        with pytest.raises(ConfigurationError, match="on_conflict must be one of newer, skip"):
            store.import_files([], on_conflict="bogus")
        assert inspect(store.engine).get_table_names() == []  # refused before any change


def test_a_misspelt_import_option_is_a_type_error(tmp_path: Path) -> None:
    with TokenStore(f"sqlite:///{tmp_path / 'x.db'}") as store:
        with pytest.raises(TypeError, match="unexpected keyword argument 'dryrun'"):
            store.import_files([], dryrun=True)  # type: ignore[call-arg]  # the point
        assert inspect(store.engine).get_table_names() == []  # refused before any change


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        f"postgresql+psycopg://app:{SECRET}@db.example:port/app",  # a port that is no number
    ],
)
def test_a_url_that_does_not_parse_is_a_configuration_error(url: str) -> None:
    for make in (create_engine, tokenstore_sql.create_async_engine, SQLAlchemyTokenStorage):
        with pytest.raises(ConfigurationError, match="not a valid SQLAlchemy URL") as raised:
            make(url)
        assert raised.value.__context__ is None  # the parser's error can quote the URL
        assert SECRET not in str(raised.value)


def test_a_naive_datetime_in_an_applications_own_statement_is_sqlalchemys_error() -> None:
    # UtcDateTime refuses a naive datetime with a plain ValueError: the package itself
    # binds only aware ones (utc_now), so only an application's own statement on the
    # exported TokenRow reaches it, where SQLAlchemy wraps it as a StatementError, the
    # same error as any other bad value in that application's statement.
    engine = create_engine("sqlite://")
    try:
        metadata.create_all(engine)
        naive = datetime(2030, 1, 1)
        statement = insert(TokenRow).values(
            namespace="n",
            resource_server="rs",
            scope="",
            access_token="a",
            expires_at_seconds=0,
            created_at=naive,
        )
        with pytest.raises(StatementError, match="timezone-aware"), engine.begin() as connection:
            connection.execute(statement)
    finally:
        engine.dispose()


# --- numeric options, checked where they are given -------------------------------------

BAD_NUMBERS = [-1, math.nan, math.inf, "3", True, None]


@pytest.mark.parametrize("field", ["attempts", "first_delay", "max_delay", "deadline"])
@pytest.mark.parametrize("value", BAD_NUMBERS)
def test_a_retry_policy_refuses_a_bad_number_by_name(field: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=f"^{field} must be"):
        RetryPolicy(**{field: value})


@pytest.mark.parametrize(("field", "value"), [("attempts", 0), ("attempts", 2.0), ("deadline", 0)])
def test_a_retry_policy_refuses_zero_attempts_or_deadline(field: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=f"^{field} must be"):
        RetryPolicy(**{field: value})


def test_a_retry_policy_takes_zero_delays_and_whole_seconds() -> None:
    policy = RetryPolicy(attempts=1, first_delay=0, max_delay=0, deadline=1)

    assert (policy.attempts, policy.first_delay, policy.deadline) == (1, 0, 1)


def test_a_bad_option_is_shown_by_its_type_never_its_text() -> None:
    with pytest.raises(ConfigurationError) as raised:
        RetryPolicy(deadline=SECRET)  # type: ignore[arg-type]

    assert str(raised.value) == ("deadline must be a number of seconds, greater than 0 (not a str)")


@pytest.fixture
def memory_storage() -> Iterator[SQLAlchemyTokenStorage]:
    storage = SQLAlchemyTokenStorage("sqlite://", namespace="n")
    yield storage
    storage.close()


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("lease_seconds", 0),
        ("lease_seconds", -5),
        ("lease_seconds", "60"),
        ("lock_timeout", -1),
        ("lock_timeout", math.nan),
        ("lock_timeout", "10"),
    ],
)
def test_refresh_options_are_checked_before_any_sql(
    memory_storage: SQLAlchemyTokenStorage, option: str, value: Any
) -> None:
    client = globus_sdk.ConfidentialAppAuthClient("client-id", "client-secret")
    with (
        sent_statements(memory_storage.engine) as sent,
        pytest.raises(ConfigurationError, match=f"^{option} must be a number of seconds"),
    ):
        refresh_once(memory_storage, "transfer.api.globus.org", client, **{option: value})
    assert sent == []


@pytest.mark.parametrize("timeout", [0, 0.5, -1, "30"])
def test_a_lock_timeout_below_one_second_is_a_configuration_error(timeout: Any) -> None:
    engine = create_engine("sqlite://")
    try:
        with (
            pytest.raises(ConfigurationError, match=r"^timeout must be"),
            locked_transaction(engine, "x", timeout=timeout),
        ):
            pass
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("sqlite_busy_timeout_ms", -1),
        ("sqlite_busy_timeout_ms", "5000"),
        ("connect_timeout", 0),
        ("connect_timeout", 0.5),
        ("connect_timeout", "10"),
    ],
)
def test_engine_timeouts_are_checked_by_name(option: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=f"^{option} must be"):
        create_engine("postgresql+psycopg://app@db.example/app", **{option: value})


def test_engine_timeouts_take_zero_busy_wait_and_no_connect_timeout() -> None:
    for engine in (
        create_engine("sqlite://", sqlite_busy_timeout_ms=0),
        create_engine("postgresql+psycopg://app@db.example/app", connect_timeout=None),
    ):
        engine.dispose()

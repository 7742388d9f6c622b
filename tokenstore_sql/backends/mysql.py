"""MySQL and MariaDB, on PyMySQL (sync) and aiomysql (asyncio, built on PyMySQL).

Engines we create run connections in autocommit mode, and every transaction but a single
statement begins with ``BEGIN`` (:func:`tokenstore_sql.transactions.configure_mysql`);
on a Galera node every read waits for the cluster's acknowledged writes. Key columns use
a binary NO PAD collation, as even ``utf8mb4_bin`` ignores trailing spaces. Named locks
are ``GET_LOCK`` locks, which belong to the session and are released explicitly.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from types import MappingProxyType
from typing import Any, Final

from sqlalchemy import URL, Connection, Dialect, Engine, Insert, Table, text
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeEngine

from ..errors import ConfigurationError
from ..transactions import begin_explicitly, configure_galera, configure_mysql
from . import SINGLE_STATEMENT_OPTION, Options, on_a_server, usual_pool

name: Final = "mysql"
title: Final = "MySQL/MariaDB"
dialect_names: Final = ("mysql", "mariadb")
misspelled_schemes: Final[tuple[str, ...]] = ()

# Error numbers (server and client).
CONDITIONS: Final = {
    "1040": "too many connections",
    "1044": "access denied to the database",
    "1045": "access denied",
    "1047": "node not ready (Galera)",
    "1049": "no such database",
    "1053": "server shutting down",
    "1142": "table access denied",
    "1205": "lock wait timeout",
    "1213": "deadlock",
    "1290": "server is read-only",
    "1406": "data too long",
    "1698": "access denied",
    "1792": "read-only transaction",
    "1927": "connection killed",
    "1969": "statement timeout",
    "3024": "statement timeout",
    "4031": "disconnected for inactivity",
    "2002": "cannot connect",
    "2003": "cannot connect",
    "2006": "server has gone away",
    "2013": "lost connection",
    "2055": "lost connection",
}
condition_name: Final = CONDITIONS.get
# Lock wait timeout (1205; the transaction is rolled back before the retry), deadlock
# (1213), too many connections (1040), server shutting down (1053), connection killed
# (1927, MariaDB), disconnected for inactivity (4031, MySQL 8.0.24+), a Galera node not
# yet ready for clients while it joins or resyncs (1047); client side: cannot connect
# (2002, 2003), server gone away (2006), lost connection (2013, 2055). A Galera
# certification conflict is reported as a deadlock (1213).
RETRY_CODES: Final = frozenset(
    {1205, 1213, 1040, 1047, 1053, 1927, 4031, 2002, 2003, 2006, 2013, 2055}
)
# Table access denied (a CREATE or ALTER refused), access denied to the database.
privilege_codes: Final = frozenset({"1142", "1044"})

MYSQL_NOPAD_BINARY_COLLATION: Final = "utf8mb4_0900_bin"
MARIADB_NOPAD_BINARY_COLLATION: Final = "utf8mb4_nopad_bin"
# MySQL closes connections idle for longer than wait_timeout (8 hours by default).
engine_defaults: Final = {"pool_recycle": 3600}
pool_arguments: Final = usual_pool
# Query parameters that name files the driver reads when it connects.
FILE_PARAMETERS: Final = ("ssl_ca", "ssl_cert", "ssl_key")
LOCK_NAME_LENGTH: Final = 64
_LOCK_PREFIX: Final = "tokenstore_sql:"


def is_transient_code(code: str) -> bool:
    """Tell whether an error number is a conflict, a lost connection or a busy server."""
    return code.isdigit() and int(code) in RETRY_CODES


def key_type(dialect: Dialect, length: int) -> TypeEngine[Any]:
    """Give a utf8mb4 binary NO PAD ``VARCHAR`` (MariaDB and MySQL 8 name it differently)."""
    if getattr(dialect, "is_mariadb", False):
        collation = MARIADB_NOPAD_BINARY_COLLATION
    else:
        collation = MYSQL_NOPAD_BINARY_COLLATION
    return mysql.VARCHAR(length, charset="utf8mb4", collation=collation)


# No schemas beside databases; a Galera cluster has several primaries.
schemas: Final = False
multi_primary: Final = True
# MySQL's DATETIME drops microseconds unless asked; TEXT holds 64 KiB, MEDIUMTEXT 16 MiB.
aware_datetimes: Final = False
datetime_type: Final = mysql.DATETIME(fsp=6)
long_text: Final = mysql.MEDIUMTEXT()


def upsert(table: Table, keys: Sequence[str], updated: Sequence[str]) -> Insert:
    """``INSERT ... ON DUPLICATE KEY UPDATE`` (the primary key is the conflict)."""
    statement = mysql.insert(table)
    return statement.on_duplicate_key_update({name: statement.inserted[name] for name in updated})


# PyMySQL's executemany already sends an INSERT's rows as multi-row statements.
rows_per_upsert: Final = 1


def prepare_url(url: URL) -> URL:
    """Refuse files or a charset the driver would fail on; ask for utf8mb4 by default.

    PyMySQL reports these with an ``OSError`` or ``AttributeError`` deep in its connect,
    not as a database error, so they would surface as a traceback on the first call.

    :raises ConfigurationError: naming the parameter (and the file, never a password)
    """
    for name in FILE_PARAMETERS:
        value = url.query.get(name)
        if isinstance(value, str) and not os.access(value, os.R_OK):
            raise ConfigurationError(f"the URL's {name} file {value!r} cannot be read")
    charset = url.query.get("charset")
    if charset is None:
        # utf8mb4 carries all of Unicode; MySQL's older "utf8" stops at three bytes.
        return url.update_query_dict({"charset": "utf8mb4"})
    if isinstance(charset, str) and url.drivername.endswith("+pymysql"):
        from pymysql.charset import charset_by_name  # type: ignore[import-untyped]

        try:
            known = charset_by_name(charset) is not None
        except KeyError:  # older PyMySQL releases raise instead
            known = False
        if not known:
            raise ConfigurationError(
                f"the URL's charset {charset!r} is not one MySQL knows; use utf8mb4"
            )
    return url


# PyMySQL, and aiomysql built on it: the same error numbers reach the retry policy.
driver: Final = ("pymysql", "mysql")
async_driver: Final = "aiomysql"
network: Final = True
describe: Final = None  # as name://host:port/database
in_memory: Final = on_a_server


def connect_args(url: URL) -> Options:
    """Ask for aiomysql connections in autocommit mode, as the sync engines' are."""
    return {"autocommit": True} if url.get_driver_name() == "aiomysql" else {}


def configure_engine(engine: Engine, busy_timeout_ms: int) -> None:
    """Autocommit connections that begin every transaction but one statement's; Galera reads."""
    if engine.dialect.driver == "pymysql":
        configure_mysql(engine)
    elif engine.dialect.driver == "aiomysql":
        begin_explicitly(engine)
    configure_galera(engine)


# One statement commits itself on our engines' autocommit connections: no BEGIN.
driver_autocommit: Final = False
single_statement: Final = dict.fromkeys(
    (False, True), MappingProxyType({SINGLE_STATEMENT_OPTION: True})
)


def lock_name(lock: str) -> str:
    """Hash a lock name to a ``GET_LOCK`` name: a fixed prefix and a hash, at most 64 long."""
    digest = hashlib.sha256(lock.encode("utf-8")).hexdigest()
    return (_LOCK_PREFIX + digest)[:LOCK_NAME_LENGTH]


def take_lock(connection: Connection, name: str, timeout: int, bound_wait: bool) -> bool:
    """Take a session's ``GET_LOCK`` lock, waiting up to ``timeout`` s."""
    got = connection.execute(
        text("SELECT GET_LOCK(:name, :timeout)"), {"name": lock_name(name), "timeout": timeout}
    ).scalar()
    return got == 1


def release_lock(connection: Connection, name: str) -> None:
    """Release a session's ``GET_LOCK`` lock."""
    connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": lock_name(name)})

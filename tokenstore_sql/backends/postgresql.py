"""PostgreSQL, on psycopg 3 (sync and asyncio alike).

One statement runs with the connection in autocommit mode, switched client-side by
psycopg: no ``BEGIN`` or ``COMMIT`` round trip. Engines we create never prepare
statements on the server, as PgBouncer's transaction pooling would hand them to other
clients. Named locks are transaction-scoped advisory locks on a key hashed from the name.
"""

from __future__ import annotations

import hashlib
from types import MappingProxyType
from typing import Any, Final

from sqlalchemy import URL, Connection, DateTime, Engine, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError

from . import Options, on_a_server, on_conflict_upsert, plain_key, unchanged_url, usual_pool

name: Final = "postgresql"
title: Final = "PostgreSQL"
dialect_names: Final = ("postgresql",)
misspelled_schemes: Final = ("postgres",)

# SQLSTATEs, by the names of PostgreSQL's own errcodes table.
CONDITIONS: Final = {
    "08000": "connection_exception",
    "08001": "sqlclient_unable_to_establish_sqlconnection",
    "08006": "connection_failure",
    "08P01": "protocol_violation",
    "22001": "string_data_right_truncation",
    "25006": "read_only_sql_transaction",
    "25P03": "idle_in_transaction_session_timeout",
    "26000": "invalid_sql_statement_name",
    "28000": "invalid_authorization_specification",
    "28P01": "invalid_password",
    "3D000": "invalid_catalog_name",
    "40001": "serialization_failure",
    "40P01": "deadlock_detected",
    "42501": "insufficient_privilege",
    "42P05": "duplicate_prepared_statement",
    "53100": "disk_full",
    "53300": "too_many_connections",
    "55P03": "lock_not_available",
    "57014": "query_canceled",
    "57P01": "admin_shutdown",
    "57P02": "crash_shutdown",
    "57P03": "cannot_connect_now",
}
condition_name: Final = CONDITIONS.get
# serialization_failure, deadlock_detected; the server shutting down, crashed or still
# starting (admin_shutdown, crash_shutdown, cannot_connect_now); too_many_connections
# (every worker connecting at once on deploy). Class 08 (connection exceptions) is
# matched by prefix.
RETRY_STATES: Final = frozenset({"40001", "40P01", "57P01", "57P02", "57P03", "53300"})
# insufficient_privilege: a CREATE or ALTER refused.
privilege_codes: Final = frozenset({"42501"})
# The SQLSTATE of a lock wait that ran out of lock_timeout.
LOCK_NOT_AVAILABLE: Final = "55P03"


def is_transient_code(code: str) -> bool:
    """Tell whether a SQLSTATE is a conflict, a connection failure or a server restart."""
    return code in RETRY_STATES or code.startswith("08")


# Tables may live in a schema; timestamptz keeps the zone; TEXT holds any token.
schemas: Final = True
aware_datetimes: Final = True
datetime_type: Final = DateTime(timezone=True)
long_text: Final = None
# Deterministic collations compare text exactly already.
key_type: Final = plain_key


upsert: Final = on_conflict_upsert(postgresql.insert)
# Each statement is parsed and planned (engines never prepare): an import of 50,000 rows
# spent 4.8 s in one-row upserts, 2.5 s in 100-row ones; a store of three, 891 µs in
# three statements, 789 µs in one.
rows_per_upsert: Final = 100


# psycopg 3 for sync and asyncio alike: the same SQLSTATEs and connection options.
driver: Final = ("psycopg", "postgresql")
async_driver: Final = "psycopg"
network: Final = True
describe: Final = None  # as name://host:port/database
in_memory: Final = on_a_server
multi_primary: Final = False
engine_defaults: Final[dict[str, Any]] = {}
prepare_url: Final = unchanged_url
pool_arguments: Final = usual_pool


def connect_args(url: URL) -> Options:
    """No server-side prepared statements on psycopg.

    Behind PgBouncer's transaction pooling they land on other server connections
    (errors, and rows of another client's statement). psycopg would prepare a statement
    after its fifth use.
    """
    return {"prepare_threshold": None} if url.get_driver_name() == "psycopg" else {}


def configure_engine(engine: Engine, busy_timeout_ms: int) -> None:
    """Install nothing: psycopg's own transaction handling is what we want."""


# One statement runs in autocommit mode, switched client-side by psycopg (on the driver
# path: :class:`tokenstore_sql.direct_drivers.Postgres`).
driver_autocommit: Final = True
single_statement: Final = dict.fromkeys(
    (False, True), MappingProxyType({"isolation_level": "AUTOCOMMIT"})
)


def lock_key(lock: str) -> int:
    """Hash a lock name to a signed 64-bit advisory-lock key (SHA-256's first 8 bytes)."""
    digest = hashlib.sha256(lock.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def take_lock(connection: Connection, name: str, timeout: int, bound_wait: bool) -> bool:
    """Take a transaction-scoped advisory lock, waiting ``timeout`` s where ``bound_wait``."""
    if bound_wait:
        # SET LOCAL ends with the transaction: the pooled connection keeps its settings.
        connection.execute(text(f"SET LOCAL lock_timeout = '{int(timeout)}s'"))
    try:
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(name)})
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            return False
        raise
    return True


# Advisory transaction locks end with their transaction.
release_lock: Final = None

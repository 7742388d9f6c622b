"""PostgreSQL, on psycopg 3 (sync and asyncio alike).

One statement runs with the connection in autocommit mode, switched client-side by
psycopg: no ``BEGIN`` or ``COMMIT`` round trip. Engines we create never prepare
statements on the server, as PgBouncer's transaction pooling would hand them to other
clients. Named locks are transaction-scoped advisory locks on a key hashed from the name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from types import MappingProxyType
from typing import Final

from sqlalchemy import URL, Connection, DateTime, Insert, Table, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError

from . import Backend, Options, plain_key, unchanged_url, usual_pool

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
# serialization_failure, deadlock_detected; the server shutting down, crashed or still
# starting (admin_shutdown, crash_shutdown, cannot_connect_now); too_many_connections
# (every worker connecting at once on deploy). Class 08 (connection exceptions) is
# matched by prefix.
RETRY_STATES: Final = frozenset({"40001", "40P01", "57P01", "57P02", "57P03", "53300"})
PRIVILEGE_STATES: Final = frozenset({"42501"})
# The SQLSTATE of a lock wait that ran out of lock_timeout.
LOCK_NOT_AVAILABLE: Final = "55P03"


def is_transient_code(code: str) -> bool:
    """Tell whether a SQLSTATE is a conflict, a connection failure or a server restart."""
    return code in RETRY_STATES or code.startswith("08")


def upsert(table: Table, keys: Sequence[str], updated: Sequence[str]) -> Insert:
    """``INSERT ... ON CONFLICT (keys) DO UPDATE``."""
    statement = postgresql.insert(table)
    return statement.on_conflict_do_update(
        index_elements=list(keys), set_={name: statement.excluded[name] for name in updated}
    )


def connect_args(url: URL) -> Options:
    """No server-side prepared statements on psycopg.

    Behind PgBouncer's transaction pooling they land on other server connections
    (errors, and rows of another client's statement). psycopg would prepare a statement
    after its fifth use.
    """
    return {"prepare_threshold": None} if url.get_driver_name() == "psycopg" else {}


def lock_key(name: str) -> int:
    """Hash a lock name to a signed 64-bit advisory-lock key (SHA-256's first 8 bytes)."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
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


_AUTOCOMMIT: Final = MappingProxyType({"isolation_level": "AUTOCOMMIT"})

BACKEND: Final = Backend(
    title="PostgreSQL",
    misspelled_schemes=("postgres",),
    name="postgresql",
    dialect_names=("postgresql",),
    driver=("psycopg", "postgresql"),
    async_driver="psycopg",
    network=True,
    multi_primary=False,
    schemas=True,
    aware_datetimes=True,
    driver_autocommit=True,
    single_statement={False: _AUTOCOMMIT, True: _AUTOCOMMIT},
    condition_name=CONDITIONS.get,
    privilege_codes=PRIVILEGE_STATES,
    is_transient_code=is_transient_code,
    key_type=plain_key,
    datetime_type=DateTime(timezone=True),
    long_text=None,
    upsert=upsert,
    prepare_url=unchanged_url,
    connect_args=connect_args,
    engine_defaults={},
    pool_arguments=usual_pool,
    configure_engine=lambda engine, busy_timeout_ms: None,
    describe=None,
    take_lock=take_lock,
    release_lock=None,
)

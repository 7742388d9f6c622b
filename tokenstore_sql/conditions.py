"""Names for the database error codes tokenstore-sql reports, per database.

A message says ``(code 57014 query_canceled)`` rather than a bare ``code 57014``, so
that an operator need not look the number up: wherever a code is shown, its name is
shown with it when it is one of these (:func:`condition_of` finds it, and
:func:`tokenstore_sql.errors.failure_detail` writes both). Connection failures often
come without any code (the driver could not reach a server to ask); for those the
driver's text is read to tell the usual causes apart, and only the cause is reported,
never the text.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy.exc import DBAPIError

_AUTHENTICATION_FAILED: Final = "authentication failed"

# PostgreSQL SQLSTATEs, by the names of PostgreSQL's own errcodes table.
POSTGRESQL: Final = {
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
# MySQL and MariaDB error numbers (server and client).
MYSQL: Final = {
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
# SQLite primary result codes (the low byte of an extended code).
SQLITE: Final = {
    1: "SQL logic error",
    5: "database is locked (busy)",
    6: "table is locked",
    8: "read-only database",
    10: "disk I/O error",
    11: "database file is corrupt",
    13: "disk full",
    14: "cannot open the database file",
    19: "constraint failed",
    26: "not a database file",
}
# SQLite extended result codes that say more than their primary code.
SQLITE_EXTENDED: Final = {
    261: "database is locked (busy recovery)",
    517: "database is locked (busy snapshot)",
    1032: "read-only database (file moved)",
    1555: "constraint failed (primary key)",
    2067: "constraint failed (unique)",
}
# What a connection failure without a code says (every part), and the cause reported.
_CONNECTION_CAUSES: Final = (
    (("connection refused",), "connection refused"),
    (("password authentication failed",), _AUTHENTICATION_FAILED),
    (("authentication failed",), _AUTHENTICATION_FAILED),
    (("no password supplied",), _AUTHENTICATION_FAILED),
    (("role", "does not exist"), "no such user (role)"),
    (("database", "does not exist"), "no such database"),
    (("timeout expired",), "connection timed out"),
    (("timed out",), "connection timed out"),
    (("could not translate host name",), "unknown host"),
    (("name or service not known",), "unknown host"),
    (("no route to host",), "host unreachable"),
    (("network is unreachable",), "host unreachable"),
    (("server closed the connection",), "connection closed by the server"),
    (("too many clients",), "too many connections"),
    (("remaining connection slots are reserved",), "too many connections"),
    (("the database system is starting up",), "server starting up"),
    (("the database system is shutting down",), "server shutting down"),
)


def condition_name(dialect: str, code: str | None) -> str | None:
    """Give the name of an error code on a database, where it is one the package knows."""
    if code is None:
        return None
    if dialect == "postgresql":
        return POSTGRESQL.get(code)
    if dialect in ("mysql", "mariadb"):
        return MYSQL.get(code)
    if dialect == "sqlite" and code.isdigit():
        return SQLITE_EXTENDED.get(int(code)) or SQLITE.get(int(code) & 0xFF)
    return None


def condition_of(exc: DBAPIError, dialect: str, code: str | None) -> str | None:
    """Say what a database error means: its code's name, else (no code) its cause.

    :param code: the error's code, as :func:`tokenstore_sql.retries.error_code` gives it
    """
    if code:
        return condition_name(dialect, code)
    return connection_cause(exc)


def connection_cause(exc: DBAPIError) -> str | None:
    """Tell the usual cause of a failure to connect from the driver's text, if it is one.

    Only the cause is returned: the text itself may hold host names, users or worse.
    """
    text = str(exc.orig).lower()
    for markers, cause in _CONNECTION_CAUSES:
        if all(marker in text for marker in markers):
            return cause
    return None

"""Names for the database error codes tokenstore-sql reports, and causes of failed connects.

A message says ``(code 57014 query_canceled)`` rather than a bare ``code 57014``, so
that an operator need not look the number up: wherever a code is shown, its name is
shown with it when it is one of these (:func:`condition_of` finds it, and
:func:`tokenstore_sql.messages.failure_detail` writes both). Connection failures often
come without any code (the driver could not reach a server to ask); for those the
driver's text is read to tell the usual causes apart, and only the cause is reported,
never the text.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy.exc import DBAPIError

from .backends import find_backend

_AUTHENTICATION_FAILED: Final = "authentication failed"

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
    """Give the name of an error code on a database, where it is one the package knows.

    The names are each backend's (:mod:`tokenstore_sql.backends`).
    """
    backend = find_backend(dialect)
    if code is None or backend is None:
        return None
    return backend.condition_name(code)


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

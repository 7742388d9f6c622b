"""Database URLs: parsed without quoting them, and named in messages without credentials.

A URL may hold a password (in its user part or its query), so neither an error nor a
message ever shows one: :func:`parse_url` never quotes the URL it refuses,
:func:`describe_database` names backend, host and database only, and
:func:`masked_url` replaces every password with ``***``. Where a URL's driver is not
installed, :func:`missing_driver_hint` names the scheme or package that would work.
"""

from __future__ import annotations

import importlib.util
from contextlib import suppress
from typing import Final

from sqlalchemy import URL, make_url
from sqlalchemy.exc import ArgumentError

from .backends import all_backends, find_backend
from .backends.sqlite import file_path as sqlite_file_path
from .errors import ConfigurationError

__all__ = [
    "describe_database",
    "masked_url",
    "missing_driver_hint",
    "parse_url",
    "sqlite_file_path",
]


def parse_url(url: str | URL) -> URL:
    """Parse a database URL; the error never quotes it (it may hold a password)."""
    # ValueError: a port that is not a number. Raised after the block, so that the
    # parser's error (which can quote the URL) is not this one's __context__.
    with suppress(ArgumentError, ValueError):
        return make_url(url)
    raise ConfigurationError("the database URL is not a valid SQLAlchemy URL")


def describe_database(url: URL) -> str:
    """Name a database for messages: backend, host and database name, never credentials."""
    name = url.get_backend_name()
    backend = find_backend(name)
    if backend is not None and backend.describe is not None:
        return backend.describe(url)
    port = f":{url.port}" if url.port else ""
    if url.host is None and url.query.get("host"):
        host, port = _query_hosts(url), ""
    else:
        host = url.host or "localhost"
    return f"{name}://{host}{port}/{url.database or ''}"


def _query_hosts(url: URL) -> str:
    """Give a multi-host URL's hosts, as ``host=a:5432&host=b:5432`` or ``host=a,b&port=1,2``."""

    def listed(name: str) -> list[str]:
        value = url.query.get(name, ())
        items = [value] if isinstance(value, str) else list(value)
        return [part for item in items for part in item.split(",")]

    hosts, ports = listed("host"), listed("port")
    if len(ports) == len(hosts):
        hosts = [f"{host}:{port}" for host, port in zip(hosts, ports, strict=True)]
    return ",".join(hosts)


# Query parameters that drivers read as passwords (libpq, PyMySQL, mysqlclient).
_PASSWORD_PARAMETERS: Final = ("password", "sslpassword", "passwd")


def masked_url(url: URL) -> str:
    """Render a URL with its password, in the user part or the query, replaced by ``***``."""
    hidden = {name: "***" for name in _PASSWORD_PARAMETERS if name in url.query}
    if hidden:
        url = url.update_query_dict(hidden)
    return url.render_as_string(hide_password=True)


def missing_driver_hint(url: URL) -> str:
    """Say why a URL's driver could not be loaded and what would work instead."""
    scheme, _, driver = url.drivername.partition("+")  # without loading the dialect
    for known in all_backends():
        if scheme in known.misspelled_schemes and known.driver is not None:
            return (
                f"the URL scheme for {known.title} is {known.name}, not {scheme}: "
                f"{known.name}+{known.driver[0]}://..."
            )
    backend = find_backend(scheme)
    if backend is None or backend.driver is None:
        return (
            f"no SQLAlchemy dialect or driver is installed for {url.drivername!r}; "
            f"tokenstore-sql supports {_supported_schemes()} URLs"
        )
    preferred, extra = backend.driver
    named = f"the {driver} driver" if driver else "the default driver"
    if driver != preferred and importlib.util.find_spec(preferred) is not None:
        return (
            f"{named} for {scheme} is not installed, but {preferred} is: "
            f"use a {scheme}+{preferred}:// URL"
        )
    return (
        f"{named} for {scheme} is not installed: pip install 'tokenstore-sql[{extra}]' "
        f"and use a {scheme}+{preferred}:// URL"
    )


def _supported_schemes() -> str:
    """Name each backend's URL scheme with its driver: ``sqlite, postgresql+psycopg and ...``."""
    schemes = [
        backend.name if backend.driver is None else f"{backend.name}+{backend.driver[0]}"
        for backend in all_backends()
    ]
    return ", ".join(schemes[:-1]) + " and " + schemes[-1]

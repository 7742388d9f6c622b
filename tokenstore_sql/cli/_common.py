"""What every command shares: one-line errors, the common options, JSON output.

Every option that falls back to an environment variable says so in one wording, which
click writes from the option itself: ``[env var: TOKENSTORE_SQL_URL]``. Its own help
never names the variable again, so the two cannot drift apart.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from sqlalchemy import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from ..conditions import condition_of
from ..crypto import KeyRing
from ..engines import create_engine, describe_database, sqlite_file_path
from ..errors import PlacementError, StorageUnavailableError, TokenStoreError
from ..messages import failure_detail
from ..models import DEFAULT_TABLE_PREFIX, SCHEMA_VARIABLE, TABLE_PREFIX_VARIABLE, Placement
from ..retries import error_code, is_transient
from ..settings import StoreSettings
from ..storage import KEYS_VARIABLE, URL_VARIABLE
from ..store import TokenStore

F = TypeVar("F", bound=Callable[..., Any])

URL_HELP = "SQLAlchemy database URL, e.g. sqlite:///tokens.db or postgresql+psycopg://user@host/db."


class CommandError(click.ClickException):
    """A failure reported as one line on stderr with exit status 1."""

    def show(self, file: Any = None) -> None:
        """Print ``error: <message>`` to stderr."""
        click.echo(f"error: {self.format_message()}", err=True)


class PackageTooOldError(CommandError):
    """The database is newer than this package: one line on stderr, exit status 3."""

    exit_code = 3


class DatabaseUnreachableError(CommandError):
    """The database could not be reached (or kept failing): one line, exit status 4."""

    exit_code = 4


def _require_url(context: click.Context, parameter: click.Parameter, value: str | None) -> str:
    # Not required=True: help would say "[required]" though the variable satisfies it.
    if not value:
        raise click.UsageError(f"no database URL: pass --url URL or set {URL_VARIABLE}")
    return value


def url_option(command: F) -> F:
    """Add ``--url`` (falling back to ``TOKENSTORE_SQL_URL``), needed one way or the other."""
    return _url(callback=_require_url)(command)


def optional_url_option(command: F) -> F:
    """Add ``--url`` to a command that can do without a database (``upgrade --sql``)."""
    return _url(callback=None)(command)


def _url(callback: Callable[..., Any] | None) -> Callable[[F], F]:
    return _env_option("--url", URL_VARIABLE, callback=callback, help=URL_HELP, metavar="URL")


def _env_option(name: str, variable: str, **attributes: Any) -> Callable[[F], F]:
    """Make an option that falls back to ``variable``, which click then names in its help."""
    return click.option(name, envvar=variable, show_envvar=True, **attributes)


def open_engine(url: str, *, read_only: bool = False) -> Engine:
    """Create the command's engine, turning every setup failure into one line.

    :param read_only: leave a SQLite file that does not exist uncreated, and read it as
        the empty database it would be
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise CommandError("the database URL is not a valid SQLAlchemy URL") from None
    sqlite_path = sqlite_file_path(parsed)
    if read_only and sqlite_path is not None and not sqlite_path.exists():
        parsed = make_url("sqlite://")
    try:
        return create_engine(parsed)
    # MissingDriverError names the URL that works; or a SQLite file cannot be created
    except TokenStoreError as exc:
        raise CommandError(str(exc)) from None
    except ValueError:  # e.g. a port that is not a number
        raise CommandError("the database URL is not a valid SQLAlchemy URL") from None
    except OSError as exc:
        raise CommandError(
            f"cannot create the SQLite database {sqlite_path}: {exc.strerror or 'I/O error'}"
        ) from None


@contextmanager
def database(url: str, *, read_only: bool = False) -> Iterator[Engine]:
    """Open an engine for a command, turning setup and database failures into one line."""
    engine = open_engine(url, read_only=read_only)
    try:
        yield engine
    except StorageUnavailableError as exc:
        raise DatabaseUnreachableError(str(exc)) from None
    except TokenStoreError as exc:
        raise CommandError(str(exc)) from None
    except DBAPIError as exc:
        dialect = engine.dialect.name
        code = error_code(exc)
        detail = failure_detail(code, condition_of(exc, dialect, code))
        where = describe_database(engine.url)
        if is_transient(exc, dialect):  # refused, unreachable, lost, busy
            raise DatabaseUnreachableError(
                f"could not reach the database on {where}{detail}"
            ) from None
        raise CommandError(f"database error on {where}{detail}") from None
    finally:
        engine.dispose()


@contextmanager
def store_on(
    url: str, placement: Placement, keys: str | None = None, *, read_only: bool = False
) -> Iterator[TokenStore]:
    """Give a command's store on its own engine (see :func:`database`).

    The comma-separated ``keys`` of ``--keys`` are read first, so a key that is not one
    is one line before the database is opened (or a SQLite file created). The store
    never creates a schema a command did not ask for.
    """
    try:
        ring = KeyRing.from_text(keys) if keys else None
    except TokenStoreError as exc:
        raise CommandError(str(exc)) from None
    settings = StoreSettings(placement=placement, keys=ring, create_schema=False)
    with database(url, read_only=read_only) as engine:
        yield TokenStore(engine, settings=settings)


def placement_options(command: F) -> F:
    """Add ``--table-prefix`` and ``--schema``, passed to the command as ``placement``."""

    @functools.wraps(command)
    def with_placement(*args: Any, table_prefix: str, schema: str | None, **kwargs: Any) -> Any:
        try:
            placement = Placement(table_prefix, schema or None)
        except PlacementError as exc:
            raise CommandError(str(exc)) from None
        return command(*args, placement=placement, **kwargs)

    with_schema = _env_option(
        "--schema",
        SCHEMA_VARIABLE,
        metavar="SCHEMA",
        help="PostgreSQL schema of the tables; without it, the search path.",
    )(with_placement)
    return _env_option(  # type: ignore[return-value]  # the wrapper takes new options
        "--table-prefix",
        TABLE_PREFIX_VARIABLE,
        default=DEFAULT_TABLE_PREFIX,
        show_default=True,
        metavar="PREFIX",
        help="Prefix of the table names: PREFIXtokens, PREFIXversion.",
    )(with_schema)


# ``--keys``, falling back to ``TOKENSTORE_SQL_KEYS``.
keys_option = _env_option(
    "--keys",
    KEYS_VARIABLE,
    metavar="KEYS",
    help="The database's encryption keys, comma-separated, newest first.",
)

# ``--json``, passed to the command as ``as_json`` (see :func:`echo_json`).
json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON document on stdout instead, for scripts and monitoring.",
)


def echo_json(document: object) -> None:
    """Print ``document`` as one line of JSON on stdout; it never holds a token."""
    click.echo(json.dumps(document, ensure_ascii=False))


# ``--yes``, for a command that destroys tokens (see :func:`confirm`).
yes_option = click.option(
    "--yes",
    "-y",
    is_flag=True,
    help="Do it without asking; needed where there is no terminal to ask on.",
)


def confirm(yes: bool, question: str) -> None:
    """Ask before destroying tokens: on a terminal ask, elsewhere require ``--yes``."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise CommandError(f"{question} Pass --yes to confirm (no terminal to ask on).")
    click.confirm(question, abort=True)

"""The ``tokenstore-sql`` command: schema upgrades and inspection from a shell.

Each command parses its options, calls the library and prints a line or a few. A
tokenstore-sql error becomes one line on stderr and exit status 1; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from sqlalchemy import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from . import schema
from .crypto import KeyRing, generate_key
from .engines import create_engine, describe_database
from .errors import TokenStoreError
from .retries import error_code
from .rotation import DEFAULT_BATCH_SIZE, rotate_keys
from .storage import SQLAlchemyTokenStorage

F = TypeVar("F", bound=Callable[..., Any])

URL_HELP = (
    "SQLAlchemy database URL, e.g. sqlite:///tokens.db or "
    "postgresql+psycopg://user@host/db (default: $TOKENSTORE_SQL_URL)"
)


class CommandError(click.ClickException):
    """A failure reported as one line on stderr with exit status 1."""

    def show(self, file: Any = None) -> None:
        """Print ``error: <message>`` to stderr."""
        click.echo(f"error: {self.format_message()}", err=True)


def url_option(command: F) -> F:
    """Add ``--url`` (falling back to ``TOKENSTORE_SQL_URL``) to a command."""
    return click.option(
        "--url",
        envvar="TOKENSTORE_SQL_URL",
        required=True,
        help=URL_HELP,
        metavar="URL",
    )(command)


@contextmanager
def database(url: str) -> Iterator[Engine]:
    """Open an engine for a command, turning setup and database failures into one line."""
    try:
        engine = create_engine(url)
    except NoSuchModuleError:
        backend = make_url(url).get_backend_name()
        raise CommandError(
            f"the database driver for {backend!r} is not installed; "
            f"install it with: pip install 'tokenstore-sql[{backend}]'"
        ) from None
    except ArgumentError:
        raise CommandError("the database URL is not a valid SQLAlchemy URL") from None
    try:
        yield engine
    except TokenStoreError as exc:
        raise CommandError(str(exc)) from None
    except DBAPIError as exc:
        code = error_code(exc)
        detail = f" (code {code})" if code else ""
        raise CommandError(f"database error on {describe_database(engine.url)}{detail}") from None
    finally:
        engine.dispose()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tokenstore-sql")
def main() -> None:
    """Manage the tokenstore-sql schema and inspect stored token data.

    The database comes from --url or the TOKENSTORE_SQL_URL environment variable.
    No command ever prints a token.
    """


@main.command()
@url_option
@click.argument("revision", default="head")
def upgrade(url: str, revision: str) -> None:
    """Create or upgrade the schema to REVISION (default: head).

    Safe to run from several processes at once: the schema is changed under a database
    lock, once. Back up the database before upgrading a production schema.
    """
    with database(url) as engine:
        schema.migrate(engine, revision)
        with engine.connect() as connection:
            click.echo(f"database is at revision {schema.current_revision(connection)}")


@main.command()
@url_option
@click.argument("revision")
def downgrade(url: str, revision: str) -> None:
    """Downgrade the schema to REVISION: a revision id, -1 for one step, or base.

    Downgrading to base drops the token table and every token in it.
    """
    with database(url) as engine:
        schema.downgrade(engine, revision)
        with engine.connect() as connection:
            current = schema.current_revision(connection)
        click.echo(f"database is at revision {current or 'base (no schema)'}")


@main.command()
@url_option
def current(url: str) -> None:
    """Print the database's revision and whether it is at this package's head."""
    with database(url) as engine, engine.connect() as connection:
        found = schema.status(connection)
    if found.current is None:
        click.echo(f"none (no tokenstore-sql schema; head is {found.head})")
    elif found.at_head:
        click.echo(f"{found.current} (head)")
    else:
        click.echo(f"{found.current} (head is {found.head}; run `tokenstore-sql upgrade`)")


@main.command()
@url_option
def namespaces(url: str) -> None:
    """List the namespaces that hold token data, one per line."""
    with database(url) as engine:
        storage = SQLAlchemyTokenStorage(engine, create_schema=False)
        for name in storage.iter_namespaces():
            click.echo(name)


@main.command("generate-key")
def generate_key_command() -> None:
    """Print a new random encryption key (32 bytes, URL-safe base64).

    Keep it in a secret store; pass keys to storages as encryption_keys=[...] and to
    this command line as TOKENSTORE_SQL_KEYS (comma-separated, newest first).
    """
    click.echo(generate_key())


@main.command("rotate-keys")
@url_option
@click.option(
    "--keys",
    envvar="TOKENSTORE_SQL_KEYS",
    metavar="KEY[,KEY...]",
    help="Comma-separated keys, newest first (default: $TOKENSTORE_SQL_KEYS).",
)
@click.option("--decrypt", is_flag=True, help="Store every token in clear text instead.")
@click.option("--batch-size", default=DEFAULT_BATCH_SIZE, show_default=True, type=click.IntRange(1))
def rotate_keys_command(url: str, keys: str | None, decrypt: bool, batch_size: int) -> None:
    """Re-encrypt every stored token under the first key.

    Rows stored in clear are encrypted too. Runs in batches, one transaction each;
    if interrupted, run it again to resume. Afterwards the other keys can be dropped.
    With --decrypt, every token is stored in clear (before a downgrade, say).
    """
    if not keys and not decrypt:
        raise CommandError("no keys: pass --keys or set TOKENSTORE_SQL_KEYS")
    with database(url) as engine:
        ring = KeyRing.from_text(keys) if keys else None
        report = rotate_keys(engine, ring, decrypt=decrypt, batch_size=batch_size)
    target = "clear text" if decrypt or ring is None else f"key {ring.primary_key_id}"
    click.echo(
        f"rewrote {report.rewritten} row(s) under {target}; {report.skipped} changed meanwhile"
    )
    if report.unreadable:
        first = ", ".join(f"{ns!r}/{rs!r}" for ns, rs in report.unreadable[:5])
        raise CommandError(
            f"{len(report.unreadable)} row(s) could not be decrypted with the given keys "
            f"(first: {first}); add the key that sealed them and run again"
        )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

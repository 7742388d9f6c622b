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

from . import maintenance, schema
from .crypto import KeyRing, generate_key
from .engines import create_engine, describe_database, sqlite_file_path
from .errors import ImportFormatError, SchemaOutOfDateError, SchemaTooNewError, TokenStoreError
from .formats import discover_app_files, globus_app_dir, read_token_file
from .retries import error_code
from .rotation import DEFAULT_BATCH_SIZE, rotate_keys
from .storage import SQLAlchemyTokenStorage
from .transfer import CONFLICT_POLICIES, ImportReport, export_token_file, import_token_files

F = TypeVar("F", bound=Callable[..., Any])

# Above this many files, import shows a progress bar on stderr while it reads them.
PROGRESS_BAR_FILES = 5
URL_HELP = (
    "SQLAlchemy database URL, e.g. sqlite:///tokens.db or "
    "postgresql+psycopg://user@host/db (default: $TOKENSTORE_SQL_URL)"
)


class CommandError(click.ClickException):
    """A failure reported as one line on stderr with exit status 1."""

    def show(self, file: Any = None) -> None:
        """Print ``error: <message>`` to stderr."""
        click.echo(f"error: {self.format_message()}", err=True)


class PackageTooOldError(CommandError):
    """The database is newer than this package: one line on stderr, exit status 3."""

    exit_code = 3


def url_option(command: F) -> F:
    """Add ``--url`` (falling back to ``TOKENSTORE_SQL_URL``) to a command."""
    return click.option(
        "--url",
        envvar="TOKENSTORE_SQL_URL",
        required=True,
        help=URL_HELP,
        metavar="URL",
    )(command)


# Which optional extra of this package installs the driver a backend needs.
DRIVER_EXTRAS = {"postgresql": "postgresql", "mysql": "mysql", "mariadb": "mysql"}


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
    except (NoSuchModuleError, ImportError):
        extra = DRIVER_EXTRAS.get(parsed.get_backend_name())
        hint = f"pip install 'tokenstore-sql[{extra}]'" if extra else "install its dialect"
        raise CommandError(
            f"the database driver for {parsed.drivername!r} is not installed; {hint}"
        ) from None
    except TokenStoreError as exc:  # e.g. a SQLite file that cannot be created
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
@click.option("--url", envvar="TOKENSTORE_SQL_URL", help=URL_HELP, metavar="URL")
@click.option(
    "--sql",
    is_flag=True,
    help="Print the SQL instead of running it, for a DBA to apply; connects to nothing.",
)
@click.option(
    "--dialect",
    type=click.Choice(schema.OFFLINE_DIALECTS),
    help="With --sql: the database to write SQL for (default: the one --url names).",
)
@click.argument("revision", default="head")
def upgrade(url: str | None, sql: bool, dialect: str | None, revision: str) -> None:
    """Create or upgrade the schema to REVISION (default: head).

    Safe to run from several processes at once: the schema is changed under a database
    lock, once. Back up the database before upgrading a production schema.

    With --sql, print the statements instead (Alembic's offline mode), from an empty
    database to REVISION, or for FROM:TO (e.g. 0001:head) from a database at FROM.
    MySQL and MariaDB differ in one collation, so name the one you have with --dialect.
    """
    if sql:
        click.echo(_offline_sql(url, dialect, revision), nl=False)
        return
    if url is None:
        raise click.UsageError("Missing option '--url' (or set TOKENSTORE_SQL_URL).")
    with database(url) as engine:
        schema.migrate(engine, revision)
        with engine.connect() as connection:
            click.echo(f"database is at revision {schema.current_revision(connection)}")


def _offline_sql(url: str | None, dialect: str | None, revision: str) -> str:
    if dialect is None:
        if url is None:
            raise click.UsageError("--sql needs --dialect, or --url to take the dialect from.")
        try:
            dialect = make_url(url).get_backend_name()
        except (ArgumentError, ValueError):
            raise CommandError("the database URL is not a valid SQLAlchemy URL") from None
    start, _, target = revision.rpartition(":")
    try:
        return schema.offline_sql(dialect, target, start or None)
    except TokenStoreError as exc:
        raise CommandError(str(exc)) from None


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
    with database(url, read_only=True) as engine, engine.connect() as connection:
        found = schema.status(connection)
    if found.current is None:
        click.echo(f"none (no tokenstore-sql schema; head is {found.head})")
    elif found.at_head:
        click.echo(f"{found.current} (head)")
    elif found.current not in schema.known_revisions():
        click.echo(
            f"{found.current} (unknown to this package, whose newest is {found.head}; "
            "upgrade the tokenstore-sql package)"
        )
    else:
        click.echo(f"{found.current} (head is {found.head}; run `tokenstore-sql upgrade`)")


@main.command()
@url_option
def check(url: str) -> None:
    """Exit 0 if the database is at this package's head revision, else non-zero.

    For deploy pipelines; changes nothing. Exit status: 0 at head; 1 when an upgrade is
    pending (older or no schema; run `tokenstore-sql upgrade`) or the check failed;
    3 when the database is at a revision this package does not know (upgrade the
    package). Anything but 0 prints one line on stderr naming both revisions.
    """
    with database(url, read_only=True) as engine, engine.connect() as connection:
        try:
            found = schema.require_head(connection)
        except SchemaTooNewError as exc:
            raise PackageTooOldError(str(exc)) from None
        except SchemaOutOfDateError as exc:  # older, or no schema: exit status 1
            raise CommandError(str(exc)) from None
    click.echo(f"database is at revision {found.current} (head)")


@main.command()
@url_option
def namespaces(url: str) -> None:
    """List the namespaces that hold token data, one per line."""
    with database(url, read_only=True) as engine:
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


def keys_option(command: F) -> F:
    """Add ``--keys`` (falling back to ``TOKENSTORE_SQL_KEYS``) to a command."""
    return click.option(
        "--keys",
        envvar="TOKENSTORE_SQL_KEYS",
        metavar="KEY[,KEY...]",
        help="The database's encryption keys, newest first (default: $TOKENSTORE_SQL_KEYS).",
    )(command)


@main.command("import")
@url_option
@keys_option
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option(
    "--namespace",
    metavar="NAMESPACE",
    help="Put all token data into NAMESPACE instead of each file's own.",
)
@click.option(
    "--on-conflict",
    type=click.Choice(CONFLICT_POLICIES),
    default="newer",
    show_default=True,
    help="For tokens the database holds already: keep the one that expires later, "
    "keep the database's (skip), or take the file's (overwrite).",
)
@click.option("--dry-run", is_flag=True, help="Report what would be imported; write nothing.")
@click.option(
    "--identity-from-config",
    is_flag=True,
    help="Fill a missing identity_id from the user identity that globus-cli records in "
    "its SQLite database (schema 1).",
)
def import_command(
    url: str,
    keys: str | None,
    paths: tuple[str, ...],
    namespace: str | None,
    on_conflict: str,
    dry_run: bool,
    identity_from_config: bool,
) -> None:
    """Import globus-sdk token files (JSON or SQLite, any version) into the database.

    Formats are told apart by content. Every file is read and checked before anything is
    written, and the whole import is one transaction: on any error, nothing is imported.
    Running the same import again changes nothing.
    """
    with database(url) as engine, _progress(len(paths)) as progress:
        report = import_token_files(
            engine,
            paths,
            namespace=namespace,
            on_conflict=on_conflict,
            dry_run=dry_run,
            identity_from_config=identity_from_config,
            progress=progress,
            encryption_keys=KeyRing.from_text(keys) if keys else None,
        )
    _print_import(report)


@contextmanager
def _progress(files: int) -> Iterator[Callable[[str], None] | None]:
    if files <= PROGRESS_BAR_FILES:
        yield None
        return
    with click.progressbar(length=files, label="reading token files", file=sys.stderr) as bar:
        yield lambda path: bar.update(1)


def _print_import(report: ImportReport) -> None:
    prefix = "dry run: " if report.dry_run else ""
    for count in report.counts:
        target = "" if count.namespace == count.source_namespace else f" -> {count.namespace!r}"
        click.echo(
            f"{prefix}{count.path}: {count.kind}, namespace {count.source_namespace!r}{target}: "
            f"{count.added} added, {count.updated} updated, {count.kept} kept, "
            f"{count.skipped} skipped"
        )
    for token_file in report.files:
        if token_file.config_entries:
            click.echo(
                f"{prefix}{token_file.path}: {token_file.config_entries} config_storage "
                "entry(ies) skipped (application settings, not token data)"
            )
    written = sum(count.added + count.updated for count in report.counts)
    verb = "would write" if report.dry_run else "wrote"
    click.echo(f"{prefix}{verb} {written} token(s) from {len(report.files)} file(s)")


@main.command()
@url_option
@keys_option
@click.argument("path")
@click.option(
    "--namespace",
    "namespaces",
    multiple=True,
    help="Export this namespace only; repeat for several (default: all).",
)
@click.option("--force", is_flag=True, help="Replace PATH if it exists.")
def export(url: str, keys: str | None, path: str, namespaces: tuple[str, ...], force: bool) -> None:
    """Write token data to PATH as a JSON file that globus-sdk's JSONTokenStorage reads.

    The file is created readable by its owner only.
    """
    with database(url) as engine:
        written = export_token_file(
            engine,
            path,
            namespaces=namespaces or None,
            overwrite=force,
            encryption_keys=KeyRing.from_text(keys) if keys else None,
        )
    for name, count in written.items():
        click.echo(f"{path}: namespace {name!r}: {count} token(s)")
    click.echo(f"wrote {sum(written.values())} token(s) in {len(written)} namespace(s) to {path}")


@main.command()
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    help="Look under this home directory instead of the current user's.",
)
def discover(home: str | None) -> None:
    """List the token files that GlobusApp keeps at its default places, and what they hold.

    Needs no database and writes nothing. Every GlobusApp keeps its tokens in the
    namespace DEFAULT, so give each file its own namespace when importing several:
    tokenstore-sql import PATH --namespace NAME.
    """
    unreadable = 0
    paths = discover_app_files(home)
    for path in paths:
        try:
            token_file = read_token_file(path)
        except ImportFormatError as exc:
            unreadable += 1
            click.echo(f"{path}: cannot be imported: {exc.problem}")
            continue
        for name, by_resource_server in token_file.tokens.items():
            click.echo(
                f"{path}: {token_file.kind}, namespace {name!r}: {len(by_resource_server)} token(s)"
            )
    if not paths:
        click.echo(f"no GlobusApp token files under {globus_app_dir(home)}")
    if unreadable:
        raise CommandError(f"{unreadable} of {len(paths)} file(s) cannot be imported")


@main.command("remove-namespace")
@url_option
@click.argument("namespace")
def remove_namespace_command(url: str, namespace: str) -> None:
    """Remove every token of NAMESPACE (logout, offboarding), in one transaction.

    Tokens are removed from the database, not revoked at Globus Auth.
    """
    with database(url) as engine:
        storage = SQLAlchemyTokenStorage(engine, namespace=namespace, create_schema=False)
        removed = storage.remove_namespace()
    click.echo(f"removed {removed} row(s) from namespace {namespace!r}")


@main.command()
@url_option
@click.option("--dry-run", is_flag=True, help="Only count the rows that would be removed.")
def prune(url: str, dry_run: bool) -> None:
    """Remove rows that can never be used again: access token expired, no refresh token."""
    with database(url) as engine:
        count = maintenance.prune(engine, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {count} row(s) with an expired access token and no refresh token")


@main.command()
@url_option
@click.option(
    "--by",
    type=click.Choice(["namespace", "resource-server", "both"]),
    default="both",
    show_default=True,
    help="Which counts to list; the totals are always printed.",
)
def stats(url: str, by: str) -> None:
    """Count rows by namespace and by resource server: all, expired, unusable.

    Expired rows have an expired access token; unusable ones have no refresh token
    either (prune removes those). Never prints a token.
    """
    with database(url) as engine:
        found = maintenance.stats(engine)
    sections = [("namespace", found.by_namespace), ("resource-server", found.by_resource_server)]
    for title, counts in sections:
        if by in (title, "both"):
            _print_counts(title, counts)
    total = found.total
    click.echo(f"total: {total.rows} row(s), {total.expired} expired, {total.unusable} unusable")


def _print_counts(title: str, counts: list[maintenance.RowCounts]) -> None:
    width = max([len(title), *(len(c.name) for c in counts)])
    click.echo(f"{title:<{width}}  {'rows':>8}  {'expired':>8}  {'unusable':>8}")
    for c in counts:
        click.echo(f"{c.name:<{width}}  {c.rows:>8}  {c.expired:>8}  {c.unusable:>8}")
    click.echo("")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

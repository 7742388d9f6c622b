"""Commands that create, move and check the schema: upgrade, downgrade, current, check."""

from __future__ import annotations

import click
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError

from .. import deploy, schema
from ..errors import (
    SchemaNotManagedError,
    SchemaOutOfDateError,
    SchemaTooNewError,
    TokenStoreError,
)
from ..models import Placement
from ..schema import SchemaStatus
from ._common import (
    CommandError,
    PackageTooOldError,
    confirm,
    echo_json,
    json_option,
    optional_url_option,
    placement_options,
    store_on,
    url_option,
    yes_option,
)


@click.command()
@optional_url_option
@click.option(
    "--sql",
    is_flag=True,
    help="Print the SQL instead of running it, for a DBA to apply; connects to nothing.",
)
@click.option(
    "--dialect",
    type=click.Choice(deploy.OFFLINE_DIALECTS),
    metavar="DIALECT",
    help=f"With --sql: the database to write SQL for, one of {', '.join(deploy.OFFLINE_DIALECTS)} "
    "(default: the one --url names).",
)
@click.argument("revision", default="head")
@placement_options
def upgrade(
    url: str | None, sql: bool, dialect: str | None, revision: str, placement: Placement
) -> None:
    """Create or upgrade the schema to REVISION (default: head).

    Safe to run from several processes at once: the schema is changed under a database
    lock, once. Back up the database before upgrading a production schema.

    With --sql, print the statements instead (Alembic's offline mode), from an empty
    database to REVISION, or for FROM:TO (e.g. 0001:head) from a database at FROM.
    MySQL and MariaDB differ in one collation, so name the one you have with --dialect.
    """
    if sql:
        click.echo(_offline_sql(url, dialect, revision, placement), nl=False)
        return
    if url is None:
        raise click.UsageError("Missing option '--url' (or set TOKENSTORE_SQL_URL).")
    with store_on(url, placement) as store:
        found = store.upgrade(revision)
        click.echo(f"database is at revision {found}")


def _offline_sql(url: str | None, dialect: str | None, revision: str, placement: Placement) -> str:
    if dialect is None:
        if url is None:
            raise click.UsageError("--sql needs --dialect, or --url to take the dialect from.")
        try:
            dialect = make_url(url).get_backend_name()
        except (ArgumentError, ValueError):
            raise CommandError("the database URL is not a valid SQLAlchemy URL") from None
    start, _, target = revision.rpartition(":")
    try:
        return deploy.offline_sql(dialect, target, start or None, placement)
    except TokenStoreError as exc:
        raise CommandError(str(exc)) from None


# "-1" looks like an option to click; taken as the REVISION argument instead.
@click.command(context_settings={"ignore_unknown_options": True})
@url_option
@click.argument("revision")
@yes_option
@placement_options
def downgrade(url: str, revision: str, yes: bool, placement: Placement) -> None:
    """Downgrade the schema to REVISION: a revision id, -1 for one step, or base.

    Downgrading to base drops the token table and every token in it, and the version
    table; it asks first (or needs --yes).
    """
    if revision == "base":
        confirm(yes, "Drop the token table and every token in it?")
    with store_on(url, placement) as store:
        current = store.downgrade(revision)
        click.echo(f"database is at revision {current or 'base (no schema)'}")


@click.command()
@url_option
@json_option
@placement_options
def current(url: str, as_json: bool, placement: Placement) -> None:
    """Print the database's revision and whether it is at this package's head.

    A token table without a version record is refused, as ``check`` and ``upgrade``
    refuse it (exit status 1). With --json: {"status", "revision", "head",
    "up_to_date"}, as ``check --json`` prints it.
    """
    with store_on(url, placement, read_only=True) as store:
        found = store.status()  # raises for a schema not ours
    if as_json:
        echo_json(_schema_document(_verdict(found), found))
    elif found.current is None:
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


@click.command()
@url_option
@json_option
@placement_options
def check(url: str, as_json: bool, placement: Placement) -> None:
    """Exit 0 if the database is at this package's head revision, else non-zero.

    For deploy pipelines; changes nothing. Exit status: 0 at head; 1 when an upgrade is
    pending (older or no schema; run `tokenstore-sql upgrade`) or the schema is not
    tokenstore-sql's; 3 when the database is at a revision this package does not know
    (upgrade the package); 4 when the database could not be reached. Anything but 0
    prints one line on stderr.

    With --json, the verdict also goes to stdout as {"status", "revision", "head",
    "up_to_date"}, status being ok, upgrade-pending, database-newer or not-managed;
    the exit status is the same. A database that cannot be reached prints no JSON.
    """
    with store_on(url, placement, read_only=True) as store:
        try:
            found = store.check()
        except SchemaTooNewError as exc:
            _echo_verdict(as_json, "database-newer", SchemaStatus(exc.current, exc.head))
            raise PackageTooOldError(str(exc)) from None
        except SchemaOutOfDateError as exc:  # older, or no schema: exit status 1
            _echo_verdict(as_json, "upgrade-pending", SchemaStatus(exc.current, exc.head))
            raise CommandError(str(exc)) from None
        except SchemaNotManagedError as exc:
            _echo_verdict(as_json, "not-managed", SchemaStatus(None, schema.head_revision()))
            raise CommandError(str(exc)) from None
    if as_json:
        echo_json(_schema_document("ok", found))
    else:
        click.echo(f"database is at revision {found.current} (head)")


def _verdict(found: SchemaStatus) -> str:
    """ok, upgrade-pending (older or no schema) or database-newer (unknown revision)."""
    if found.at_head:
        return "ok"
    if found.current is not None and found.current not in schema.known_revisions():
        return "database-newer"
    return "upgrade-pending"


def _echo_verdict(as_json: bool, verdict: str, found: SchemaStatus) -> None:
    if as_json:
        echo_json(_schema_document(verdict, found))


def _schema_document(verdict: str, found: SchemaStatus) -> dict[str, object]:
    """Give the JSON of ``current --json`` and ``check --json``: always the same keys."""
    return {
        "status": verdict,
        "revision": found.current,
        "head": found.head,
        "up_to_date": found.at_head,
    }


COMMANDS = (
    upgrade,
    downgrade,
    current,
    check,
)

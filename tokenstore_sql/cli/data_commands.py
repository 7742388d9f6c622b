"""Commands on stored token data; none of them prints a token.

namespaces, import, export, discover, remove-namespace, prune and stats.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click

from .. import maintenance
from ..crypto import KeyRing
from ..errors import ImportFormatError
from ..formats import discover_app_files, globus_app_dir, read_token_file
from ..models import Placement
from ..storage import SQLAlchemyTokenStorage
from ..transfer import CONFLICT_POLICIES, ImportReport, export_token_file, import_token_files
from ._common import (
    CommandError,
    confirm,
    database,
    keys_option,
    placement_options,
    url_option,
    yes_option,
)

# Above this many files, import shows a progress bar on stderr while it reads them.
PROGRESS_BAR_FILES = 5


@click.command()
@url_option
@placement_options
def namespaces(url: str, placement: Placement) -> None:
    """List the namespaces that hold token data, one per line."""
    with database(url, read_only=True) as engine:
        storage = SQLAlchemyTokenStorage(engine, create_schema=False, placement=placement)
        for name in storage.iter_namespaces():
            click.echo(name)


@click.command("import")
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
@click.option(
    "--merge",
    is_flag=True,
    help="Let several files supply the same namespace and resource server, later files "
    "meeting earlier ones by --on-conflict (without it, such files are refused).",
)
@click.option("--dry-run", is_flag=True, help="Report what would be imported; write nothing.")
@click.option(
    "--identity-from-config",
    is_flag=True,
    help="Fill a missing identity_id from the user identity that globus-cli records in "
    "its SQLite database (schema 1).",
)
@placement_options
def import_command(
    url: str,
    keys: str | None,
    paths: tuple[str, ...],
    namespace: str | None,
    on_conflict: str,
    merge: bool,
    dry_run: bool,
    identity_from_config: bool,
    placement: Placement,
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
            merge=merge,
            dry_run=dry_run,
            identity_from_config=identity_from_config,
            progress=progress,
            encryption_keys=KeyRing.from_text(keys) if keys else None,
            placement=placement,
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


@click.command()
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
@placement_options
def export(
    url: str,
    keys: str | None,
    path: str,
    namespaces: tuple[str, ...],
    force: bool,
    placement: Placement,
) -> None:
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
            placement=placement,
        )
    for name, count in written.items():
        click.echo(f"{path}: namespace {name!r}: {count} token(s)")
    click.echo(f"wrote {sum(written.values())} token(s) in {len(written)} namespace(s) to {path}")


@click.command()
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


@click.command("remove-namespace")
@url_option
@click.argument("namespace")
@yes_option
@placement_options
def remove_namespace_command(url: str, namespace: str, yes: bool, placement: Placement) -> None:
    """Remove every token of NAMESPACE (logout, offboarding), in one transaction.

    Tokens are removed from the database, not revoked at Globus Auth. Asks first (or
    needs --yes).
    """
    confirm(yes, f"Remove every token of namespace {namespace!r}?")
    with database(url) as engine:
        storage = SQLAlchemyTokenStorage(
            engine, namespace=namespace, create_schema=False, placement=placement
        )
        removed = storage.remove_namespace()
    click.echo(f"removed {removed} row(s) from namespace {namespace!r}")


@click.command()
@url_option
@click.option("--dry-run", is_flag=True, help="Only count the rows that would be removed.")
@placement_options
def prune(url: str, dry_run: bool, placement: Placement) -> None:
    """Remove rows that can never be used again: access token expired, no refresh token."""
    with database(url) as engine:
        count = maintenance.prune(engine, dry_run=dry_run, placement=placement)
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {count} row(s) with an expired access token and no refresh token")


@click.command()
@url_option
@click.option(
    "--by",
    type=click.Choice(["namespace", "resource-server", "both"]),
    default="both",
    show_default=True,
    help="Which counts to list; the totals are always printed.",
)
@placement_options
def stats(url: str, by: str, placement: Placement) -> None:
    """Count rows by namespace and by resource server: all, expired, unusable.

    Expired rows have an expired access token; unusable ones have no refresh token
    either (prune removes those). Never prints a token.
    """
    with database(url) as engine:
        found = maintenance.stats(engine, placement=placement)
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


COMMANDS = (
    namespaces,
    import_command,
    export,
    discover,
    remove_namespace_command,
    prune,
    stats,
)

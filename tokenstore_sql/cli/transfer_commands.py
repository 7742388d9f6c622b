"""Commands that move token data between files and the database: import, export, discover.

Only ``export -`` writes tokens anywhere but the database, and then only to a pipe or
a file, never to a terminal; every other line these commands print names files,
namespaces and counts.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click

from ..discovery import discover_app_databases, discover_app_files, globus_app_dir
from ..errors import ImportFormatError
from ..formats import read_token_file
from ..models import Placement
from ..transfer import CONFLICT_POLICIES, ImportReport
from ._common import (
    CommandError,
    keys_option,
    placement_options,
    store_on,
    url_option,
)

# Above this many files, import shows a progress bar on stderr while it reads them.
PROGRESS_BAR_FILES = 5
STDOUT = "-"


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
    metavar="POLICY",
    help="For tokens the database holds already: newer keeps the one that expires later, "
    "skip keeps the database's, overwrite takes the file's.",
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
@click.option(
    "--plaintext",
    is_flag=True,
    help="Without keys, store the tokens in clear text even where the table holds "
    "encrypted tokens (such an import is refused otherwise).",
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
    plaintext: bool,
    placement: Placement,
) -> None:
    """Import globus-sdk token files (JSON or SQLite, any version) into the database.

    Formats are told apart by content. Every file is read and checked before anything is
    written, and the whole import is one transaction: on any error, nothing is imported.
    Running the same import again changes nothing. Without keys, an import into a table
    that holds encrypted tokens is refused, unless --plaintext.
    """
    if plaintext and keys:
        raise click.UsageError(
            "--plaintext stores tokens in clear text, but keys were given "
            "(--keys or TOKENSTORE_SQL_KEYS); drop one or the other"
        )
    with store_on(url, placement, keys) as store, _progress(len(paths)) as progress:
        report = store.import_files(
            paths,
            namespace=namespace,
            on_conflict=on_conflict,
            merge=merge,
            dry_run=dry_run,
            identity_from_config=identity_from_config,
            progress=progress,
            allow_plaintext=plaintext,
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
    metavar="NAMESPACE",
    help="Export this namespace only; repeat for several (default: all).",
)
@click.option("--force", is_flag=True, help="Replace PATH if it exists (refused with -).")
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

    The file is created readable by its owner only. PATH - writes the JSON to stdout
    instead, and the counts to stderr; stdout must then be a pipe or a file, not a
    terminal, and --force is refused (there is no file to replace). A file named -
    is ./-.
    """
    to_stdout = path == STDOUT
    if to_stdout and force:
        raise click.UsageError("--force replaces a file; with - (stdout) there is none")
    if to_stdout and sys.stdout.isatty():
        raise CommandError("refusing to write tokens to a terminal; redirect or pipe stdout")
    with store_on(url, placement, keys) as store:
        if to_stdout:
            written = store.export_stream(sys.stdout, namespaces=namespaces or None)
        else:
            written = store.export_file(path, namespaces=namespaces or None, overwrite=force)
    where = "stdout" if to_stdout else path
    for name, count in written.items():
        click.echo(f"{where}: namespace {name!r}: {count} token(s)", err=to_stdout)
    total = sum(written.values())
    click.echo(f"wrote {total} token(s) in {len(written)} namespace(s) to {where}", err=to_stdout)


@click.command()
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Look under this home directory instead of the current user's.",
)
def discover(home: str | None) -> None:
    """List the token files that GlobusApp keeps at its default places, and what they hold.

    Needs no database and writes nothing. globus-sdk keeps every GlobusApp's tokens in the
    namespace DEFAULT, so give each file its own namespace when importing several:
    tokenstore-sql import PATH --namespace NAME. The tokenstore-sql databases that
    SQLAlchemyTokenStorage keeps for a GlobusApp (tokens.tokenstore.db) are listed with
    the URL to use them by; they need no import.
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
    databases = discover_app_databases(home)
    for path in databases:
        click.echo(f"{path}: tokenstore-sql database: --url sqlite:///{path}")
    if not paths and not databases:
        click.echo(f"no GlobusApp token files under {globus_app_dir(home)}")
    if unreadable:
        raise CommandError(f"{unreadable} of {len(paths)} file(s) cannot be imported")


COMMANDS = (
    import_command,
    export,
    discover,
)

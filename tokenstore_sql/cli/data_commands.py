"""Commands on stored token data, across namespaces; none of them prints a token.

namespaces, remove-namespace, prune and stats.
"""

from __future__ import annotations

import dataclasses

import click

from .. import maintenance
from ..models import Placement
from ._common import (
    confirm,
    echo_json,
    json_option,
    placement_options,
    store_on,
    url_option,
    yes_option,
)

STATS_SECTIONS = {"namespace": "by_namespace", "resource-server": "by_resource_server"}


@click.command()
@url_option
@json_option
@placement_options
def namespaces(url: str, as_json: bool, placement: Placement) -> None:
    """List the namespaces that hold token data, one per line.

    With --json: one JSON list of the names.
    """
    with store_on(url, placement, read_only=True) as store:
        names = store.namespaces()
    if as_json:
        echo_json(names)
        return
    for name in names:
        click.echo(name)


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
    with store_on(url, placement) as store:
        removed = store.for_namespace(namespace).remove_namespace()
    click.echo(f"removed {removed} row(s) from namespace {namespace!r}")


@click.command()
@url_option
@click.option("--dry-run", is_flag=True, help="Only count the rows that would be removed.")
@placement_options
def prune(url: str, dry_run: bool, placement: Placement) -> None:
    """Remove rows that can never be used again: access token expired, no refresh token."""
    with store_on(url, placement) as store:
        count = store.prune(dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {count} row(s) with an expired access token and no refresh token")


@click.command()
@url_option
@click.option(
    "--by",
    type=click.Choice(["namespace", "resource-server", "both"]),
    default="both",
    show_default=True,
    metavar="GROUP",
    help="Which counts to list: namespace, resource-server or both (the totals always).",
)
@json_option
@placement_options
def stats(url: str, by: str, as_json: bool, placement: Placement) -> None:
    """Count rows by namespace and by resource server: all, expired, unusable.

    Expired rows have an expired access token; unusable ones have no refresh token
    either (prune removes those). Never prints a token. With --json: {"by_namespace":
    [...], "by_resource_server": [...], "total": {...}}, each count as {"name", "rows",
    "expired", "unusable"}; --by leaves out the list not asked for.
    """
    with store_on(url, placement) as store:
        found = store.stats()
    shown = {
        title: getattr(found, key) for title, key in STATS_SECTIONS.items() if by in (title, "both")
    }
    total = found.total
    if as_json:
        document: dict[str, object] = {
            STATS_SECTIONS[title]: [dataclasses.asdict(c) for c in counts]
            for title, counts in shown.items()
        }
        document["total"] = {
            "rows": total.rows,
            "expired": total.expired,
            "unusable": total.unusable,
        }
        echo_json(document)
        return
    for title, counts in shown.items():
        _print_counts(title, counts)
    click.echo(f"total: {total.rows} row(s), {total.expired} expired, {total.unusable} unusable")


def _print_counts(title: str, counts: list[maintenance.RowCounts]) -> None:
    width = max([len(title), *(len(c.name) for c in counts)])
    click.echo(f"{title:<{width}}  {'rows':>8}  {'expired':>8}  {'unusable':>8}")
    for c in counts:
        click.echo(f"{c.name:<{width}}  {c.rows:>8}  {c.expired:>8}  {c.unusable:>8}")
    click.echo("")


COMMANDS = (
    namespaces,
    remove_namespace_command,
    prune,
    stats,
)

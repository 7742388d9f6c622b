"""Commands for encryption keys: generate-key, rotate-keys."""

from __future__ import annotations

import click

from ..crypto import generate_key
from ..models import Placement
from ..rotation import DEFAULT_BATCH_SIZE
from ._common import (
    CommandError,
    keys_option,
    placement_options,
    store_on,
    url_option,
)


@click.command("generate-key")
def generate_key_command() -> None:
    """Print a new random encryption key (32 bytes, URL-safe base64).

    Keep it in a secret store; pass keys to storages and stores as keys=[...] and to
    this command line as TOKENSTORE_SQL_KEYS (comma-separated, newest first).
    """
    click.echo(generate_key())


@click.command("rotate-keys")
@url_option
@keys_option
@click.option("--decrypt", is_flag=True, help="Store every token in clear text instead.")
@click.option(
    "--batch-size",
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    type=click.IntRange(1),
    metavar="ROWS",
    help="Rows rewritten per transaction (each batch commits on its own).",
)
@placement_options
def rotate_keys_command(
    url: str, keys: str | None, decrypt: bool, batch_size: int, placement: Placement
) -> None:
    """Re-encrypt every stored token under the first key.

    Rows stored in clear are encrypted too. Runs in batches, one transaction each;
    if interrupted, run it again to resume. Afterwards the other keys can be dropped.
    With --decrypt, every token is stored in clear (before a downgrade, say).
    """
    if not keys and not decrypt:
        raise CommandError("no keys: pass --keys or set TOKENSTORE_SQL_KEYS")
    with store_on(url, placement, keys) as store:
        report = store.rotate_keys(decrypt=decrypt, batch_size=batch_size)
    ring = store.keys
    if decrypt or ring is None:
        done = f"stored {report.rewritten} row(s) in clear text"
    else:
        done = f"rewrote {report.rewritten} row(s) under key {ring.primary_key_id}"
    click.echo(f"{done}; {report.skipped} changed meanwhile")
    if report.unreadable:
        first = ", ".join(f"{ns!r}/{rs!r}" for ns, rs in report.unreadable[:5])
        raise CommandError(
            f"{len(report.unreadable)} row(s) could not be decrypted with the given keys "
            f"(first: {first}); add the key that sealed them and run again"
        )


COMMANDS = (
    generate_key_command,
    rotate_keys_command,
)

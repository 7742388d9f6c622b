"""The ``tokenstore-sql`` command: schema upgrades and inspection from a shell.

Each command parses its options, calls the library and prints a line or a few. A
tokenstore-sql error becomes one line on stderr and exit status 1; anything else is a
bug and keeps its traceback.

The commands live by topic in ``schema_commands``, ``key_commands``,
``transfer_commands`` and ``data_commands``; ``_common`` holds what they share (errors,
options, the store on its engine, JSON output).
"""

from __future__ import annotations

import click

from . import data_commands, key_commands, schema_commands, transfer_commands


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tokenstore-sql")
def main() -> None:
    """Manage the tokenstore-sql schema and inspect stored token data.

    The database comes from --url or the TOKENSTORE_SQL_URL environment variable.
    No command prints a token, except export - (the token file, to a pipe or a file).
    """


for _module in (schema_commands, key_commands, transfer_commands, data_commands):
    for _command in _module.COMMANDS:
        main.add_command(_command)

__all__ = ["main"]

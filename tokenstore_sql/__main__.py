"""Run the command line: ``python -m tokenstore_sql``."""

from __future__ import annotations

from .cli import main

main()

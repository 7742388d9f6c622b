"""Running Python programs (examples, the benchmark, Alembic) as a user would, to their end."""

from __future__ import annotations

import subprocess
import sys
from typing import Any


def run_python(
    *args: str, timeout: float, check: bool = False, **options: Any
) -> subprocess.CompletedProcess[str]:
    """Run this interpreter with ``args``, its output captured as text.

    :param timeout: Seconds the program may take.
    :param check: Raise :class:`subprocess.CalledProcessError` if it fails.
    :param options: More ``subprocess.run`` options, such as ``cwd`` and ``env``.
    """
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
        **options,
    )

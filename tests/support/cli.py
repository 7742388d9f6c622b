"""The one way the tests run the tokenstore-sql command line: the ``cli`` fixture.

A run happens in the test's process by default, through click's ``CliRunner``: the
command parses, calls the library and prints exactly as under ``python -m tokenstore_sql``,
without a new interpreter per call. ``process=True`` runs a real process instead, for a
test about the process itself: what ``python -m`` or the console script prints as its
usage, exit statuses a shell sees, several processes at once.

Either way the result has ``returncode``, ``stdout`` and ``stderr``, the environment
holds no ``TOKENSTORE_SQL_URL`` or ``TOKENSTORE_SQL_KEYS`` but those the call gives, and
every output is kept so that a test can check that no secret was ever printed.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from click.testing import CliRunner
from sqlalchemy import URL

from tokenstore_sql.cli import main

# The variables a run starts without, unless the call gives them.
CLEARED = ("TOKENSTORE_SQL_URL", "TOKENSTORE_SQL_KEYS")


@dataclass(frozen=True)
class Run:
    """One run of the command line: its exit status and what it printed."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """Both streams, stdout first."""
        return self.stdout + self.stderr


class Cli:
    """Runs the command line and keeps every output for later checks."""

    def __init__(self) -> None:
        self.results: list[Run] = []

    def __call__(
        self,
        *args: str,
        env_url: URL | str | None = None,
        keys: str | None = None,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
        process: bool = False,
        program: Sequence[str] | None = None,
        timeout: float = 120,
    ) -> Run:
        """Run ``tokenstore-sql ARGS``; ``program`` (a console script, say) implies a process."""
        given = dict(env or {})
        if env_url is not None:
            given["TOKENSTORE_SQL_URL"] = (
                env_url.render_as_string(hide_password=False)
                if isinstance(env_url, URL)
                else env_url
            )
        if keys is not None:
            given["TOKENSTORE_SQL_KEYS"] = keys
        if process or program is not None:
            run = self._in_a_process(args, given, input, program, timeout)
        else:
            run = self._in_this_process(args, given, input)
        self.results.append(run)
        return run

    def ok(self, *args: str, **options: Any) -> Run:
        """Run as :meth:`__call__` does, and assert that the run succeeded."""
        run = self(*args, **options)
        assert run.returncode == 0, (run.args, run.output)
        return run

    def everything_printed(self) -> str:
        """All stdout and stderr of every run so far."""
        return "\n".join(run.output for run in self.results)

    @staticmethod
    def _in_this_process(args: tuple[str, ...], given: dict[str, str], input: str | None) -> Run:
        env: dict[str, str | None] = {name: None for name in CLEARED}
        env.update(given)
        # pytest's live logging (--log-cli-level) puts its own stdout back for each record
        # it shows, which would take the command's output away from the runner
        logging.disable(logging.CRITICAL)
        try:
            result = CliRunner().invoke(main, list(args), env=env, input=input)
        finally:
            logging.disable(logging.NOTSET)
        stderr = result.stderr
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            # a bug keeps its traceback, as the real process would print it
            assert result.exc_info is not None
            stderr += "".join(traceback.format_exception(*result.exc_info))
        return Run(args, result.exit_code, result.stdout, stderr)

    @staticmethod
    def _in_a_process(
        args: tuple[str, ...],
        given: dict[str, str],
        input: str | None,
        program: Sequence[str] | None,
        timeout: float,
    ) -> Run:
        env = {name: value for name, value in os.environ.items() if name not in CLEARED}
        env.update(given)
        completed = subprocess.run(
            [*(program or [sys.executable, "-m", "tokenstore_sql"]), *args],
            capture_output=True,
            text=True,
            env=env,
            input=input,
            timeout=timeout,
            check=False,
        )
        return Run(args, completed.returncode, completed.stdout, completed.stderr)

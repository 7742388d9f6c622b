"""The README's commands are the ones CI and a new user run."""

from __future__ import annotations

import os
import re
from pathlib import Path

from tests.support import REPO_ROOT
from tests.support.processes import run_python


def _readme_commands() -> list[str]:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## On a fresh machine", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(python3 -m venv[^\n]+)\n```", section)


def test_readme_gives_a_run_command_and_a_test_command() -> None:
    commands = _readme_commands()
    assert len(commands) == 2
    assert "examples/quickstart.py" in commands[0]
    assert commands[1].endswith("pytest")


def test_ci_runs_the_readme_test_command_as_written() -> None:
    ci_lines = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert _readme_commands()[1] in ci_lines


def test_quickstart_stores_and_reads_back_without_showing_tokens(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TOKENSTORE_SQL_URL"}
    result = run_python(
        str(REPO_ROOT / "examples" / "quickstart.py"), cwd=tmp_path, env=env, timeout=60, check=True
    )
    assert "stored 2 resource servers" in result.stdout
    assert "auth.globus.org: scope='openid profile email'" in result.stdout
    assert "removed transfer.api.globus.org: True; left: ['auth.globus.org']" in result.stdout
    assert (tmp_path / "tokenstore-quickstart.db").exists()
    # the tokens are random hex: no run of 32 hex digits may be printed
    assert not re.search(r"[0-9a-f]{32}", result.stdout)


def test_the_use_snippet_runs_as_written(tmp_path: Path) -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    snippet = readme.split("\n## Use\n", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    result = run_python("-c", snippet, cwd=tmp_path, timeout=60, check=True)
    assert result.stdout.splitlines() == [
        "urn:globus:auth:scope:transfer.api.globus.org:all",
        "['transfer.api.globus.org']",
        "[]",
    ]


def test_the_readme_is_a_landing_page_whose_links_lead_somewhere() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 170
    targets = re.findall(r"\]\(([^)#:]+)\)", readme)
    assert len(targets) >= 15
    for target in targets:
        assert (REPO_ROOT / target).exists(), target
    assert "docs/getting-started.md" in targets

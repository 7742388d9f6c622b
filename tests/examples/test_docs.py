"""The documentation's examples run as written, and its reference leaves no public name out.

Every Python and shell block in ``docs/**/*.md``, ``README.md`` and ``SECURITY.md`` runs
here, in a temporary directory, with ``TOKENSTORE_SQL_URL`` naming an empty database.
Markers on the lines just above a block's fence change that (``% marker`` in the docs, a
MyST comment, or ``<!-- marker -->`` in files GitHub renders):

- ``not-run: REASON``: the block cannot run in a test (it needs a Globus login, a
  server of its own, or runs for minutes). It is checked for syntax instead (Python's
  parser, ``bash -n``), the reason must say why, and the count of such blocks is pinned
  below, so that none is added unnoticed.
- ``run-on: postgresql``: the block runs against the PostgreSQL test server rather than
  SQLite.
- ``setup: NAME``: a function of ``SETUPS`` prepares the database or files first.

The example database URLs the docs use (``EXAMPLE_URLS``) stand for that empty database.
A ``console`` block runs its ``$`` lines; every output line it shows (but ``...``) must
appear in what they print.
"""

from __future__ import annotations

import ast
import contextlib
import fcntl
import importlib
import importlib.util
import os
import pkgutil
import re
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

import tokenstore_sql
from tests.support import REPO_ROOT
from tests.support.browser import require_browser
from tests.support.sdk_files import JSONTokenStorage
from tokenstore_sql import SQLAlchemyTokenStorage, TokenStorageData

ROOT = REPO_ROOT
DOCS = ROOT / "docs"
RUNNABLE = {"python", "sh", "console"}
EXAMPLE_URLS = (
    "postgresql+psycopg://app@db.internal/app",
    "postgresql+psycopg://app@db/app",
)
# How many blocks cannot run here; a change to it is a decision, made here on purpose.
NOT_RUN_COUNT = 18

_FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```$", re.M | re.S)
_MARKER = re.compile(r"^(?:% |<!-- )(not-run|run-on|setup): (.+?)(?: -->)?$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    language: str
    code: str
    markers: dict[str, str]

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _blocks() -> list[Block]:
    found = []
    for path in [ROOT / "README.md", ROOT / "SECURITY.md", *sorted(DOCS.rglob("*.md"))]:
        if "_build" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        for match in _FENCE.finditer(text):
            if match.group(1) not in RUNNABLE:
                continue
            before = text[: match.start()].splitlines()
            markers = {}
            while before and (marker := _MARKER.match(before[-1].strip())):
                markers[marker.group(1)] = marker.group(2).strip()
                before.pop()
            line = text.count("\n", 0, match.start()) + 1
            found.append(Block(path, line, match.group(1), match.group(2), markers))
    return found


BLOCKS = _blocks()


def _runs_on(block: Block) -> object:
    backend = block.markers.get("run-on", "sqlite")
    return pytest.param(block, backend, id=block.name, marks=getattr(pytest.mark, backend))


# Setups: each gets the test directory and the database URL, and returns variables to set.
def _tokens_in_clear(directory: Path, url: URL) -> dict[str, str]:
    """A few users' tokens, stored without encryption."""
    with SQLAlchemyTokenStorage(url) as storage:
        for user in ("alice", "bob"):
            storage.namespace = f"user:{user}"
            storage.store_token_data_by_resource_server(_token_data(3))
    return {}


def _default_namespace_rows(directory: Path, url: URL) -> dict[str, str]:
    """Rows left in DEFAULT by an earlier GlobusApp provider, and the app's names."""
    with SQLAlchemyTokenStorage(url, namespace="DEFAULT") as storage:
        storage.store_token_data_by_resource_server(_token_data(2))
    return {"CLIENT_ID": "61338d24-54d5-408f-a10d-66c06b59f6d2", "APP_NAME": "my-app"}


def _per_user_token_files(directory: Path, url: URL) -> dict[str, str]:
    """tokens/alice.json: globus-sdk's JSONTokenStorage file with three resource servers."""
    (directory / "tokens").mkdir()
    storage = JSONTokenStorage(directory / "tokens" / "alice.json")
    storage.store_token_data_by_resource_server(_token_data(3))
    if hasattr(storage, "close"):  # older globus-sdk 3.x storages have no close()
        storage.close()
    return {}


SETUPS: dict[str, Callable[[Path, URL], dict[str, str]]] = {
    "tokens-in-clear": _tokens_in_clear,
    "default-namespace-rows": _default_namespace_rows,
    "per-user-token-files": _per_user_token_files,
}


def _token_data(count: int) -> dict[str, TokenStorageData]:
    servers = ["auth.globus.org", "transfer.api.globus.org", "groups.api.globus.org"]
    return {
        server: TokenStorageData(
            resource_server=server,
            identity_id="ae341a98-d274-11e5-b888-dbae3a8ba545",
            scope=f"urn:globus:auth:scope:{server}:all",
            access_token=os.urandom(16).hex(),
            refresh_token=os.urandom(16).hex(),
            expires_at_seconds=int(time.time()) + 3600,
            token_type="Bearer",
        )
        for server in servers[:count]
    }


def _console(code: str) -> tuple[str, list[str]]:
    """The script a console block's ``$``/``>`` lines make, and the output lines it shows."""
    script, shown = [], []
    for line in code.splitlines():
        if line.startswith(("$ ", "> ")):
            script.append(line[2:])
        elif line.strip() and line.strip() != "...":
            shown.append(line)
    return "\n".join(script), shown


def _environment(directory: Path, url: URL) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENSTORE_SQL_")}
    bin_dir = str(Path(sys.executable).parent)
    env.update(
        HOME=str(directory),
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        TOKENSTORE_SQL_URL=url.render_as_string(hide_password=False),
        PYTHONPATH=str(ROOT),
    )
    return env


@pytest.mark.parametrize(
    ("block", "backend"), [_runs_on(b) for b in BLOCKS if "not-run" not in b.markers]
)
def test_the_example_runs_as_written(
    block: Block, backend: str, empty_database_url: URL, tmp_path: Path
) -> None:
    url = empty_database_url
    env = _environment(tmp_path, url)
    if "setup" in block.markers:
        env.update(SETUPS[block.markers["setup"]](tmp_path, url))
    code = block.code
    for example in EXAMPLE_URLS:
        code = code.replace(example, env["TOKENSTORE_SQL_URL"])
    shown: list[str] = []
    if block.language == "python":
        command = [sys.executable, "-c", code]
    else:
        if block.language == "console":
            code, shown = _console(code)
        command = ["bash", "-c", f"set -eo pipefail\n{code}"]
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"{block.name} failed:\n{result.stdout}\n{result.stderr}"
    printed = result.stdout + result.stderr
    for line in shown:
        assert line in printed, f"{block.name} shows {line!r}; it printed:\n{printed}"


@pytest.mark.parametrize(
    "block", [pytest.param(b, id=b.name) for b in BLOCKS if "not-run" in b.markers]
)
def test_an_example_that_cannot_run_here_is_at_least_valid(block: Block) -> None:
    _check_syntax(block)


def _check_syntax(block: Block) -> None:
    if block.language == "python":
        ast.parse(block.code, filename=block.name)
        return
    code = _console(block.code)[0] if block.language == "console" else block.code
    result = subprocess.run(["bash", "-n", "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, f"{block.name}: {result.stderr}"


def test_blocks_that_do_not_run_say_why_and_are_counted() -> None:
    not_run = [b for b in BLOCKS if "not-run" in b.markers]
    for block in not_run:
        assert len(block.markers["not-run"].split()) >= 3, f"{block.name}: say why"
    assert len(not_run) == NOT_RUN_COUNT, [b.name for b in not_run]
    for block in BLOCKS:
        assert set(block.markers) <= {"not-run", "run-on", "setup"}, block.name
        assert block.markers.get("setup", next(iter(SETUPS))) in SETUPS, block.name
    # Most examples run: the markers are the exception.
    assert len(BLOCKS) >= 2 * NOT_RUN_COUNT - 10


def test_the_block_finder_sees_markers_and_languages() -> None:
    names = {b.name for b in BLOCKS}
    assert "docs/getting-started.md" in " ".join(names)
    languages = {b.language for b in BLOCKS}
    assert languages == RUNNABLE
    assert any(b.markers.get("run-on") == "postgresql" for b in BLOCKS)
    script, shown = _console("$ echo a\n> echo b\na\n...\n")
    assert (script, shown) == ("echo a\necho b", ["a"])


# The reference: every public name must be in the built site's inventory.
SPHINX_BUILD = (sys.executable, "-m", "sphinx", "-W", "-n", "--keep-going", "-q", "-b", "html")
SCREENSHOTS = ("signed-out", "signed-in", "profile", "logged-out")


def _documented_modules() -> tuple[str, ...]:
    """The named modules of the reference, as the docs' extension lists them."""
    path = DOCS / "_ext" / "tokenstore_schema.py"
    spec = importlib.util.spec_from_file_location("tokenstore_schema", path)
    assert spec is not None
    assert spec.loader is not None
    extension = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(extension)
    return tuple(extension.DOCUMENTED_MODULES)


# The named modules whose names the reference documents; the extension reads the same
# list for the errors page, so the two cannot drift apart.
PUBLIC_MODULES = ("errors", *_documented_modules())


def _generate_pictures() -> None:
    """Draw the charts, and take the screenshots unless a checkout already has them."""
    command = [sys.executable, str(DOCS / "generate.py")]
    shots = DOCS / "_generated" / "screenshots"
    if all((shots / f"{page}.png").exists() for page in SCREENSHOTS):
        command += ["--only", "charts"]
    else:
        require_browser("the docs build to take the example app's screenshots")
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr


# The tests that read the built site share one build where they share a worker.
ON_THE_SITE = pytest.mark.xdist_group("docs-site")


@contextlib.contextmanager
def _docs_lock() -> Iterator[None]:
    """Hold a lock on docs/_generated: workers (or runs) building at once take turns."""
    folder = DOCS / "_generated"
    folder.mkdir(exist_ok=True)
    with (folder / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built as CI builds it (warnings are errors, references must resolve)."""
    out = tmp_path_factory.mktemp("html")
    with _docs_lock():  # one build at a time draws into docs/_generated and reads it
        _generate_pictures()
        result = subprocess.run(
            [*SPHINX_BUILD, "-d", str(out / ".doctrees"), str(DOCS), str(out)],
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def documented(site: Path) -> set[str]:
    """The Python names in the site's inventory."""
    return set(_inventory(site / "objects.inv"))


def _inventory(path: Path) -> Iterator[str]:
    raw = path.read_bytes()
    header_end = 0
    for _ in range(4):  # four lines of header, then zlib-compressed entries
        header_end = raw.index(b"\n", header_end) + 1
    for line in zlib.decompress(raw[header_end:]).decode().splitlines():
        name, role = line.split(" ", 2)[:2]
        if role.startswith("py:"):
            yield name


def _public_names(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    listed = getattr(module, "__all__", None)
    if listed is not None:
        return list(listed)
    # Without __all__: what the module's own source defines at top level.
    tree = ast.parse(Path(str(module.__file__)).read_text(encoding="utf-8"))
    names = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
    return [name for name in names if not name.startswith("_")]


def _where(module_name: str, name: str) -> set[str]:
    """The names under which the reference may document ``module.name``."""
    value = getattr(importlib.import_module(module_name), name)
    places = {f"{module_name}.{name}"}
    home = getattr(value, "__module__", None)
    if home and home.startswith("tokenstore_sql") and hasattr(value, "__qualname__"):
        places.add(f"{home}.{value.__qualname__}")
        # a name re-exported by a documented module is documented there
        places |= {f"tokenstore_sql.{m}.{name}" for m in PUBLIC_MODULES}
        places.add(f"tokenstore_sql.{name}")
    return places


@ON_THE_SITE
@pytest.mark.parametrize(
    "module", ["tokenstore_sql", *(f"tokenstore_sql.{m}" for m in PUBLIC_MODULES)]
)
def test_every_public_name_is_in_the_reference(module: str, documented: set[str]) -> None:
    assert module in documented
    missing = [
        name
        for name in _public_names(module)
        if name != "__version__" or module != "tokenstore_sql"
        if not _where(module, name) & documented
    ]
    # autodoc leaves out what has no docstring, so a name missing here is undocumented
    assert not missing, f"not in the reference: {missing}"
    if module == "tokenstore_sql":
        assert "tokenstore_sql.__version__" in documented


@ON_THE_SITE
def test_every_module_of_the_package_is_in_the_reference(documented: set[str]) -> None:
    """Public or internal, each module has a place (internals.rst lists the internal ones)."""
    modules = [
        info.name
        for info in pkgutil.walk_packages(tokenstore_sql.__path__, "tokenstore_sql.")
        if not info.name.endswith("__main__") and ".contract." not in info.name
    ]
    assert len(modules) > 40
    assert not [name for name in modules if name not in documented]


@ON_THE_SITE
def test_the_cli_reference_shows_every_command(site: Path) -> None:
    from tokenstore_sql.cli import main

    page = (site / "reference" / "cli.html").read_text(encoding="utf-8")
    assert len(main.commands) >= 10
    for name, command in main.commands.items():
        assert f'id="tokenstore-sql-{name}"' in page, name
        for parameter in command.params:
            if parameter.param_type_name == "argument":
                assert parameter.human_readable_name in page, f"{name} {parameter.name}"
                continue
            for option in parameter.opts:
                assert f"cmdoption-tokenstore-sql-{name}-{option.lstrip('-')}" in page, option


def test_the_inventory_reader_reads_python_names_only(tmp_path: Path) -> None:
    entries = "tokenstore_sql.X py:class 1 api.html#$ -\nlabel std:label -1 a.html#b B\n"
    header = b"# Sphinx inventory version 2\n# Project: p\n# Version: 1\n# zlib\n"
    path = tmp_path / "objects.inv"
    path.write_bytes(header + zlib.compress(entries.encode()))
    assert list(_inventory(path)) == ["tokenstore_sql.X"]


def test_the_syntax_check_of_a_block_that_cannot_run_can_fail() -> None:
    broken_python = Block(ROOT / "x.md", 1, "python", "def f(:\n", {"not-run": "a b c"})
    with pytest.raises(SyntaxError):
        _check_syntax(broken_python)
    broken_shell = Block(ROOT / "x.md", 1, "sh", "if true; then\n", {"not-run": "a b c"})
    with pytest.raises(AssertionError):
        _check_syntax(broken_shell)

"""The built wheel: it ships the migrations and upgrades a database on its own."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support import REPO_ROOT
from tokenstore_sql import create_engine, schema

SHIPPED = (
    "tokenstore_sql/__init__.py",
    "tokenstore_sql/py.typed",
    "tokenstore_sql/migrations/env.py",
    "tokenstore_sql/migrations/script.py.mako",
    "tokenstore_sql/migrations/versions/0001_create_tokens.py",
)


def _run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _build_wheel(outdir: Path) -> Path:
    pytest.importorskip("build", reason="the wheel is built with `build` (the dev extra)")
    # No isolation: the build backend comes from the test environment, not the network.
    _run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(outdir)],
        cwd=REPO_ROOT,
    )
    wheels = list(outdir.glob("tokenstore_sql-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.mark.slow
def test_the_installed_wheel_upgrades_a_database_from_an_empty_directory(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path / "dist")

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for name in SHIPPED:
        assert name in names, f"{name} is missing from {wheel.name}"
    for revision in (REPO_ROOT / "migrations" / "versions").glob("*.py"):
        assert f"tokenstore_sql/migrations/versions/{revision.name}" in names

    target = (tmp_path / "installed").resolve()
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
    _run([*pip, "--target", str(target), str(wheel)], cwd=tmp_path)
    workdir = tmp_path / "empty"
    workdir.mkdir()
    # The wheel's copy comes first on the path, ahead of the editable checkout.
    env = {key: value for key, value in os.environ.items() if key != "TOKENSTORE_SQL_URL"}
    env["PYTHONPATH"] = str(target)

    upgraded = _run(
        [sys.executable, "-m", "tokenstore_sql", "upgrade", "--url", "sqlite:///x.db"],
        cwd=workdir,
        env=env,
    )
    located = _run(
        [
            sys.executable,
            "-c",
            "import tokenstore_sql, tokenstore_sql.schema as s;"
            "print(tokenstore_sql.__file__); print(s.migrations_dir())",
        ],
        cwd=workdir,
        env=env,
    )

    head = schema.head_revision()
    assert upgraded.stdout.strip() == f"database is at revision {head}"
    package_file, migrations = (Path(line).resolve() for line in located.stdout.splitlines())
    assert package_file.is_relative_to(target)
    assert migrations == target / "tokenstore_sql" / "migrations"
    engine = create_engine(f"sqlite:///{workdir / 'x.db'}")
    try:
        with engine.connect() as connection:
            assert schema.current_revision(connection) == head
    finally:
        engine.dispose()

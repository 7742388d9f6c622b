"""What a run ran on: machine, versions, and how each SQLite file syncs its commits."""

from __future__ import annotations

import contextlib
import os
import platform
import sqlite3
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from sqlalchemy import Engine


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> str:
    try:
        first = Path("/proc/meminfo").read_text().splitlines()[0]
        return f"{int(first.split()[1]) / 2**20:.0f} GiB RAM"
    except (OSError, IndexError, ValueError):
        return "unknown RAM"


def load() -> float | None:
    """Return the one-minute load average: how busy the machine was, the benchmark included."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # not available on this platform
        return None


def describe() -> dict[str, str]:
    """Describe the date, the machine and the versions that matter, as short strings."""
    packages = ("tokenstore-sql", "globus-sdk", "sqlalchemy", "psycopg", "pymysql")
    versions = [f"{name} {version(name)}" for name in packages]
    for name in ("aiosqlite", "aiomysql"):  # the async rows' drivers, where installed
        with contextlib.suppress(PackageNotFoundError):
            versions.append(f"{name} {version(name)}")
    versions.insert(0, f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}")
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{_cpu()}, {os.cpu_count()} cores, {_memory_gib()}, "
        f"{platform.system()} {platform.release()}",
        "versions": ", ".join(versions),
    }


def server_version(engine: Engine) -> str:
    """Ask the server for its version string."""
    with engine.connect() as connection:
        return str(connection.exec_driver_sql("SELECT VERSION()").scalar())


def sqlite_durability(engine: Engine | None = None, path: Path | None = None) -> dict[str, Any]:
    """Read the journal mode and ``synchronous`` level a storage's connections commit with.

    An engine is asked through its own pool (so its connect-time settings apply); a
    globus-sdk file is asked through a plain ``sqlite3.connect``, as that storage opens it.
    """
    if engine is not None:
        with engine.connect() as connection:
            mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
            level = connection.exec_driver_sql("PRAGMA synchronous").scalar()
    else:
        connection = sqlite3.connect(str(path))
        try:
            mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
            level = connection.execute("PRAGMA synchronous").fetchone()[0]
        finally:
            connection.close()
    return {"journal_mode": mode, "synchronous": level}

"""The top level is small, complete and honest; the rest is reachable by module name."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import tokenstore_sql

# Where each name that left the top level lives now.
MOVED = {
    "tokenstore_sql.models": ["TOKENS_TABLE", "VERSION_TABLE", "TokenRow", "metadata"],
    "tokenstore_sql.deploy": [
        "alembic_include_name",
        "alembic_include_name_for",
        "upgrade_connection",
    ],
    "tokenstore_sql.maintenance": ["prune", "stats", "RowCounts", "TokenStats"],
    "tokenstore_sql.rotation": ["rotate_keys", "RotationReport"],
    "tokenstore_sql.transfer": [
        "import_token_files",
        "export_token_file",
        "ImportReport",
        "ImportCount",
    ],
    "tokenstore_sql.locks": ["locked_transaction"],
    "tokenstore_sql.crypto": ["KeyRing"],
    "tokenstore_sql.refresh": ["refresh_once", "LockingRefreshTokenAuthorizer"],
    "tokenstore_sql.errors": ["ConfigurationError", "DatabaseOperationError", "TokenFileError"],
}


def test_the_top_level_has_about_twenty_names() -> None:
    assert 15 <= len(tokenstore_sql.__all__) <= 22
    assert sorted(tokenstore_sql.__all__) == tokenstore_sql.__all__


def test_every_public_name_resolves_and_dir_lists_the_lazy_ones() -> None:
    listed = dir(tokenstore_sql)
    for name in tokenstore_sql.__all__:
        assert name in listed
        assert getattr(tokenstore_sql, name) is not None


@pytest.mark.parametrize("module", sorted(MOVED))
def test_names_moved_off_the_top_level_live_in_their_module(module: str) -> None:
    loaded = importlib.import_module(module)
    for name in MOVED[module]:
        assert hasattr(loaded, name), f"{module}.{name}"
        assert name not in tokenstore_sql.__all__


def test_importing_the_package_loads_no_async_driver() -> None:
    code = (
        "import sys, tokenstore_sql; "
        "print(sorted(m for m in ('aiosqlite', 'aiomysql', 'sqlalchemy.ext.asyncio') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"

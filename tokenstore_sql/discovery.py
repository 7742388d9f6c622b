"""Where ``GlobusApp`` keeps its token files on this machine, and our databases beside them.

globus-sdk's ``GlobusApp`` writes ``<app dir>/<client id>/<app name>/[<environment>-]tokens.json``
(or ``.db``); ``SQLAlchemyTokenStorage.for_globus_app`` keeps its SQLite database in the
same place. Listing them is what ``tokenstore-sql discover`` does; reading a file is
:mod:`tokenstore_sql.formats`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .storage import APP_FILE_SUFFIX


def globus_app_dir(home: str | os.PathLike[str] | None = None) -> Path:
    """Where ``GlobusApp`` keeps its token files by default (its ``for_globus_app`` paths)."""
    if home is None and sys.platform == "win32":
        data_dir = os.getenv("LOCALAPPDATA", os.getenv("APPDATA"))
        base = Path(data_dir) if data_dir else Path.home() / "AppData" / "Local"
        return base / "globus" / "app"
    return Path(home if home is not None else Path.home()) / ".globus" / "app"


def discover_app_files(home: str | os.PathLike[str] | None = None) -> list[Path]:
    """List the token files at ``GlobusApp``'s default locations, in order.

    They are ``<app dir>/<client id>/<app name>/[<environment>-]tokens.json`` (or ``.db``).
    """
    base = globus_app_dir(home)
    found = (*base.glob("*/*/*tokens.json"), *base.glob("*/*/*tokens.db"))
    return sorted(path for path in found if path.is_file())


def discover_app_databases(home: str | os.PathLike[str] | None = None) -> list[Path]:
    """List the SQLite databases that this package keeps for ``GlobusApp``, in order.

    ``SQLAlchemyTokenStorage.for_globus_app`` writes them beside globus-sdk's own files,
    as ``[<environment>-]tokens.tokenstore.db``; they are tokenstore-sql databases to
    open with a ``sqlite:///`` URL, not files to import.
    """
    found = globus_app_dir(home).glob(f"*/*/*tokens{APP_FILE_SUFFIX}")
    return sorted(path for path in found if path.is_file())

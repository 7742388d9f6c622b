"""Import speed: a globus-sdk JSON token file of many namespaces into each database."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete

from tokenstore_sql.models import TokenRow

from .data import RESOURCE_SERVERS, by_resource_server, sdk_json_document

NOT_AVAILABLE = "not measured: import not available"
PREFIX = "import-"


def importer() -> Any:
    """Find the package's import function (None while the package has none)."""
    try:
        from tokenstore_sql.transfer import import_token_files
    except ImportError:
        return None
    return import_token_files


def write_import_file(workdir: Path, namespaces: int) -> Path:
    """Write a JSON token file (format 2.0) of ``namespaces`` namespaces, five tokens each."""
    path = workdir / f"import-{namespaces}.json"
    if not path.exists():
        tokens = by_resource_server()
        path.write_text(
            sdk_json_document({f"{PREFIX}{index:07d}": tokens for index in range(namespaces)}),
            encoding="utf-8",
        )
    return path


def _clear(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(delete(TokenRow).where(TokenRow.namespace.startswith(PREFIX)))


def measure_import(engine: Engine, path: Path, namespaces: int, repeats: int) -> dict[str, Any]:
    """Import ``path`` into an engine's database ``repeats`` times, each into no prior data."""
    run = importer()
    if run is None:
        return {"status": NOT_AVAILABLE}
    took = []
    for _ in range(repeats):
        _clear(engine)
        started = time.perf_counter()
        run(engine, [path])
        took.append(time.perf_counter() - started)
    _clear(engine)
    tokens = namespaces * len(RESOURCE_SERVERS)
    seconds = statistics.median(took)
    return {
        "status": "measured",
        "namespaces": namespaces,
        "tokens": tokens,
        "seconds": seconds,
        "tokens_per_second": tokens / seconds,
        "repeats": repeats,
    }

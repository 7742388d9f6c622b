"""Export the database as a JSON token file that globus-sdk's ``JSONTokenStorage`` reads.

The document is made whole before anything is written: a refusal (a namespace that
holds nothing, an ``extra`` a token file cannot keep) writes no file and nothing to a
stream. A file is written to a temporary file, synced and then linked or renamed into
place, so that no partial file holding tokens is ever left behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, TextIO

from sqlalchemy import Engine

from ._sdk import SDK_VERSION
from .codec import DATA_COLUMNS, token_data_from_row
from .errors import SchemaOutOfDateError, TokenFileError
from .execution import run_transaction
from .messages import describe_key
from .models import Placement
from .schema import ensure_schema
from .settings import DEFAULT_SETTINGS, StoreSettings
from .statements import statements_for

_FIELDS: Final = frozenset({"resource_server", *DATA_COLUMNS}) - {"extra"}
_EXISTS: Final = "already exists; choose another path, or replace it with --force (overwrite=True)"


def export_token_file(
    engine: Engine,
    path: str | os.PathLike[str],
    settings: StoreSettings = DEFAULT_SETTINGS,
    *,
    namespaces: Sequence[str] | None = None,
    overwrite: bool = False,
) -> dict[str, int]:
    """Write token data to a file that globus-sdk's ``JSONTokenStorage`` reads as it is.

    The file (format 2.0) is created readable and writable by its owner only; ``extra``
    fields are written beside the others, where ``TokenStorageData.from_dict`` finds them.

    :param settings: the ``keys`` that open the database's encrypted tokens, the
        ``placement`` of the tables and the ``retry`` policy
    :param namespaces: export these namespaces only (default: every namespace)
    :param overwrite: replace an existing file (default: refuse)
    :returns: the number of tokens written, by namespace
    :raises TokenFileError: the file exists or cannot be written, a namespace asked for
        holds no token data, or some ``extra`` cannot be written; no file is written
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise TokenFileError(str(path), _EXISTS)
    text, written = _token_document(engine, str(path), namespaces, settings)
    _write_private(target, text, overwrite)
    return written


def export_token_stream(
    engine: Engine,
    stream: TextIO,
    settings: StoreSettings = DEFAULT_SETTINGS,
    *,
    namespaces: Sequence[str] | None = None,
) -> dict[str, int]:
    """Write the JSON of :func:`export_token_file` to an open text stream (stdout, say).

    The whole document is made first and written in one call, followed by a newline:
    on a refusal, nothing has been written to ``stream``.

    :returns: the number of tokens written, by namespace
    :raises TokenFileError: naming the stream, as :func:`export_token_file` would
    """
    where = str(getattr(stream, "name", "<stream>"))
    text, written = _token_document(engine, where, namespaces, settings)
    stream.write(text + "\n")
    stream.flush()
    return written


def _token_document(
    engine: Engine, where: str, namespaces: Sequence[str] | None, settings: StoreSettings
) -> tuple[str, dict[str, int]]:
    """Read token data into a ``JSONTokenStorage`` document; ``where`` names it in errors."""
    keys, placement = settings.keys, settings.placement
    statement = statements_for(placement).select_tokens(
        None if namespaces is None else sorted(set(namespaces))
    )
    rows = (
        run_transaction(
            engine,
            "export token data",
            lambda connection: connection.execute(statement).mappings().all(),
            writes=False,
            retry=settings.retry,
        )
        if has_schema(engine, placement, create=False)
        else []
    )
    data: dict[str, dict[str, Any]] = {name: {} for name in namespaces or ()}
    for row in rows:
        namespace, resource_server = row["namespace"], row["resource_server"]
        token_data = token_data_from_row(namespace, row, keys)
        clashes = sorted(_FIELDS.intersection(token_data.extra))
        if clashes:
            raise TokenFileError(
                where,
                f"extra of {describe_key(namespace, resource_server)} has "
                f"the key {clashes[0]!r}, which a token file cannot keep apart from the field",
            )
        data.setdefault(namespace, {})[resource_server] = token_data.to_dict(include_extra=True)
    empty = sorted(name for name, by_resource_server in data.items() if not by_resource_server)
    if empty:
        raise TokenFileError(
            where, f"not written: no token data in namespace(s) {', '.join(map(repr, empty))}"
        )
    document = {"data": data, "format_version": "2.0", "globus-sdk.version": SDK_VERSION}
    return json.dumps(document), {namespace: len(by_rs) for namespace, by_rs in data.items()}


def _write_private(target: Path, text: str, overwrite: bool) -> None:
    """Write a file readable by its owner only, whole or not at all.

    The text goes to a temporary file (mode 0600) in the target's directory and is
    synced to disk; then it is linked in as the target (which fails if the target exists)
    or, with ``overwrite``, renamed over it. A failure on the way (a missing directory, no
    permission, a full disk) leaves no partial file behind, tokens in it or not.

    :raises TokenFileError: naming the path and the operating system's reason
    """
    temporary: str | None = None
    try:
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(temporary, target)
        else:
            os.link(temporary, target)
    except FileExistsError:
        raise TokenFileError(str(target), _EXISTS) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise TokenFileError(str(target), f"cannot be written: {reason}") from None
    finally:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)


def has_schema(engine: Engine, placement: Placement, *, create: bool) -> bool:
    """Check the schema (creating it if allowed); False for an empty database left empty."""
    try:
        ensure_schema(engine, placement, create=create)
    except SchemaOutOfDateError as exc:
        if create or exc.current is not None:
            raise
        return False
    return True

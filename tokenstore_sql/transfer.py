"""Import globus-sdk token files into the database (export: :mod:`tokenstore_sql.exporting`).

An import reads and checks every file first, then applies them in the order given, in
one transaction: either all of it is written or none. Each token meets what the
database (or an earlier file of the same import) holds under its namespace and resource
server; identical data is kept as it is, so running an import again changes nothing.
Without keys, an import into a table that holds encrypted tokens is refused unless clear
text is allowed explicitly: a forgotten key must not quietly leave tokens unencrypted.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypedDict

from sqlalchemy import Connection, Engine

from .codec import (
    check_key,
    open_tokens,
    seal_tokens,
    stamped,
)
from .crypto import KeyRing
from .errors import (
    ConfigurationError,
    EncryptionKeyError,
)
from .execution import run_transaction, upsert_in
from .exporting import export_token_file, export_token_stream, has_schema
from .formats import TokenFile, read_token_file
from .import_plan import (
    ImportCount,
    Key,
    file_rows,
    merge_rows,
    refuse_mixed_sources,
    refuse_other_identities,
)
from .settings import DEFAULT_SETTINGS, StoreSettings
from .statements import TokenStatements, statements_for

if TYPE_CHECKING:
    from typing_extensions import Unpack

CONFLICT_POLICIES: Final = ("newer", "skip", "overwrite")
"""What an import does with a token the database already holds: keep the one that
expires later, keep the database's, or take the file's."""
# Namespaces per SELECT ... IN (...), well inside every backend's parameter limit.
_NAMESPACES_PER_SELECT: Final = 500
_ENCRYPTED_TABLE: Final = (
    "the token table holds encrypted tokens, but no encryption keys were given; pass the "
    "keys (--keys, keys=), or --plaintext (allow_plaintext=True) to store these "
    "tokens in clear text anyway"
)


class ImportOptions(TypedDict, total=False):
    """The options of an import: :func:`import_token_files`, ``TokenStore.import_files``.

    :ivar namespace: put all token data into this namespace instead of the files' own
    :ivar on_conflict: ``newer`` (the default) keeps the data that expires later,
        ``skip`` keeps the database's, ``overwrite`` takes the file's
    :ivar dry_run: work out and report everything, write nothing
    :ivar identity_from_config: fill a missing ``identity_id`` from the identity that
        globus-cli records in its SQLite database
    :ivar progress: called with each path once the file has been read
    :ivar merge: let several files supply the same namespace and resource server, later
        files meeting earlier ones by ``on_conflict`` (one identity per namespace still)
    :ivar allow_plaintext: without ``keys``, store the tokens in clear text even where
        the table holds encrypted tokens (default: refuse)
    """

    namespace: str | None
    on_conflict: str
    dry_run: bool
    identity_from_config: bool
    progress: Callable[[str], None] | None
    merge: bool
    allow_plaintext: bool


@dataclass
class ImportReport:
    """What an import did (or, on a dry run, would do), file by file."""

    files: list[TokenFile]
    counts: list[ImportCount]
    dry_run: bool


def read_token_files(
    paths: Iterable[str | os.PathLike[str]],
    *,
    identity_from_config: bool = False,
    progress: Callable[[str], None] | None = None,
) -> list[TokenFile]:
    """Read and check every file before anything is written; ``progress`` hears each path.

    :raises ImportFormatError: at the first file that cannot be read
    """
    files = []
    for path in paths:
        files.append(read_token_file(path, identity_from_config=identity_from_config))
        if progress is not None:
            progress(str(path))
    return files


def import_token_files(
    engine: Engine,
    paths: Iterable[str | os.PathLike[str]],
    settings: StoreSettings = DEFAULT_SETTINGS,
    **options: Unpack[ImportOptions],
) -> ImportReport:
    """Import globus-sdk token files (any format, detected by content) in one transaction.

    Tokens of different users never mix: two files that supply the same namespace and
    resource server are refused (unless ``merge``), and so is a namespace that would
    hold the tokens of two identities (from two files, or a file and the database).

    :param paths: JSON or SQLite token files, applied in this order
    :param settings: the database's ``keys`` (new tokens are sealed with the first,
        stored ones opened for comparison), the tables' ``placement``, the ``retry``
        policy; the schema is created on an empty database (unless ``dry_run``) whatever
        ``create_schema`` says, since an import is an explicit request to fill it
    :param options: ``namespace``, ``on_conflict``, ``dry_run``, ``identity_from_config``,
        ``progress``, ``merge``, ``allow_plaintext``, as described in :class:`ImportOptions`
    :raises ImportFormatError: a file is unreadable, corrupt or of an unknown format, or
        the files would mix tokens as said above; the database is unchanged
    :raises EncryptionKeyError: no ``keys`` (nor ``allow_plaintext``) for a
        table that holds encrypted tokens, in any namespace; nothing is written, even on
        a dry run
    :raises ConfigurationError: ``on_conflict`` is not one of the three
    :raises TypeError: an option that is not one of those (say, a misspelt one)
    """
    unknown = sorted(set(options) - ImportOptions.__optional_keys__)
    if unknown:
        raise TypeError(f"import_token_files() got an unexpected keyword argument {unknown[0]!r}")
    namespace, dry_run = options.get("namespace"), options.get("dry_run", False)
    on_conflict = options.get("on_conflict", "newer")
    if on_conflict not in CONFLICT_POLICIES:
        raise ConfigurationError(f"on_conflict must be one of {', '.join(CONFLICT_POLICIES)}")
    if namespace is not None:
        check_key("namespace", namespace)
    files = read_token_files(
        paths,
        identity_from_config=options.get("identity_from_config", False),
        progress=options.get("progress"),
    )
    plan = [file_rows(token_file, namespace) for token_file in files]
    refuse_mixed_sources(plan, merge=options.get("merge", False))
    targets = sorted({count.namespace for rows in plan for count, _ in rows})
    keys, placement = settings.keys, settings.placement
    statements = statements_for(placement)
    allow_plaintext = options.get("allow_plaintext", False)

    def apply(connection: Connection) -> list[ImportCount]:
        if schema_found and keys is None and not allow_plaintext:
            _refuse_clear_text(connection, statements)
        current = _existing_rows(connection, statements, targets, keys) if schema_found else {}
        refuse_other_identities(plan, current)
        loaded = dict(current)
        counts = []
        for planned in plan:
            for count, rows in planned:
                counts.append(merge_rows(count, rows, current, on_conflict))
        changed = [row for key, row in current.items() if loaded.get(key) is not row]
        if changed and not dry_run:
            writes = stamped([dict(row) for row in changed])
            for row in writes:
                seal_tokens(row, keys)
            upsert_in(connection, statements, writes)
        return counts

    schema_found = has_schema(engine, placement, create=not dry_run)
    counts = run_transaction(
        engine, "import token files", apply, writes=not dry_run, retry=settings.retry
    )
    return ImportReport(files, counts, dry_run)


def _refuse_clear_text(connection: Connection, statements: TokenStatements) -> None:
    """Refuse to add clear-text tokens to a table that holds encrypted ones.

    :raises EncryptionKeyError: some row of the table, in any namespace, is encrypted
    """
    if connection.execute(statements.select_rows_to_rekey(None, None, 1)).first() is not None:
        raise EncryptionKeyError(_ENCRYPTED_TABLE)


def _existing_rows(
    connection: Connection,
    statements: TokenStatements,
    namespaces: Sequence[str],
    keys: KeyRing | None,
) -> dict[Key, Any]:
    """Read the stored rows of some namespaces, tokens opened for comparison."""
    found: dict[Key, Any] = {}
    for start in range(0, len(namespaces), _NAMESPACES_PER_SELECT):
        chunk = namespaces[start : start + _NAMESPACES_PER_SELECT]
        for row in connection.execute(statements.select_tokens(chunk)).mappings():
            found[row["namespace"], row["resource_server"]] = open_tokens(
                row["namespace"], row, keys
            )
    return found


__all__ = [
    "CONFLICT_POLICIES",
    "ImportCount",
    "ImportOptions",
    "ImportReport",
    "export_token_file",
    "export_token_stream",
    "import_token_files",
    "read_token_files",
]

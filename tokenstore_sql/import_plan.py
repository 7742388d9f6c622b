"""What an import does with each file's token data, before any I/O: the plan and its rules.

Each file's rows are checked as a storage would check them and grouped by the namespace
they go to; files that would mix tokens are refused (two files for one namespace and
resource server, unless merging; one namespace for two identities); and each row meets
what is already there by the conflict policy. The database side is in
:mod:`tokenstore_sql.transfer`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .codec import DATA_COLUMNS, check_key, rows_for_storage
from .errors import ImportFormatError, InvalidTokenDataError
from .formats import TokenFile

Key = tuple[str, str]
# One file's plan: for each namespace it supplies, what happened to it and its rows.
FilePlan = list[tuple["ImportCount", list[dict[str, Any]]]]


@dataclass
class ImportCount:
    """What an import did with one namespace of one file.

    ``added``: new in the database; ``updated``: replaced what was there; ``kept``: the
    same data was there already; ``skipped``: the database's differing data was kept.
    """

    path: str
    kind: str
    source_namespace: str
    namespace: str
    added: int = 0
    updated: int = 0
    kept: int = 0
    skipped: int = 0


def file_rows(token_file: TokenFile, namespace: str | None) -> FilePlan:
    """Check one file's token data as the storage would, and give its rows by namespace."""
    planned = []
    seen: dict[Key, str] = {}
    for source, by_resource_server in token_file.tokens.items():
        target = source if namespace is None else namespace
        try:
            rows = rows_for_storage(check_key("namespace", target), by_resource_server)
        except InvalidTokenDataError as exc:
            where = f"namespace {source!r}" if namespace is None else f"mapped {source!r}"
            raise ImportFormatError(token_file.path, f"{where}: {exc}") from None
        for row in rows:
            other = seen.setdefault((target, row["resource_server"]), source)
            if other != source:
                raise ImportFormatError(
                    token_file.path,
                    f"namespaces {other!r} and {source!r} both hold resource server "
                    f"{row['resource_server']!r}, so they cannot share namespace {target!r}",
                )
        planned.append((ImportCount(token_file.path, token_file.kind, source, target), rows))
    return planned


def refuse_mixed_sources(plan: list[FilePlan], *, merge: bool) -> None:
    """Refuse two files that supply one key (unless merging) or one namespace's identity."""
    supplier: dict[Key, str] = {}
    identity: dict[str, tuple[str, str]] = {}  # namespace -> (identity, file)
    for file_rows in plan:
        for count, rows in file_rows:
            for row in rows:
                key = (row["namespace"], row["resource_server"])
                earlier = supplier.setdefault(key, count.path)
                if earlier != count.path and not merge:
                    raise ImportFormatError(
                        count.path,
                        f"{earlier} also supplies namespace {key[0]!r}, resource server "
                        f"{key[1]!r}; import the files one at a time, map them apart with "
                        "--namespace, or pass --merge to combine them by --on-conflict",
                    )
                found = row["identity_id"]
                if found is None:
                    continue
                held, holder = identity.setdefault(key[0], (found, count.path))
                if held != found and holder != count.path:
                    raise ImportFormatError(
                        count.path,
                        f"its tokens for namespace {key[0]!r} belong to another identity "
                        f"than those from {holder}; give each user a namespace of their own "
                        "(--namespace)",
                    )


def refuse_other_identities(plan: list[FilePlan], current: dict[Key, Any]) -> None:
    """Refuse tokens for a namespace whose stored tokens belong to another identity."""
    stored: dict[str, str] = {}
    for (stored_namespace, _), row in current.items():
        if row["identity_id"] is not None:
            stored.setdefault(stored_namespace, row["identity_id"])
    for file_rows in plan:
        for count, rows in file_rows:
            for row in rows:
                held = stored.get(row["namespace"])
                if held is not None and row["identity_id"] not in (None, held):
                    raise ImportFormatError(
                        count.path,
                        f"namespace {row['namespace']!r} in the database holds the tokens of "
                        "another identity; import into a namespace of this user's own "
                        "(--namespace)",
                    )


def merge_rows(
    count: ImportCount, rows: list[dict[str, Any]], current: dict[Key, Any], on_conflict: str
) -> ImportCount:
    """Meet each row with what is there by ``on_conflict``; count it; update ``current``."""
    for row in rows:
        key = (row["namespace"], row["resource_server"])
        there = current.get(key)
        if there is None:
            count.added += 1
        elif all(there[column] == row[column] for column in DATA_COLUMNS):
            count.kept += 1
            continue
        elif on_conflict == "overwrite" or (
            on_conflict == "newer" and row["expires_at_seconds"] > there["expires_at_seconds"]
        ):
            count.updated += 1
        else:
            count.skipped += 1
            continue
        current[key] = row
    return count

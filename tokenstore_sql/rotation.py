"""Re-encrypting stored tokens: key rotation, first encryption, and decryption.

Rows are rewritten in batches, each batch one transaction, walking the primary key in
order. A row is rewritten only if its key id is unchanged since it was read, so a
concurrent writer is never overwritten with older tokens. Progress lives in the rows
themselves (their key id), so an interrupted rotation resumes by running it again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy import Connection, Engine

from .checks import checked_number
from .codec import open_tokens, seal_tokens
from .crypto import KeyRing
from .errors import EncryptionKeyError, UnreadableTokenDataError
from .execution import run_transaction
from .schema import ensure_schema
from .settings import DEFAULT_SETTINGS, StoreSettings
from .statements import TokenStatements, statements_for

DEFAULT_BATCH_SIZE = 500
"""Rows re-encrypted per transaction by :func:`rotate_keys`."""


@dataclass
class RotationReport:
    """What a rotation did.

    :ivar rewritten: rows now under the target key (or in clear, when decrypting)
    :ivar skipped: rows another writer changed in the meantime (left as written)
    :ivar unreadable: (namespace, resource server) of rows no given key could open
    """

    rewritten: int = 0
    skipped: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)


def rotate_keys(
    engine: Engine,
    settings: StoreSettings = DEFAULT_SETTINGS,
    *,
    decrypt: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> RotationReport:
    """Bring every row's tokens under the first of the settings' keys (or into clear text).

    Rows stored in clear are encrypted; rows under any key of the ring are re-encrypted
    with its first key. Afterwards, keys other than the first can be dropped.

    :param settings: the ``keys`` (every key that sealed a row must be among them), the
        ``placement`` of the tables and the ``retry`` policy
    :param decrypt: store every token in clear instead (to leave encryption behind)
    :param batch_size: rows per transaction
    :raises EncryptionKeyError: no ``keys``, and not ``decrypt``
    :raises ConfigurationError: ``batch_size`` is not a whole number of at least 1
    """
    keys, placement = settings.keys, settings.placement
    if keys is None and not decrypt:
        raise EncryptionKeyError("rotating needs encryption keys (or decrypt=True)")
    checked_number("batch_size", batch_size, minimum=1, whole=True, unit="rows")
    ensure_schema(engine, placement, create=False)
    statements = statements_for(placement)
    target = None if decrypt or keys is None else keys.primary_key_id
    target_keys = None if decrypt else keys
    report = RotationReport()
    after: tuple[str, str] | None = None
    while True:
        statement = statements.select_rows_to_rekey(target, after, batch_size)
        batch = run_transaction(
            engine,
            "rotate encryption keys",
            partial(_rotate_batch, statements, statement, keys, target_keys),
            writes=True,
            retry=settings.retry,
        )
        report.rewritten += batch.rewritten
        report.skipped += batch.skipped
        report.unreadable += batch.unreadable
        if batch.last is None:
            return report
        after = batch.last


@dataclass
class _Batch(RotationReport):
    last: tuple[str, str] | None = None


def _rotate_batch(
    statements: TokenStatements,
    statement: Any,
    keys: KeyRing | None,
    target_keys: KeyRing | None,
    connection: Connection,
) -> _Batch:
    rows = connection.execute(statement).mappings().all()
    batch = _rewrite(connection, statements, rows, keys, target_keys)
    if rows:
        batch.last = (rows[-1]["namespace"], rows[-1]["resource_server"])
    return batch


def _rewrite(
    connection: Connection,
    statements: TokenStatements,
    rows: Any,
    keys: KeyRing | None,
    target_keys: KeyRing | None,
) -> _Batch:
    batch = _Batch()
    for row in rows:
        namespace = row["namespace"]
        try:
            values = open_tokens(namespace, row, keys)
        except UnreadableTokenDataError:
            batch.unreadable.append((namespace, row["resource_server"]))
            continue
        values["namespace"] = namespace
        seal_tokens(values, target_keys)
        result = connection.execute(
            statements.update_row_tokens(namespace, row["resource_server"], row["token_key_id"]),
            {
                "access_token": values["access_token"],
                "refresh_token": values["refresh_token"],
                "token_key_id": values["token_key_id"],
            },
        )
        if result.rowcount:
            batch.rewritten += 1
        else:
            batch.skipped += 1
    return batch

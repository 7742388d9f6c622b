"""Token data to row values and back: sealing and opening tokens, reading rows back.

The checks a row's values meet first, before any SQL, are in
:mod:`tokenstore_sql.validation`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Any, Final

from ._sdk import TokenStorageData, checked_token_data
from .columns import utc_now
from .crypto import DecryptionError, KeyRing
from .errors import InvalidTokenDataError, UnreadableTokenDataError
from .validation import Invalid, row_for
from .validation import check_key as check_key  # where the storages take it from

# The columns encrypted at rest when a storage has keys.
TOKEN_FIELDS = ("access_token", "refresh_token")
# The text columns (LongText) and the most any database holds in one: MySQL's MEDIUMTEXT.
LONG_TEXT_FIELDS = ("scope", "access_token", "refresh_token")
MAX_TEXT_BYTES = 2**24 - 1


def rows_for_storage(
    namespace: str, token_data_by_resource_server: object, keys: KeyRing | None = None
) -> list[dict[str, Any]]:
    """Check a ``store_token_data_by_resource_server`` argument and build its rows.

    Rows come back sorted by resource server, so that concurrent writers of the same
    keys take row locks in one order. With ``keys``, the tokens are sealed with the
    ring's first key.

    :raises InvalidTokenDataError: (also a ``TypeError``/``ValueError``) naming the first
        problem; nothing may be stored then
    """
    if not isinstance(token_data_by_resource_server, Mapping):
        raise Invalid(
            "token data must be a mapping of resource server to TokenStorageData, not "
            f"{type(token_data_by_resource_server).__name__}"
        )
    rows = [row_for(namespace, key, data) for key, data in token_data_by_resource_server.items()]
    rows.sort(key=lambda row: row["resource_server"])
    for row in rows:
        seal_tokens(row, keys)
    return rows


def seal_tokens(row: dict[str, Any], keys: KeyRing | None) -> None:
    """Encrypt a clear row's tokens in place with the ring's first key (None: keep clear).

    :raises InvalidTokenDataError: if a text value is longer than every database holds
    """
    row["token_key_id"] = None if keys is None else keys.primary_key_id
    if keys is not None:
        for field in TOKEN_FIELDS:
            if row[field] is not None:
                row[field] = keys.seal(row[field], _seal_context(row["namespace"], row, field))
    for field in LONG_TEXT_FIELDS:
        _check_stored_size(row, field, encrypted=keys is not None and field in TOKEN_FIELDS)


def _check_stored_size(row: Mapping[str, Any], field: str, *, encrypted: bool) -> None:
    # MySQL's MEDIUMTEXT holds MAX_TEXT_BYTES; where the server is not in a strict
    # sql_mode it cuts a longer value short without an error, so refuse it here, the same
    # on every database (rows move between them by export and import).
    value = row.get(field)  # rotation reseals rows of tokens only
    if value is None or len(value) * 4 <= MAX_TEXT_BYTES:  # surely short enough
        return
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_TEXT_BYTES:
        stored = "bytes encrypted" if encrypted else "bytes"
        raise InvalidTokenDataError(
            f"{field} for resource server {row['resource_server']!r} is too long: "
            f"{size:,} {stored}; at most {MAX_TEXT_BYTES:,} are supported"
        )


def open_tokens(namespace: str, row: Mapping[Any, Any], keys: KeyRing | None) -> dict[str, Any]:
    """Return a row's values with its tokens decrypted (unchanged when stored in clear).

    :raises UnreadableTokenDataError: encrypted and no keys, or a key does not open it
    """
    values = dict(row)
    if values.get("token_key_id") is None:
        return values
    resource_server = values["resource_server"]
    if keys is None:
        raise UnreadableTokenDataError(
            namespace, resource_server, "its tokens are encrypted and no encryption keys were given"
        )
    for field in TOKEN_FIELDS:
        if isinstance(values[field], str):
            try:
                values[field] = keys.open(values[field], _seal_context(namespace, values, field))
            except DecryptionError as exc:
                problem = f"{field} cannot be decrypted: {exc}"
                raise UnreadableTokenDataError(namespace, resource_server, problem) from None
    return values


def stamped(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Set the rows' ``created_at`` and ``updated_at`` to now, as they are about to be written.

    An upsert keeps a row's first ``created_at`` and any refresh lease (see
    ``statements.UPDATED_COLUMNS``); a row it inserts starts with no lease.
    """
    now = utc_now()
    for row in rows:
        row["created_at"] = row["updated_at"] = now
        row["refresh_lease_owner"] = row["refresh_lease_until"] = None
    return rows


def _seal_context(namespace: str, row: Mapping[Any, Any], field: str) -> tuple[str, str, str]:
    return (namespace, row["resource_server"], field)


def token_data_from_row(
    namespace: str, row: Mapping[Any, Any], keys: KeyRing | None = None
) -> TokenStorageData:
    """Build token data from a row's values by column name, as :func:`token_data_from_values`.

    :raises UnreadableTokenDataError: naming the namespace, resource server and field
    """
    return token_data_from_values(namespace, _READ_ROW(row), keys)


# TokenStorageData's fields (but extra) and the types each may hold.
FIELD_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "resource_server": (str,),
    "identity_id": (str, type(None)),
    "scope": (str,),
    "access_token": (str,),
    "refresh_token": (str, type(None)),
    "expires_at_seconds": (int,),
    "token_type": (str, type(None)),
}
_ROW_TYPES: Final = {
    **{name: types for name, types in FIELD_TYPES.items() if name != "resource_server"},
    "extra": (dict,),
}
# The columns that hold a row's token data: equal in all of these, the same token data.
DATA_COLUMNS: Final = tuple(_ROW_TYPES)


# The columns a read of token data selects, in the order token_data_from_values takes them.
READ_COLUMNS: Final = ("resource_server", *DATA_COLUMNS, "token_key_id")

# The exact types a well-stored row's values have, in DATA_COLUMNS order: one set lookup
# clears the common row before the field-by-field check (a third of a get's own work).
_WELL_STORED: Final = frozenset(itertools.product(*_ROW_TYPES.values()))
_READ_ROW = itemgetter(*READ_COLUMNS)


def token_data_from_values(
    namespace: str, values: Sequence[Any], keys: KeyRing | None = None
) -> TokenStorageData:
    """Build token data from a read's values in :data:`READ_COLUMNS` order.

    Sealed tokens are opened with ``keys``, and a row stored wrongly is refused. The
    values of a row stored in clear, each of a type its field takes exactly, become the
    token data's at once: a get builds no mapping of its row (building the row's, then
    the token data's, was most of a get's work on the event loop).

    :raises UnreadableTokenDataError: naming the namespace, resource server and field
    """
    if values[-1] is not None:  # token_key_id: sealed, opened first
        sealed = dict(zip(READ_COLUMNS, values, strict=True))
        values = _READ_ROW(open_tokens(namespace, sealed, keys))
    (
        resource_server,
        identity_id,
        scope,
        access_token,
        refresh_token,
        expires_at_seconds,
        token_type,
        extra,
        _,
    ) = values
    kinds = (
        type(identity_id),
        type(scope),
        type(access_token),
        type(refresh_token),
        type(expires_at_seconds),
        type(token_type),
        type(extra),
    )
    if kinds not in _WELL_STORED:  # stored wrongly, or of a subclass of a type it takes
        problem = _row_problem(values)
        if problem is not None:
            raise UnreadableTokenDataError(namespace, resource_server, problem)
    return checked_token_data(
        {
            "resource_server": resource_server,
            "identity_id": identity_id,
            "scope": scope,
            "access_token": access_token,
            "refresh_token": refresh_token,
            "expires_at_seconds": expires_at_seconds,
            "token_type": token_type,
            "extra": extra,
        }
    )


def _row_problem(values: Sequence[Any]) -> str | None:
    """Name the first field whose value its type does not take (None: every one does)."""
    data = values[1:-1]  # READ_COLUMNS less the resource server and the key id
    for (field, types), value in zip(_ROW_TYPES.items(), data, strict=True):
        if isinstance(value, bool) or not isinstance(value, types):
            kind = "missing" if value is None else _a(type(value).__name__)
            return f"{field} is {kind}"
    return None


def _a(noun: str) -> str:
    """Put "a" or "an" before a type's name: "an int", "a str"."""
    return f"{'an' if noun[:1] in 'aeiou' else 'a'} {noun}"

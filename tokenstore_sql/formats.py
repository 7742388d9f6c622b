"""globus-sdk's token files, told apart by content and read into token data by namespace.

The shapes are the same in globus-sdk 3.x and 4.x:

- ``JSONTokenStorage`` JSON, format 2.0: ``{"data": {namespace: {resource server: token
  dict}}, "format_version": "2.0", "globus-sdk.version": ...}``;
- JSON format 1.0, written by ``SimpleJSONFileAdapter`` and read by ``JSONTokenStorage`` as
  the ``DEFAULT`` namespace: ``{"by_rs": {resource server: token dict}, ...}``;
- SQLite ``database_schema_version`` 2 (``SQLiteTokenStorage``) and 1 (``SQLiteAdapter``):
  a ``token_storage`` table of JSON token dicts keyed by namespace and resource server.
  Schema 1 also has ``config_storage``: application settings, which can hold a client
  secret. Its values are never read, except the identity that globus-cli records under
  ``auth_user_data``, and only when the caller asks for it.

Token dicts from the older formats lack ``identity_id``; keys beyond the known fields
become ``extra``, as in ``TokenStorageData.from_dict``. Where ``GlobusApp`` keeps such
files: :mod:`tokenstore_sql.discovery`.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ._sdk import TokenStorageData
from .codec import FIELD_TYPES
from .errors import ImportFormatError
from .messages import describe_key

SQLITE_HEADER: Final = b"SQLite format 3\x00"
DEFAULT_NAMESPACE: Final = "DEFAULT"
JSON_V2, JSON_V1, SQLITE_V2, SQLITE_V1 = (
    "JSONTokenStorage 2.0",
    "JSON 1.0 (SimpleJSONFileAdapter)",
    "SQLiteTokenStorage (schema 2)",
    "SQLiteAdapter (schema 1)",
)
# globus-cli keeps the logged-in user's identity as {"sub": <identity id>} under this name.
IDENTITY_CONFIG_NAME: Final = "auth_user_data"
_SAFE_VERSION_CHARS: Final = frozenset("0123456789.abcdefghijklmnopqrstuvwxyz-_")


@dataclass
class TokenFile:
    """The token data of one file, by namespace and resource server.

    :ivar path: the file as given
    :ivar kind: which globus-sdk storage wrote it
    :ivar tokens: namespace to resource server to token data
    :ivar config_entries: ``config_storage`` entries left out (not token data)
    """

    path: str
    kind: str
    tokens: dict[str, dict[str, TokenStorageData]] = field(default_factory=dict)
    config_entries: int = 0


def read_token_file(
    path: str | os.PathLike[str], *, identity_from_config: bool = False
) -> TokenFile:
    """Detect a file's format from its content and read all of its token data.

    :param identity_from_config: fill a missing ``identity_id`` from the identity that
        globus-cli records in a schema-1 database's ``config_storage``
    :raises ImportFormatError: naming the file and the problem
    """
    name = str(path)
    try:
        with open(path, "rb") as handle:
            content = handle.read()
    except OSError as exc:
        raise ImportFormatError(name, f"cannot be read ({exc.strerror or 'I/O error'})") from None
    if content.startswith(SQLITE_HEADER):
        return _read_sqlite(name, identity_from_config)
    return _read_json(name, content)


# Python's JSON parser recurses once per level of nesting; a token file has a handful.
_TOO_DEEP = "is JSON nested too deeply to be a token file"


def _read_json(name: str, content: bytes) -> TokenFile:
    if not content.strip():
        raise ImportFormatError(name, "is empty")
    try:
        document = json.loads(content.decode("utf-8"))
    except UnicodeDecodeError:
        raise ImportFormatError(name, "is neither JSON text nor a SQLite database") from None
    except json.JSONDecodeError as exc:
        raise ImportFormatError(
            name, f"is not valid JSON (line {exc.lineno}, column {exc.colno}): truncated or corrupt"
        ) from None
    except RecursionError:
        raise ImportFormatError(name, _TOO_DEEP) from None
    if not isinstance(document, dict) or "format_version" not in document:
        raise ImportFormatError(name, "is JSON but not a globus-sdk token file (no format_version)")
    version = document["format_version"]
    if version == "2.0":
        kind, by_namespace = JSON_V2, document.get("data")
        if not isinstance(by_namespace, dict):
            raise ImportFormatError(name, "has format_version 2.0 but no 'data' object")
    elif version == "1.0":
        kind, by_rs = JSON_V1, document.get("by_rs")
        if not isinstance(by_rs, dict):
            raise ImportFormatError(name, "has format_version 1.0 but no 'by_rs' object")
        by_namespace = {DEFAULT_NAMESPACE: by_rs}
    else:
        raise ImportFormatError(name, f"has an unknown format_version {_shown(version)}")
    result = TokenFile(name, kind)
    for namespace, by_resource_server in by_namespace.items():
        if not isinstance(by_resource_server, dict):
            raise ImportFormatError(name, f"namespace {namespace!r} does not hold an object")
        result.tokens[namespace] = {
            rs: _token_data(name, namespace, rs, value) for rs, value in by_resource_server.items()
        }
    return result


def _read_sqlite(name: str, identity_from_config: bool) -> TokenFile:
    try:
        connection = sqlite3.connect(Path(name).resolve().as_uri() + "?mode=ro", uri=True)
        try:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
            if not {"token_storage", "sdk_storage_adapter_internal"} <= tables:
                raise ImportFormatError(
                    name, "is a SQLite database but not a globus-sdk token database"
                )
            version = connection.execute(
                "SELECT value FROM sdk_storage_adapter_internal "
                "WHERE attribute = 'globus-sdk.database_schema_version'"
            ).fetchone()
            found = None if version is None else version[0]
            if found not in ("1", "2"):
                shown = "none" if found is None else _shown(found)
                raise ImportFormatError(name, f"has an unknown database_schema_version {shown}")
            rows = connection.execute(
                "SELECT namespace, resource_server, token_data_json FROM token_storage "
                "ORDER BY namespace, resource_server"
            ).fetchall()
            has_config = found == "1" and "config_storage" in tables
            config_entries, identities = 0, {}
            if has_config:
                config_entries = connection.execute(
                    "SELECT COUNT(*) FROM config_storage"
                ).fetchone()[0]
            if has_config and identity_from_config:
                identities = _identities(connection)
        finally:
            connection.close()
    except sqlite3.Error:
        raise ImportFormatError(
            name, "is a damaged, truncated or unreadable SQLite database"
        ) from None
    result = TokenFile(
        name, SQLITE_V1 if found == "1" else SQLITE_V2, config_entries=config_entries
    )
    for namespace, resource_server, token_json in rows:
        if not isinstance(namespace, str) or not isinstance(resource_server, str):
            raise ImportFormatError(name, "has a token_storage row whose keys are not text")
        where = describe_key(namespace, resource_server)
        try:
            value = json.loads(token_json)
        except (TypeError, ValueError):
            raise ImportFormatError(name, f"token data for {where} is not valid JSON") from None
        except RecursionError:
            raise ImportFormatError(name, f"token data for {where}: {_TOO_DEEP}") from None
        if isinstance(value, dict) and value.get("identity_id") is None and namespace in identities:
            value = {**value, "identity_id": identities[namespace]}
        data = _token_data(name, namespace, resource_server, value)
        result.tokens.setdefault(namespace, {})[resource_server] = data
    return result


def _identities(connection: sqlite3.Connection) -> dict[str, str]:
    """Read only the identity entries of ``config_storage``; skip any that look wrong."""
    found: dict[str, str] = {}
    for namespace, config_json in connection.execute(
        "SELECT namespace, config_data_json FROM config_storage WHERE config_name = ?",
        (IDENTITY_CONFIG_NAME,),
    ):
        try:
            sub = json.loads(config_json).get("sub")
        except (TypeError, ValueError, AttributeError):
            continue
        if isinstance(namespace, str) and isinstance(sub, str):
            found[namespace] = sub
    return found


def _token_data(
    name: str, namespace: object, resource_server: object, value: object
) -> TokenStorageData:
    where = describe_key(namespace, resource_server)
    if not isinstance(value, dict):
        raise ImportFormatError(name, f"token data for {where} is not an object")
    for key, types in FIELD_TYPES.items():
        item = value.get(key)
        if isinstance(item, bool) or not isinstance(item, types):
            kind = "missing" if item is None else _a(type(item).__name__)
            raise ImportFormatError(name, f"token data for {where}: {key} is {kind}")
    # The constructor directly, as from_dict would call it: from_dict inspects the
    # constructor's signature for every token, which made it most of an import's time.
    fields: dict[str, Any] = {key: value.get(key) for key in FIELD_TYPES}
    extra = {key: item for key, item in value.items() if key not in FIELD_TYPES}
    return TokenStorageData(**fields, extra=extra)


def _shown(value: object) -> str:
    """Show a version found in a file only when it is short and plainly a version."""
    if isinstance(value, str) and len(value) <= 16 and set(value.lower()) <= _SAFE_VERSION_CHARS:
        return repr(value)
    return f"(a {type(value).__name__}, not shown)"


def _a(noun: str) -> str:
    """Put "a" or "an" before a type's name: "an int", "a str"."""
    return f"{'an' if noun[:1] in 'aeiou' else 'a'} {noun}"

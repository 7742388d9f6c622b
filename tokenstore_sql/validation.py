"""The checks token data meets before any SQL: keys, text, integers, plain JSON.

Each names the field and where it is (namespace, resource server), never its value, so
that no database constraint error (which may print whole rows) is ever the user's
message. :func:`row_for` gives one resource server's checked row values.
"""

from __future__ import annotations

import math
from typing import Any, Final

from ._sdk import TokenStorageData
from .columns import KEY_LENGTH, encode_key
from .errors import InvalidTokenDataError

SHORT_TEXT_LENGTH = 255
_BIGINT_MIN, _BIGINT_MAX = -(2**63), 2**63 - 1


class Invalid(InvalidTokenDataError, TypeError):
    """Raised for a value of the wrong type: both a ``TypeError`` and a ``ValueError``."""


# ASCII holds no lone surrogate, and each character takes at most two as stored (NUL).
_SURELY_SHORT: Final = KEY_LENGTH // 2


def check_key(what: str, value: object) -> str:
    """Check a namespace or resource server: a string of at most 255 stored characters.

    Any text but lone surrogates is a key, NUL included. The limit applies to the key as
    stored, where NUL and U+FFFF take two characters each (see
    :func:`~tokenstore_sql.columns.encode_key`).

    :param what: the name to use in the message, such as ``"namespace"``
    :raises InvalidTokenDataError: where the value is not a usable key
    """
    if not isinstance(value, str):
        raise Invalid(f"{what} must be a str, not {type(value).__name__}")
    if len(value) <= _SURELY_SHORT and value.isascii():  # every call's key: no more to check
        return value
    _check_unicode(what, value)
    stored = len(encode_key(value))
    if stored > KEY_LENGTH:
        length = f"{len(value)} characters long"
        if stored != len(value):
            length += f" ({stored} as stored, where NUL and U+FFFF take two each)"
        raise InvalidTokenDataError(
            f"{what} is too long: {length}; at most {KEY_LENGTH} are supported"
        )
    return value


def row_for(namespace: str, key: object, data: object) -> dict[str, Any]:
    """Check one resource server's ``TokenStorageData`` and give its row values, in clear."""
    resource_server = check_key("resource server", key)
    where = f"resource server {resource_server!r}"
    if not isinstance(data, TokenStorageData):
        kind = type(data).__name__
        raise Invalid(f"token data for {where} must be TokenStorageData, not {kind}")
    if data.resource_server != resource_server:
        raise InvalidTokenDataError(
            f"token data stored under {where} names another resource server "
            f"({data.resource_server!r}); the mapping key and resource_server must agree"
        )
    return {
        "namespace": namespace,
        "resource_server": resource_server,
        "identity_id": _optional_short_text(where, "identity_id", data.identity_id),
        "scope": _text(where, "scope", data.scope),
        "access_token": _text(where, "access_token", data.access_token),
        "refresh_token": _optional_text(where, "refresh_token", data.refresh_token),
        "expires_at_seconds": _bigint(where, "expires_at_seconds", data.expires_at_seconds),
        "token_type": _optional_short_text(where, "token_type", data.token_type),
        "extra": _json_object(where, data.extra),
    }


def _check_text(what: str, value: str) -> None:
    if "\x00" in value:
        raise InvalidTokenDataError(f"{what} contains a NUL character, which cannot be stored")
    _check_unicode(what, value)


def _check_unicode(what: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidTokenDataError(
            f"{what} is not valid Unicode text (it holds a lone surrogate)"
        ) from None


def _text(where: str, field: str, value: object) -> str:
    if not isinstance(value, str):
        raise Invalid(f"{field} of {where} must be a str, not {type(value).__name__}")
    _check_text(f"{field} of {where}", value)
    return value


def _optional_text(where: str, field: str, value: object) -> str | None:
    return None if value is None else _text(where, field, value)


def _optional_short_text(where: str, field: str, value: object) -> str | None:
    text = _optional_text(where, field, value)
    if text is not None and len(text) > SHORT_TEXT_LENGTH:
        raise InvalidTokenDataError(
            f"{field} of {where} is {len(text)} characters long; "
            f"at most {SHORT_TEXT_LENGTH} are supported"
        )
    return text


def _bigint(where: str, field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"{field} of {where} must be an int, not {type(value).__name__}")
    if not _BIGINT_MIN <= value <= _BIGINT_MAX:
        raise InvalidTokenDataError(f"{field} of {where} is out of the 64-bit integer range")
    return value


def _json_object(where: str, extra: object) -> dict[str, Any]:
    if not isinstance(extra, dict):
        raise Invalid(f"extra of {where} must be a dict, not {type(extra).__name__}")
    try:
        plain = _is_plain_json(f"extra of {where}", extra)
    except RecursionError:  # nested too deep for JSON, or a container holding itself
        plain = False
    if not plain:
        raise InvalidTokenDataError(
            f"extra of {where} must be plain JSON data (dict with str keys, list, str, int, "
            "float, bool, None) so that it reads back as it was stored"
        )
    return extra


def _is_plain_json(what: str, value: object) -> bool:
    """Tell whether JSON gives ``value`` back as it was; refuse text that cannot be stored.

    One walk instead of a JSON round trip: dicts with str keys, lists, str, int (bool
    included), finite floats and None; no tuples, sets, NaN or other objects.
    """
    if isinstance(value, str):
        _check_text(what, value)
        return True
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return False
            _check_text(what, key)
            if not _is_plain_json(what, item):
                return False
        return True
    if isinstance(value, list):
        return all(_is_plain_json(what, item) for item in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, int)

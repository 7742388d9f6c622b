"""Token data, token responses and awkward keys for the contract suite, built offline.

Every value is made up; nothing here reaches Globus Auth. The responses are real
globus-sdk response objects around a canned HTTP body, as Globus Auth returns it.
"""

from __future__ import annotations

import json
import time
import unicodedata
import uuid
from typing import Any

import globus_sdk
import requests

from .._sdk import TokenStorageData

__all__ = [
    "LOOKALIKE_KEYS",
    "ODD_KEYS",
    "dependent_token_response",
    "token_data",
    "token_response",
    "unique_namespace",
]

# Keys a storage must keep as they are: URLs, quotes, SQL, pattern characters, control
# characters and non-ASCII text. (NUL is left out: some databases cannot hold it.)
ODD_KEYS: dict[str, str] = {
    "url": "https://auth.globus.org/scopes/0f0e/all?x=1&y=%20#f",
    "punctuation": "a.b-c_d~e:f;g,h!i@j$k(l)m[n]o{p}q",
    "spaces": "  with  spaces  ",
    "quotes-and-sql": 'it\'s "quoted"`; DROP TABLE tokens; --',
    "pattern-characters": "100%_off*?[a-z]",
    "slashes": "back\\slash/forward/slash",
    "control-characters": "tab\tnew\nline\rreturn",
    "unicode": "caf\u00e9 \u4e2d\u6587 \u0627\u0644\u0639\u0631\u0628\u064a\u0629",
    "astral-plane": "key-\U0001f511-\U0001d54a",
    "uuid": "c8a7f8a6-3f8e-4c4a-9d8a-1c1d2e3f4a5b",
}

# Pairs of keys that a careless comparison (a case-insensitive or PAD SPACE collation,
# Unicode normalization, a LIKE pattern) would treat as one key.
LOOKALIKE_KEYS: dict[str, tuple[str, str]] = {
    "case": ("Transfer", "transfer"),
    "trailing-space": ("transfer", "transfer "),
    "leading-space": ("transfer", " transfer"),
    "unicode-normal-forms": (
        unicodedata.normalize("NFC", "caf\u00e9"),
        unicodedata.normalize("NFD", "caf\u00e9"),
    ),
    "sharp-s": ("stra\u00dfe", "strasse"),
    "latin-vs-cyrillic": ("a", "\u0430"),
    "astral-plane": ("emoji-\U0001f511", "emoji-\U0001f512"),
    "pattern-vs-text": ("a_c", "abc"),
}


def unique_namespace(prefix: str = "contract") -> str:
    """Return a namespace no other test uses, so storages over a shared database work.

    :param prefix: the start of the namespace
    """
    return f"{prefix}-{uuid.uuid4().hex}"


def token_data(
    resource_server: str = "transfer.api.globus.org", **changes: Any
) -> TokenStorageData:
    """Return token data with plausible values; keyword arguments replace fields.

    :param resource_server: the resource server the data is for
    :param changes: field values to use instead of the made-up ones
    """
    fields: dict[str, Any] = {
        "resource_server": resource_server,
        "identity_id": "c8a7f8a6-3f8e-4c4a-9d8a-1c1d2e3f4a5b",
        "scope": f"urn:globus:auth:scope:{resource_server}:all",
        "access_token": f"access-{uuid.uuid4().hex}",
        "refresh_token": f"refresh-{uuid.uuid4().hex}",
        "expires_at_seconds": int(time.time()) + 3600,
        "token_type": "Bearer",
    }
    fields.update(changes)
    return TokenStorageData(**fields)


def _token_body(resource_server: str, index: int, *, refresh: bool) -> dict[str, Any]:
    return {
        "resource_server": resource_server,
        "scope": f"urn:globus:auth:scope:{resource_server}:all",
        "access_token": f"access-{uuid.uuid4().hex}",
        "refresh_token": f"refresh-{uuid.uuid4().hex}" if refresh else None,
        "token_type": "Bearer",
        "expires_in": 3600 + index,
    }


def _raw_response(body: object) -> requests.Response:
    raw = requests.Response()
    raw.status_code = 200
    raw.headers["Content-Type"] = "application/json"
    raw._content = json.dumps(body).encode()
    return raw


def token_response(*resource_servers: str) -> globus_sdk.OAuthTokenResponse:
    """Return an ``OAuthTokenResponse`` as Globus Auth sends it, with no ``id_token``.

    The first resource server is the top-level token, the others are ``other_tokens``;
    the last of several has no refresh token, as happens for some grants.

    :param resource_servers: one or more resource servers to issue tokens for
    """
    last = len(resource_servers) - 1
    tokens = [
        _token_body(name, i, refresh=not (i == last and i > 0))
        for i, name in enumerate(resource_servers)
    ]
    body = {**tokens[0], "other_tokens": tokens[1:]}
    client = globus_sdk.NativeAppAuthClient(str(uuid.uuid4()))
    return globus_sdk.OAuthTokenResponse(_raw_response(body), client=client)


def dependent_token_response(*resource_servers: str) -> globus_sdk.OAuthDependentTokenResponse:
    """Return an ``OAuthDependentTokenResponse``: a list of tokens, one per resource server.

    :param resource_servers: the resource servers to issue dependent tokens for
    """
    body = [_token_body(name, i, refresh=True) for i, name in enumerate(resource_servers)]
    client = globus_sdk.ConfidentialAppAuthClient(str(uuid.uuid4()), "client-secret")
    return globus_sdk.OAuthDependentTokenResponse(_raw_response(body), client=client)

"""Keys are exact and values round-trip byte for byte on every backend."""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.support.sdk import make_token_data
from tokenstore_sql import SQLAlchemyTokenStorage

# Pairs that a careless collation would treat as the same key.
LOOKALIKE_KEYS = [
    pytest.param("Transfer", "transfer", id="case"),
    pytest.param("transfer", "transfer ", id="trailing-space"),
    pytest.param("transfer", " transfer", id="leading-space"),
    pytest.param(
        unicodedata.normalize("NFC", "caf\u00e9"),
        unicodedata.normalize("NFD", "caf\u00e9"),
        id="unicode-normal-forms",
    ),
    pytest.param("stra\u00dfe", "strasse", id="sharp-s"),
    pytest.param("a", "\u0430", id="latin-vs-cyrillic"),
    pytest.param("emoji-\U0001f511", "emoji-\U0001f512", id="astral-plane"),
]


@pytest.mark.parametrize(("first", "second"), LOOKALIKE_KEYS)
def test_resource_servers_that_differ_in_any_way_are_different_rows(
    storage: SQLAlchemyTokenStorage, first: str, second: str
) -> None:
    storage.store_token_data_by_resource_server(
        {first: make_token_data(first, access_token="first")}
    )
    storage.store_token_data_by_resource_server(
        {second: make_token_data(second, access_token="second")}
    )

    stored = storage.get_token_data_by_resource_server()

    assert sorted(stored) == sorted([first, second])
    assert stored[first].access_token == "first"
    assert stored[second].access_token == "second"
    assert storage.get_token_data(first).access_token == "first"  # type: ignore[union-attr]
    assert storage.remove_token_data(second) is True
    assert list(storage.get_token_data_by_resource_server()) == [first]


@pytest.mark.parametrize(("first", "second"), LOOKALIKE_KEYS)
def test_namespaces_that_differ_in_any_way_are_different_partitions(
    engine: Engine, namespace: str, first: str, second: str
) -> None:
    one = SQLAlchemyTokenStorage(engine, namespace=namespace + first)
    other = SQLAlchemyTokenStorage(engine, namespace=namespace + second)
    one.store_token_data_by_resource_server({"rs": make_token_data("rs", access_token="one")})

    assert other.get_token_data("rs") is None
    assert other.get_token_data_by_resource_server() == {}
    assert namespace + first in list(one.iter_namespaces())
    assert namespace + second not in list(one.iter_namespaces())


def test_keys_of_255_characters_round_trip(engine: Engine, namespace: str) -> None:
    long_namespace = (namespace + "\u00e9" * 255)[:255]
    long_server = "\U0001f511" * 255
    storage = SQLAlchemyTokenStorage(engine, namespace=long_namespace)
    storage.store_token_data_by_resource_server({long_server: make_token_data(long_server)})

    assert list(storage.get_token_data_by_resource_server()) == [long_server]
    assert long_namespace in list(storage.iter_namespaces())


def test_long_tokens_and_scopes_round_trip_exactly(storage: SQLAlchemyTokenStorage) -> None:
    scope = " ".join(f"https://auth.globus.org/scopes/{i:04d}/data_access" for i in range(3000))
    access = "A\u00e9\U0001f511 " * 30_000  # about 200 KiB of UTF-8
    refresh = "r" * 100_000 + "   "
    data = make_token_data("rs", scope=scope, access_token=access, refresh_token=refresh)
    storage.store_token_data_by_resource_server({"rs": data})

    got = storage.get_token_data("rs")

    assert got is not None
    assert got.scope == scope
    assert got.access_token == access
    assert got.refresh_token == refresh


def test_extra_round_trips_exactly(storage: SQLAlchemyTokenStorage) -> None:
    extra = {
        "nested": {"list": [1, 2.5, -3, None, True, False, "x"], "empty": {}},
        "unicode": "\u00e9\U0001f511 \u2028",
        "big": 2**62,
        "quote": 'it\'s "quoted"; DROP TABLE x; --',
    }
    storage.store_token_data_by_resource_server({"rs": make_token_data("rs", extra=extra)})

    got = storage.get_token_data("rs")

    assert got is not None
    assert got.extra == extra
    assert got.to_dict(include_extra=True)["nested"] == extra["nested"]


def test_values_with_sql_in_them_are_just_data(engine: Engine) -> None:
    hostile = "x'); DELETE FROM tokenstore_sql_tokens; --\"`\\"
    storage = SQLAlchemyTokenStorage(engine, namespace=hostile)
    storage.store_token_data_by_resource_server(
        {hostile: make_token_data(hostile, access_token=hostile, scope=hostile)}
    )

    got = storage.get_token_data(hostile)

    assert got is not None
    assert (got.resource_server, got.access_token, got.scope) == (hostile, hostile, hostile)
    assert hostile in list(storage.iter_namespaces())


@pytest.fixture
def storage(api_storage: Any) -> Any:
    """Override: every behaviour here holds for the sync and the async API alike."""
    return api_storage

"""Bad input raises a clear TypeError/ValueError, stores nothing and never shows a token."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.sdk import make_token_data
from tokenstore_sql import InvalidTokenDataError, SQLAlchemyTokenStorage, generate_key

SECRET = "SECRET-token-value-never-shown"


def _assert_nothing_stored(storage: SQLAlchemyTokenStorage) -> None:
    assert storage.get_token_data_by_resource_server() == {}


def _store_expecting(
    storage: SQLAlchemyTokenStorage, value: Any, error: type[Exception], *words: str
) -> str:
    with pytest.raises(error) as caught:
        storage.store_token_data_by_resource_server(value)
    message = str(caught.value)
    assert isinstance(caught.value, InvalidTokenDataError)
    for word in words:
        assert word in message
    assert SECRET not in message
    assert caught.value.__cause__ is None
    _assert_nothing_stored(storage)
    return message


def test_a_non_mapping_is_a_type_error(storage: SQLAlchemyTokenStorage) -> None:
    data = make_token_data("rs", access_token=SECRET)
    _store_expecting(storage, [data], TypeError, "mapping", "list")


def test_a_non_string_resource_server_is_a_type_error(storage: SQLAlchemyTokenStorage) -> None:
    _store_expecting(storage, {42: make_token_data("rs")}, TypeError, "resource server", "int")


def test_a_value_that_is_not_token_data_is_a_type_error(storage: SQLAlchemyTokenStorage) -> None:
    raw = {"resource_server": "rs", "access_token": SECRET}
    _store_expecting(storage, {"rs": raw}, TypeError, "TokenStorageData", "dict")


def test_a_key_that_disagrees_with_the_data_is_a_value_error(
    storage: SQLAlchemyTokenStorage,
) -> None:
    data = make_token_data("auth.globus.org", access_token=SECRET)
    _store_expecting(storage, {"transfer": data}, ValueError, "'transfer'", "auth.globus.org")


def test_one_bad_entry_stores_none_of_the_batch(storage: SQLAlchemyTokenStorage) -> None:
    good = make_token_data("a.example.org")
    bad = make_token_data("b.example.org", access_token=SECRET)
    bad.expires_at_seconds = "tomorrow"  # type: ignore[assignment]
    _store_expecting(
        storage, {"a.example.org": good, "b.example.org": bad}, TypeError, "expires_at_seconds"
    )


def _self_containing() -> dict[str, Any]:
    looped: dict[str, Any] = {}
    looped["me"] = looped
    return looped


def _nested(depth: int) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for _ in range(depth):
        nested = {"n": nested}
    return nested


@pytest.mark.parametrize(
    ("field", "value", "error", "word"),
    [
        ("access_token", None, TypeError, "access_token"),
        ("access_token", 12345, TypeError, "access_token"),
        ("scope", b"bytes", TypeError, "scope"),
        ("refresh_token", 1.5, TypeError, "refresh_token"),
        ("expires_at_seconds", True, TypeError, "expires_at_seconds"),
        ("expires_at_seconds", 2**63, ValueError, "64-bit"),
        ("identity_id", "x" * 256, ValueError, "identity_id"),
        ("token_type", "B" * 256, ValueError, "token_type"),
        ("extra", ["not", "a", "dict"], TypeError, "extra"),
        ("extra", {"when": {1, 2}}, ValueError, "extra"),
        ("extra", {"pair": (1, 2)}, ValueError, "extra"),
        ("extra", {1: "int key"}, ValueError, "extra"),
        ("extra", {"x": float("nan")}, ValueError, "extra"),
        ("extra", {"x": [1, float("-inf")]}, ValueError, "extra"),
        ("extra", {"deep": [{"pair": (1, 2)}]}, ValueError, "extra"),
        ("extra", {"obj": object()}, ValueError, "extra"),
        ("extra", _self_containing(), ValueError, "extra"),
        ("extra", _nested(5000), ValueError, "extra"),
    ],
)
def test_a_field_of_the_wrong_kind_is_refused(
    storage: SQLAlchemyTokenStorage, field: str, value: object, error: type[Exception], word: str
) -> None:
    data = make_token_data("rs", access_token=SECRET, refresh_token=SECRET)
    setattr(data, field, value)
    _store_expecting(storage, {"rs": data}, error, word, "'rs'")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("access_token", f"{SECRET}\x00tail"),
        ("refresh_token", f"{SECRET}\ud800"),
        ("scope", "openid\x00"),
        ("extra", {"note": f"{SECRET}\x00"}),
        ("extra", {"deep": [{"k\x00": 1}]}),
    ],
)
def test_text_that_cannot_be_stored_exactly_is_refused(
    storage: SQLAlchemyTokenStorage, field: str, value: object
) -> None:
    data = make_token_data("rs")
    setattr(data, field, value)
    message = _store_expecting(storage, {"rs": data}, ValueError, field)
    assert "NUL" in message or "surrogate" in message


def test_a_resource_server_over_255_characters_is_refused(
    storage: SQLAlchemyTokenStorage,
) -> None:
    long_name = "r" * 256
    _store_expecting(storage, {long_name: make_token_data(long_name)}, ValueError, "256", "255")


MAX_TEXT_BYTES = 2**24 - 1  # MySQL's MEDIUMTEXT, the least any database holds


@pytest.mark.parametrize("field", ["access_token", "refresh_token", "scope"])
def test_text_longer_than_every_database_holds_is_refused_before_any_sql(
    storage: SQLAlchemyTokenStorage, field: str
) -> None:
    # A non-strict MariaDB would cut such a value short without an error.
    data = make_token_data("rs")
    setattr(data, field, SECRET + "x" * (MAX_TEXT_BYTES + 1 - len(SECRET)))
    message = _store_expecting(storage, {"rs": data}, ValueError, field, "16,777,216 bytes")
    assert "16,777,215" in message


def test_multibyte_text_is_measured_in_bytes(storage: SQLAlchemyTokenStorage) -> None:
    data = make_token_data("rs", access_token="\u00e9" * (MAX_TEXT_BYTES // 2 + 1))
    _store_expecting(storage, {"rs": data}, ValueError, "access_token", "16,777,216 bytes")


def test_a_token_that_outgrows_the_limit_once_encrypted_is_refused(
    make_api_storage: Any, namespace: str
) -> None:
    sealed = make_api_storage(namespace, keys=[generate_key()])
    data = make_token_data("rs", access_token=SECRET + "x" * (13 * 2**20))  # 13 MiB clear
    _store_expecting(sealed, {"rs": data}, ValueError, "access_token", "bytes encrypted")


@pytest.mark.parametrize("namespace", [None, 7, "n" * 256, "\x00" * 128, "bad\ud800ns"])
def test_a_bad_namespace_is_refused_at_construction(
    make_api_storage: Any, namespace: object
) -> None:
    with pytest.raises(InvalidTokenDataError, match="namespace"):
        make_api_storage(namespace)


def test_keys_with_nul_are_stored_as_data(make_api_storage: Any) -> None:
    storage = make_api_storage("bad\x00ns")
    data = make_token_data("rs\x00", scope="openid", access_token=SECRET, refresh_token=None)
    storage.store_token_data_by_resource_server({"rs\x00": data})

    got = storage.get_token_data("rs\x00")
    assert got is not None
    assert (got.resource_server, got.access_token) == ("rs\x00", SECRET)
    assert "bad\x00ns" in list(storage.iter_namespaces())
    assert storage.remove_namespace() == 1


@pytest.mark.parametrize("resource_server", [None, 3, "x" * 256, "\x00" * 128, "rs\udfff"])
def test_lookups_with_a_bad_resource_server_are_refused(
    storage: SQLAlchemyTokenStorage, resource_server: object
) -> None:
    with pytest.raises(InvalidTokenDataError, match="resource server"):
        storage.get_token_data(resource_server)  # type: ignore[arg-type]
    with pytest.raises(InvalidTokenDataError, match="resource server"):
        storage.remove_token_data(resource_server)  # type: ignore[arg-type]


@pytest.fixture
def storage(api_storage: Any) -> Any:
    """Override: every behaviour here holds for the sync and the async API alike."""
    return api_storage

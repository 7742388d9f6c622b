"""Every TokenStorage behaviour, on our storage and on globus-sdk's own.

globus-sdk's storages are the reference for what the interface means: each
expectation here holds for them too.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import BACKENDS
from .sdk import MemoryTokenStorage, SQLiteTokenStorage, TokenStorage, make_token_data

STORAGES = [
    *(
        pytest.param(f"{api}:{p.values[0]}", marks=p.marks, id=f"ours-{api}-{p.values[0]}")
        for p in BACKENDS
        for api in ("sync", "async")
    ),
    pytest.param("sdk-memory", id="sdk-memory"),
    pytest.param("sdk-sqlite", id="sdk-sqlite"),
]


@pytest.fixture(params=STORAGES)
def kind(request: pytest.FixtureRequest) -> str:
    """Ours on each backend through each API, plus globus-sdk's storages as the reference."""
    return str(request.param)


@pytest.fixture
def backend(kind: str) -> str:
    """Override: the backend of the storage under test."""
    return kind.rpartition(":")[2]


@pytest.fixture
def api(kind: str) -> str:
    """Override: the API of the storage under test (ours only)."""
    return kind.partition(":")[0]


@pytest.fixture
def make_storage(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """A factory of storages in a given namespace, all over the same database."""
    made: list[TokenStorage] = []

    def make(namespace: str) -> TokenStorage:
        storage: TokenStorage
        if kind == "sdk-memory":
            shared = getattr(make, "memory", None)
            storage = MemoryTokenStorage(namespace=namespace)
            if shared is not None:
                storage._tokens = shared  # one in-memory "database" for all namespaces
            make.memory = storage._tokens  # type: ignore[attr-defined]
        elif kind == "sdk-sqlite":
            storage = SQLiteTokenStorage(tmp_path / "sdk.db", namespace=namespace)
        else:  # ours; the factory closes what it made
            return request.getfixturevalue("make_api_storage")(namespace)  # type: ignore[no-any-return]
        made.append(storage)
        return storage

    yield make
    for storage in made:
        close = getattr(storage, "close", None)  # globus-sdk 3.x's memory storage has none
        if close is not None:
            close()


@pytest.fixture
def any_storage(make_storage, namespace: str) -> TokenStorage:  # type: ignore[no-untyped-def]
    return make_storage(namespace)  # type: ignore[no-any-return]


def test_get_returns_what_was_stored(any_storage: TokenStorage) -> None:
    data = make_token_data("transfer.api.globus.org")
    any_storage.store_token_data_by_resource_server({data.resource_server: data})

    got = any_storage.get_token_data("transfer.api.globus.org")

    assert got is not None
    assert got.to_dict() == data.to_dict()


def test_get_returns_none_when_absent(any_storage: TokenStorage) -> None:
    assert any_storage.get_token_data("nothing.example.org") is None


def test_get_all_is_empty_for_a_new_namespace(any_storage: TokenStorage) -> None:
    assert any_storage.get_token_data_by_resource_server() == {}


def test_get_all_returns_every_resource_server(any_storage: TokenStorage) -> None:
    servers = ["auth.globus.org", "transfer.api.globus.org", "groups.api.globus.org"]
    data = {rs: make_token_data(rs) for rs in servers}
    any_storage.store_token_data_by_resource_server(data)

    got = any_storage.get_token_data_by_resource_server()

    assert sorted(got) == sorted(servers)
    assert {rs: d.to_dict() for rs, d in got.items()} == {rs: d.to_dict() for rs, d in data.items()}


def test_store_replaces_existing_data(any_storage: TokenStorage) -> None:
    any_storage.store_token_data_by_resource_server(
        {"rs": make_token_data("rs", access_token="old")}
    )
    newer = make_token_data("rs", access_token="new", refresh_token=None, token_type=None)
    any_storage.store_token_data_by_resource_server({"rs": newer})

    got = any_storage.get_token_data("rs")

    assert got is not None
    assert got.to_dict() == newer.to_dict()
    assert list(any_storage.get_token_data_by_resource_server()) == ["rs"]


def test_store_keeps_other_resource_servers(any_storage: TokenStorage) -> None:
    any_storage.store_token_data_by_resource_server({"a": make_token_data("a")})
    any_storage.store_token_data_by_resource_server({"b": make_token_data("b")})

    assert sorted(any_storage.get_token_data_by_resource_server()) == ["a", "b"]


def test_store_of_nothing_is_a_no_op(any_storage: TokenStorage) -> None:
    any_storage.store_token_data_by_resource_server({})
    assert any_storage.get_token_data_by_resource_server() == {}


def test_remove_returns_true_then_false(any_storage: TokenStorage) -> None:
    any_storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})

    assert any_storage.remove_token_data("rs") is True
    assert any_storage.get_token_data("rs") is None
    assert any_storage.remove_token_data("rs") is False


def test_remove_returns_false_when_absent(any_storage: TokenStorage) -> None:
    assert any_storage.remove_token_data("never.stored.org") is False


def test_remove_leaves_other_resource_servers(any_storage: TokenStorage) -> None:
    any_storage.store_token_data_by_resource_server(
        {"a": make_token_data("a"), "b": make_token_data("b")}
    )
    any_storage.remove_token_data("a")
    assert list(any_storage.get_token_data_by_resource_server()) == ["b"]


def test_namespaces_are_isolated(make_storage) -> None:  # type: ignore[no-untyped-def]
    alice = make_storage(f"alice-{uuid.uuid4()}")
    bob = make_storage(f"bob-{uuid.uuid4()}")
    alice.store_token_data_by_resource_server({"rs": make_token_data("rs", access_token="alice")})
    bob.store_token_data_by_resource_server({"rs": make_token_data("rs", access_token="bob")})

    assert alice.get_token_data("rs").access_token == "alice"
    assert bob.get_token_data("rs").access_token == "bob"
    assert bob.remove_token_data("rs") is True
    assert alice.get_token_data("rs").access_token == "alice"


def test_optional_fields_round_trip_as_none(any_storage: TokenStorage) -> None:
    data = make_token_data("rs", identity_id=None, refresh_token=None, token_type=None)
    any_storage.store_token_data_by_resource_server({"rs": data})

    got = any_storage.get_token_data("rs")

    assert got is not None
    assert (got.identity_id, got.refresh_token, got.token_type) == (None, None, None)


@pytest.mark.parametrize("kind", [p for p in STORAGES if p.id != "sdk-memory"], indirect=True)
def test_iter_namespaces_lists_each_namespace_once(make_storage) -> None:  # type: ignore[no-untyped-def]
    names = [f"iter-{uuid.uuid4()}" for _ in range(3)]
    for name in names:
        make_storage(name).store_token_data_by_resource_server(
            {"a": make_token_data("a"), "b": make_token_data("b")}
        )

    listed = list(make_storage("DEFAULT").iter_namespaces())

    assert all(listed.count(name) == 1 for name in names)

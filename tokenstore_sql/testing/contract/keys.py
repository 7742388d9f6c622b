"""Namespaces and resource servers: isolation, and odd or look-alike keys."""

from __future__ import annotations

from ..._sdk import TokenStorage
from ..data import LOOKALIKE_KEYS, ODD_KEYS, token_data, unique_namespace
from ._support import ContractBase, MakeTokenStorage, each_key, fields_of, stored


class KeyContract(ContractBase):
    """Namespaces and resource servers: isolation, and odd or look-alike keys."""

    # --- namespaces ---

    def test_namespaces_are_isolated(self, make_token_storage: MakeTokenStorage) -> None:
        """Get, get all and remove see only their own namespace."""
        alice, bob = make_token_storage(), make_token_storage()
        alice.store_token_data_by_resource_server(
            {"rs": token_data("rs", access_token="alice"), "alice-only": token_data("alice-only")}
        )
        bob.store_token_data_by_resource_server({"rs": token_data("rs", access_token="bob")})

        assert sorted(alice.get_token_data_by_resource_server()) == ["alice-only", "rs"]
        assert list(bob.get_token_data_by_resource_server()) == ["rs"]
        assert stored(alice, "rs").access_token == "alice"
        assert stored(bob, "rs").access_token == "bob"
        assert bob.get_token_data("alice-only") is None
        assert bob.remove_token_data("alice-only") is False
        assert bob.remove_token_data("rs") is True
        assert sorted(alice.get_token_data_by_resource_server()) == ["alice-only", "rs"]
        assert stored(alice, "rs").access_token == "alice"

    def test_storages_on_one_namespace_share_their_data(
        self, make_token_storage: MakeTokenStorage
    ) -> None:
        """Two storages in one namespace (of one store) see each other's writes."""
        first = make_token_storage()
        second = make_token_storage(first.namespace)
        first.store_token_data_by_resource_server({"a": token_data("a")})
        second.store_token_data_by_resource_server({"b": token_data("b")})

        assert sorted(first.get_token_data_by_resource_server()) == ["a", "b"]
        assert second.remove_token_data("a") is True
        assert list(first.get_token_data_by_resource_server()) == ["b"]

    @each_key(ODD_KEYS)
    def test_odd_namespaces_work(self, make_token_storage: MakeTokenStorage, key: str) -> None:
        """Namespaces with URLs, quotes, SQL, patterns and non-ASCII text work."""
        storage = make_token_storage(unique_namespace() + key)
        data = token_data("rs")
        storage.store_token_data_by_resource_server({"rs": data})

        assert fields_of(storage.get_token_data("rs")) == fields_of(data)
        assert make_token_storage().get_token_data("rs") is None

    @each_key(LOOKALIKE_KEYS)
    def test_namespaces_that_differ_in_any_way_are_different(
        self, make_token_storage: MakeTokenStorage, key: tuple[str, str]
    ) -> None:
        """Namespaces that differ only in case, spaces, normalization... are apart."""
        prefix = unique_namespace()
        one, other = make_token_storage(prefix + key[0]), make_token_storage(prefix + key[1])
        one.store_token_data_by_resource_server({"rs": token_data("rs", access_token="one")})

        assert other.get_token_data("rs") is None
        assert other.get_token_data_by_resource_server() == {}
        assert other.remove_token_data("rs") is False
        assert stored(one, "rs").access_token == "one"

    # --- resource server keys ---

    @each_key(ODD_KEYS)
    def test_odd_resource_servers_round_trip(self, token_storage: TokenStorage, key: str) -> None:
        """Resource servers with URLs, quotes, SQL, patterns and non-ASCII text work."""
        data = token_data(key)
        token_storage.store_token_data_by_resource_server({key: data})

        assert list(token_storage.get_token_data_by_resource_server()) == [key]
        assert fields_of(token_storage.get_token_data(key)) == fields_of(data)
        assert token_storage.remove_token_data(key) is True
        assert token_storage.get_token_data_by_resource_server() == {}

    @each_key(LOOKALIKE_KEYS)
    def test_resource_servers_that_differ_in_any_way_are_different(
        self, token_storage: TokenStorage, key: tuple[str, str]
    ) -> None:
        """Resource servers that differ only in case, spaces, normalization... are apart."""
        first, second = key
        token_storage.store_token_data_by_resource_server(
            {first: token_data(first, access_token="first")}
        )
        assert token_storage.get_token_data(second) is None
        assert token_storage.remove_token_data(second) is False
        token_storage.store_token_data_by_resource_server(
            {second: token_data(second, access_token="second")}
        )

        stored = token_storage.get_token_data_by_resource_server()

        assert sorted(stored) == sorted(key)
        assert stored[first].access_token == "first"
        assert stored[second].access_token == "second"
        assert token_storage.remove_token_data(second) is True
        assert list(token_storage.get_token_data_by_resource_server()) == [first]

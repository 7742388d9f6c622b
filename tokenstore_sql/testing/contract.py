"""``TokenStorageContract``: what every globus-sdk ``TokenStorage`` does, as pytest tests.

Subclass it in a test module (under a name pytest collects, ``Test...``) and provide a
``token_storage_factory`` fixture; the tests run on the storages that factory makes.
Nothing here knows how a storage keeps its data: each expectation holds for globus-sdk's
own ``MemoryTokenStorage``, ``SQLiteTokenStorage`` and ``JSONTokenStorage``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest

from .._sdk import TokenStorage, TokenStorageData
from .data import (
    LOOKALIKE_KEYS,
    ODD_KEYS,
    dependent_token_response,
    token_data,
    token_response,
    unique_namespace,
)

__all__ = ["MakeTokenStorage", "TokenStorageContract", "TokenStorageFactory"]

TokenStorageFactory = Callable[[str], TokenStorage]
"""The fixture a user provides: a fresh storage in the given namespace.

Every storage it makes during one test must share one store (one file, one database,
one dict), as the storages of one application do, so that namespaces are told apart
by the storage and not by accident.
"""


# The standard fields of TokenStorageData (extra aside), as its constructor names them.
_FIELDS = (
    "resource_server",
    "identity_id",
    "scope",
    "access_token",
    "refresh_token",
    "expires_at_seconds",
    "token_type",
)


class MakeTokenStorage:
    """The contract's own factory: unique namespaces, and every storage closed at the end.

    :param factory: the user's ``token_storage_factory``
    """

    def __init__(self, factory: TokenStorageFactory) -> None:
        self._factory = factory
        self._closing = contextlib.ExitStack()

    def __call__(self, namespace: str | None = None) -> TokenStorage:
        """Return a storage from the factory, in ``namespace`` or in a new one.

        :param namespace: the namespace; a name no other test uses when omitted
        """
        storage = self._factory(unique_namespace() if namespace is None else namespace)
        close = getattr(storage, "close", None)  # not every storage has close()
        if callable(close):
            self._closing.callback(close)
        return storage

    def close(self) -> None:
        """Close every storage made, the last made first."""
        self._closing.close()


def _fields(data: TokenStorageData | None) -> dict[str, Any]:
    """Return the standard fields of token data, ``None`` ones included."""
    assert data is not None, "no token data where some was stored"
    assert isinstance(data, TokenStorageData)
    return {field: getattr(data, field) for field in _FIELDS}


def _stored(storage: TokenStorage, resource_server: str) -> TokenStorageData:
    """Return the token data stored for ``resource_server``, failing where there is none."""
    data = storage.get_token_data(resource_server)
    assert data is not None, f"no token data for {resource_server!r}"
    return data


def _each_key(keys: dict[str, Any]) -> pytest.MarkDecorator:
    """Parametrize ``key`` over the values of ``keys``, named by its keys."""
    return pytest.mark.parametrize("key", list(keys.values()), ids=list(keys))


class TokenStorageContract:
    """The storage-independent behaviour of ``TokenStorage``, for any implementation.

    Fixtures: ``token_storage_factory`` (yours, see :data:`TokenStorageFactory`);
    ``make_token_storage`` and ``token_storage`` (the contract's, for your own tests in
    the subclass too).

    :cvar preserves_extra: set to ``True`` where the storage keeps
        ``TokenStorageData.extra``; globus-sdk's own storages drop it, so by default the
        contract only checks that ``extra`` never disturbs the other fields
    """

    preserves_extra: ClassVar[bool] = False

    @pytest.fixture
    def make_token_storage(
        self, token_storage_factory: TokenStorageFactory
    ) -> Iterator[MakeTokenStorage]:
        """Yield the factory the tests use: new namespaces unless named; closes storages."""
        made = MakeTokenStorage(token_storage_factory)
        yield made
        made.close()

    @pytest.fixture
    def token_storage(self, make_token_storage: MakeTokenStorage) -> TokenStorage:
        """Return a storage in a namespace of its own."""
        return make_token_storage()

    # --- an empty namespace ---

    def test_a_storage_is_in_the_namespace_it_was_made_for(
        self, make_token_storage: MakeTokenStorage
    ) -> None:
        """``namespace`` is the namespace the storage was made for."""
        namespace = unique_namespace()
        assert make_token_storage(namespace).namespace == namespace

    def test_get_all_is_empty_in_a_new_namespace(self, token_storage: TokenStorage) -> None:
        """A namespace nothing was stored in holds no token data."""
        assert token_storage.get_token_data_by_resource_server() == {}

    def test_get_returns_none_when_nothing_was_stored(self, token_storage: TokenStorage) -> None:
        """``get_token_data`` is ``None`` for a resource server never stored."""
        assert token_storage.get_token_data("transfer.api.globus.org") is None

    def test_remove_returns_false_when_nothing_was_stored(
        self, token_storage: TokenStorage
    ) -> None:
        """``remove_token_data`` is ``False`` where there was nothing to remove."""
        assert token_storage.remove_token_data("transfer.api.globus.org") is False

    # --- store, get, get all ---

    def test_get_returns_what_was_stored(self, token_storage: TokenStorage) -> None:
        """``get_token_data`` gives back each field that was stored."""
        data = token_data("transfer.api.globus.org")
        token_storage.store_token_data_by_resource_server({data.resource_server: data})

        assert _fields(token_storage.get_token_data("transfer.api.globus.org")) == _fields(data)

    def test_get_returns_none_for_another_resource_server(
        self, token_storage: TokenStorage
    ) -> None:
        """Data stored for one resource server is not returned for another."""
        token_storage.store_token_data_by_resource_server({"a": token_data("a")})
        assert token_storage.get_token_data("b") is None

    def test_get_all_returns_everything_stored_in_one_call(
        self, token_storage: TokenStorage
    ) -> None:
        """Several resource servers stored in one call all come back, keyed by name."""
        servers = ["auth.globus.org", "transfer.api.globus.org", "groups.api.globus.org"]
        data = {rs: token_data(rs) for rs in servers}
        token_storage.store_token_data_by_resource_server(data)

        got = token_storage.get_token_data_by_resource_server()

        assert isinstance(got, dict)
        assert sorted(got) == sorted(servers)
        assert {rs: _fields(d) for rs, d in got.items()} == {
            rs: _fields(d) for rs, d in data.items()
        }

    @pytest.mark.parametrize(
        "expires_at_seconds", [0, 2**31 - 1, 2**31, 2**40], ids=["epoch", "y2038-1", "y2038", "far"]
    )
    def test_every_field_round_trips(
        self, token_storage: TokenStorage, expires_at_seconds: int
    ) -> None:
        """Every field, non-ASCII text and expiries past 2038 included, reads back equal."""
        data = token_data(
            "rs",
            identity_id="9d1b8f3e-0000-4000-8000-\u00e9\U0001f511",
            scope="openid profile email urn:globus:auth:scope:rs:all[*https://x/y]",
            access_token="Ag\u00e9\U0001f511+/=.-_~",
            refresh_token="Ag-refresh \u4e2d\u6587",
            expires_at_seconds=expires_at_seconds,
            token_type="DPoP",
        )
        token_storage.store_token_data_by_resource_server({"rs": data})

        got = _stored(token_storage, "rs")

        assert _fields(got) == _fields(data)
        assert type(got.expires_at_seconds) is int

    def test_optional_fields_round_trip_as_none(self, token_storage: TokenStorage) -> None:
        """``identity_id``, ``refresh_token`` and ``token_type`` may be ``None``."""
        data = token_data("rs", identity_id=None, refresh_token=None, token_type=None)
        token_storage.store_token_data_by_resource_server({"rs": data})

        assert _fields(token_storage.get_token_data("rs")) == _fields(data)

    def test_long_scopes_and_tokens_round_trip(self, token_storage: TokenStorage) -> None:
        """A scope string of several KiB and tokens of 8 KiB are kept whole."""
        scope = " ".join(f"https://auth.globus.org/scopes/{i:04d}/data_access" for i in range(200))
        data = token_data("rs", scope=scope, access_token="A" * 8192, refresh_token="R" * 8192)
        token_storage.store_token_data_by_resource_server({"rs": data})

        assert _fields(token_storage.get_token_data("rs")) == _fields(data)

    def test_extra_never_disturbs_the_other_fields(self, token_storage: TokenStorage) -> None:
        """Data with ``extra`` stores; ``extra`` is kept exactly or dropped, never mangled."""
        extra = {"nested": {"list": [1, 2.5, None, True, "x"]}, "text": "\u00e9"}
        data = token_data("rs", extra=extra)
        token_storage.store_token_data_by_resource_server({"rs": data})

        got = _stored(token_storage, "rs")

        assert _fields(got) == _fields(data)
        assert got.extra in ({}, extra), "extra must be kept exactly or dropped entirely"

    def test_extra_round_trips(self, token_storage: TokenStorage) -> None:
        """``extra`` reads back exactly (only where ``preserves_extra`` is set)."""
        if not self.preserves_extra:
            pytest.skip("preserves_extra is False: the storage may drop extra, as globus-sdk's do")
        extra = {
            "nested": {"list": [1, 2.5, -3, None, True, False, "x"], "empty": {}},
            "unicode": "\u00e9\U0001f511 \u2028",
            "big": 2**62,
        }
        token_storage.store_token_data_by_resource_server({"rs": token_data("rs", extra=extra)})

        got = token_storage.get_token_data("rs")

        assert got is not None
        assert got.extra == extra
        assert got.to_dict(include_extra=True)["nested"] == extra["nested"]

    def test_data_read_back_is_a_copy(self, token_storage: TokenStorage) -> None:
        """Changing stored or returned objects afterwards changes nothing stored."""
        data = token_data("rs", access_token="stored")
        token_storage.store_token_data_by_resource_server({"rs": data})
        data.access_token = "changed after store"
        _stored(token_storage, "rs").access_token = "changed after get"
        token_storage.get_token_data_by_resource_server().pop("rs")

        assert _stored(token_storage, "rs").access_token == "stored"

    # --- overwriting ---

    def test_store_replaces_every_field_of_earlier_data(self, token_storage: TokenStorage) -> None:
        """Storing a resource server again replaces all its fields, ``None`` ones too."""
        token_storage.store_token_data_by_resource_server({"rs": token_data("rs")})
        newer = token_data(
            "rs",
            identity_id=None,
            scope="newer scope",
            refresh_token=None,
            expires_at_seconds=12345,
            token_type=None,
        )
        token_storage.store_token_data_by_resource_server({"rs": newer})

        assert _fields(token_storage.get_token_data("rs")) == _fields(newer)
        assert list(token_storage.get_token_data_by_resource_server()) == ["rs"]

    def test_store_keeps_other_resource_servers(self, token_storage: TokenStorage) -> None:
        """Storing one resource server leaves the others of the namespace alone."""
        first = token_data("a")
        token_storage.store_token_data_by_resource_server({"a": first})
        token_storage.store_token_data_by_resource_server({"b": token_data("b")})

        assert sorted(token_storage.get_token_data_by_resource_server()) == ["a", "b"]
        assert _fields(token_storage.get_token_data("a")) == _fields(first)

    def test_store_of_nothing_changes_nothing(self, token_storage: TokenStorage) -> None:
        """Storing an empty mapping is allowed and changes nothing."""
        token_storage.store_token_data_by_resource_server({})
        assert token_storage.get_token_data_by_resource_server() == {}
        token_storage.store_token_data_by_resource_server({"a": token_data("a")})
        token_storage.store_token_data_by_resource_server({})
        assert list(token_storage.get_token_data_by_resource_server()) == ["a"]

    # --- remove ---

    def test_remove_returns_true_then_false(self, token_storage: TokenStorage) -> None:
        """Removing stored data returns ``True`` and removes it; again, ``False``."""
        token_storage.store_token_data_by_resource_server({"rs": token_data("rs")})

        assert token_storage.remove_token_data("rs") is True
        assert token_storage.get_token_data("rs") is None
        assert token_storage.get_token_data_by_resource_server() == {}
        assert token_storage.remove_token_data("rs") is False

    def test_remove_leaves_other_resource_servers(self, token_storage: TokenStorage) -> None:
        """Removing one resource server leaves the others of the namespace alone."""
        kept = token_data("b")
        token_storage.store_token_data_by_resource_server({"a": token_data("a"), "b": kept})

        assert token_storage.remove_token_data("a") is True
        assert list(token_storage.get_token_data_by_resource_server()) == ["b"]
        assert _fields(token_storage.get_token_data("b")) == _fields(kept)

    def test_a_removed_resource_server_can_be_stored_again(
        self, token_storage: TokenStorage
    ) -> None:
        """A resource server can be stored again after it was removed."""
        token_storage.store_token_data_by_resource_server({"rs": token_data("rs")})
        token_storage.remove_token_data("rs")
        again = token_data("rs")
        token_storage.store_token_data_by_resource_server({"rs": again})

        assert _fields(token_storage.get_token_data("rs")) == _fields(again)

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
        assert _stored(alice, "rs").access_token == "alice"
        assert _stored(bob, "rs").access_token == "bob"
        assert bob.get_token_data("alice-only") is None
        assert bob.remove_token_data("alice-only") is False
        assert bob.remove_token_data("rs") is True
        assert sorted(alice.get_token_data_by_resource_server()) == ["alice-only", "rs"]
        assert _stored(alice, "rs").access_token == "alice"

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

    @_each_key(ODD_KEYS)
    def test_odd_namespaces_work(self, make_token_storage: MakeTokenStorage, key: str) -> None:
        """Namespaces with URLs, quotes, SQL, patterns and non-ASCII text work."""
        storage = make_token_storage(unique_namespace() + key)
        data = token_data("rs")
        storage.store_token_data_by_resource_server({"rs": data})

        assert _fields(storage.get_token_data("rs")) == _fields(data)
        assert make_token_storage().get_token_data("rs") is None

    @_each_key(LOOKALIKE_KEYS)
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
        assert _stored(one, "rs").access_token == "one"

    # --- resource server keys ---

    @_each_key(ODD_KEYS)
    def test_odd_resource_servers_round_trip(self, token_storage: TokenStorage, key: str) -> None:
        """Resource servers with URLs, quotes, SQL, patterns and non-ASCII text work."""
        data = token_data(key)
        token_storage.store_token_data_by_resource_server({key: data})

        assert list(token_storage.get_token_data_by_resource_server()) == [key]
        assert _fields(token_storage.get_token_data(key)) == _fields(data)
        assert token_storage.remove_token_data(key) is True
        assert token_storage.get_token_data_by_resource_server() == {}

    @_each_key(LOOKALIKE_KEYS)
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

    # --- store_token_response ---

    def test_a_token_response_is_stored_by_resource_server(
        self, token_storage: TokenStorage
    ) -> None:
        """``store_token_response`` stores each token of the response by resource server."""
        response = token_response("auth.globus.org", "transfer.api.globus.org")
        token_storage.store_token_response(response)

        stored = token_storage.get_token_data_by_resource_server()

        assert sorted(stored) == ["auth.globus.org", "transfer.api.globus.org"]
        for resource_server, data in stored.items():
            sent = response.by_resource_server[resource_server]
            assert data.resource_server == resource_server
            assert data.identity_id is None  # the response has no id_token
            assert data.scope == sent["scope"]
            assert data.access_token == sent["access_token"]
            assert data.refresh_token == sent["refresh_token"]
            assert data.expires_at_seconds == sent["expires_at_seconds"]
            assert data.token_type == sent["token_type"]
        assert stored["transfer.api.globus.org"].refresh_token is None

    def test_a_later_token_response_replaces_earlier_tokens(
        self, token_storage: TokenStorage
    ) -> None:
        """A later response (a refresh, say) replaces the tokens it holds, and only those."""
        token_storage.store_token_data_by_resource_server({"other": token_data("other")})
        token_storage.store_token_response(token_response("transfer.api.globus.org"))
        refreshed = token_response("transfer.api.globus.org")
        token_storage.store_token_response(refreshed)

        got = token_storage.get_token_data("transfer.api.globus.org")

        sent = refreshed.by_resource_server["transfer.api.globus.org"]
        assert got is not None
        assert (got.access_token, got.refresh_token) == (
            sent["access_token"],
            sent["refresh_token"],
        )
        assert sorted(token_storage.get_token_data_by_resource_server()) == [
            "other",
            "transfer.api.globus.org",
        ]

    def test_a_dependent_token_response_is_stored_by_resource_server(
        self, token_storage: TokenStorage
    ) -> None:
        """A dependent-token response (a list of tokens) is stored, without identity."""
        response = dependent_token_response("transfer.api.globus.org", "groups.api.globus.org")
        token_storage.store_token_response(response)

        stored = token_storage.get_token_data_by_resource_server()

        assert sorted(stored) == ["groups.api.globus.org", "transfer.api.globus.org"]
        for resource_server, data in stored.items():
            assert data.identity_id is None
            assert data.access_token == response.by_resource_server[resource_server]["access_token"]

    # --- iter_namespaces (optional: not every storage has it) ---

    def test_iter_namespaces_lists_each_namespace_once(
        self, make_token_storage: MakeTokenStorage
    ) -> None:
        """``iter_namespaces``, where present, lists each namespace holding data once."""
        storages = [make_token_storage() for _ in range(3)]
        iter_namespaces = getattr(make_token_storage(), "iter_namespaces", None)
        if not callable(iter_namespaces):
            pytest.skip("the storage has no iter_namespaces (optional in globus-sdk)")
        for storage in storages:
            storage.store_token_data_by_resource_server(
                {"a": token_data("a"), "b": token_data("b")}
            )
        storages[0].remove_token_data("a")

        listed = list(iter_namespaces())

        assert all(isinstance(name, str) for name in listed)
        for storage in storages:
            assert listed.count(storage.namespace) == 1, storage.namespace

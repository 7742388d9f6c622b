"""Storing, reading, overwriting and removing token data in one namespace."""

from __future__ import annotations

import pytest

from ..._sdk import TokenStorage
from ..data import token_data, unique_namespace
from ._support import ContractBase, MakeTokenStorage, fields_of, stored


class StoringContract(ContractBase):
    """Storing, reading, overwriting and removing token data in one namespace."""

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

        assert fields_of(token_storage.get_token_data("transfer.api.globus.org")) == fields_of(data)

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
        assert {rs: fields_of(d) for rs, d in got.items()} == {
            rs: fields_of(d) for rs, d in data.items()
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

        got = stored(token_storage, "rs")

        assert fields_of(got) == fields_of(data)
        assert type(got.expires_at_seconds) is int

    def test_optional_fields_round_trip_as_none(self, token_storage: TokenStorage) -> None:
        """``identity_id``, ``refresh_token`` and ``token_type`` may be ``None``."""
        data = token_data("rs", identity_id=None, refresh_token=None, token_type=None)
        token_storage.store_token_data_by_resource_server({"rs": data})

        assert fields_of(token_storage.get_token_data("rs")) == fields_of(data)

    def test_long_scopes_and_tokens_round_trip(self, token_storage: TokenStorage) -> None:
        """A scope string of several KiB and tokens of 8 KiB are kept whole."""
        scope = " ".join(f"https://auth.globus.org/scopes/{i:04d}/data_access" for i in range(200))
        data = token_data("rs", scope=scope, access_token="A" * 8192, refresh_token="R" * 8192)
        token_storage.store_token_data_by_resource_server({"rs": data})

        assert fields_of(token_storage.get_token_data("rs")) == fields_of(data)

    def test_extra_never_disturbs_the_other_fields(self, token_storage: TokenStorage) -> None:
        """Data with ``extra`` stores; ``extra`` is kept exactly or dropped, never mangled."""
        extra = {"nested": {"list": [1, 2.5, None, True, "x"]}, "text": "\u00e9"}
        data = token_data("rs", extra=extra)
        token_storage.store_token_data_by_resource_server({"rs": data})

        got = stored(token_storage, "rs")

        assert fields_of(got) == fields_of(data)
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
        stored(token_storage, "rs").access_token = "changed after get"
        token_storage.get_token_data_by_resource_server().pop("rs")

        assert stored(token_storage, "rs").access_token == "stored"

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

        assert fields_of(token_storage.get_token_data("rs")) == fields_of(newer)
        assert list(token_storage.get_token_data_by_resource_server()) == ["rs"]

    def test_store_keeps_other_resource_servers(self, token_storage: TokenStorage) -> None:
        """Storing one resource server leaves the others of the namespace alone."""
        first = token_data("a")
        token_storage.store_token_data_by_resource_server({"a": first})
        token_storage.store_token_data_by_resource_server({"b": token_data("b")})

        assert sorted(token_storage.get_token_data_by_resource_server()) == ["a", "b"]
        assert fields_of(token_storage.get_token_data("a")) == fields_of(first)

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
        assert fields_of(token_storage.get_token_data("b")) == fields_of(kept)

    def test_a_removed_resource_server_can_be_stored_again(
        self, token_storage: TokenStorage
    ) -> None:
        """A resource server can be stored again after it was removed."""
        token_storage.store_token_data_by_resource_server({"rs": token_data("rs")})
        token_storage.remove_token_data("rs")
        again = token_data("rs")
        token_storage.store_token_data_by_resource_server({"rs": again})

        assert fields_of(token_storage.get_token_data("rs")) == fields_of(again)

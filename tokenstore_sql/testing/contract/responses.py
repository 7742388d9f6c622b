"""Token responses stored by resource server, and listing namespaces."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from ..._sdk import TokenStorage, TokenStorageData
from ..data import dependent_token_response, token_data, token_response
from ._support import ContractBase, MakeTokenStorage

if TYPE_CHECKING:
    from globus_sdk import OAuthTokenResponse


class ResponseContract(ContractBase):
    """Token responses stored by resource server, and listing namespaces."""

    # --- store_token_response ---

    def test_a_token_response_is_stored_by_resource_server(
        self, token_storage: TokenStorage
    ) -> None:
        """``store_token_response`` stores each token of the response by resource server."""
        response = token_response("auth.globus.org", "transfer.api.globus.org")

        stored = _store_and_read_back(token_storage, response)

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

        _store_and_read_back(token_storage, response)

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


def _store_and_read_back(
    token_storage: TokenStorage, response: OAuthTokenResponse
) -> dict[str, TokenStorageData]:
    """Store a token response; give all the storage then holds, checked to be its tokens.

    Each token is stored as sent, by resource server, with no identity (the responses
    of :mod:`tokenstore_sql.testing.data` carry no ``id_token``).
    """
    token_storage.store_token_response(response)
    stored = token_storage.get_token_data_by_resource_server()
    assert sorted(stored) == sorted(response.by_resource_server)
    for resource_server, data in stored.items():
        sent = response.by_resource_server[resource_server]
        assert data.resource_server == resource_server
        assert data.identity_id is None
        assert data.scope == sent["scope"]
        assert data.access_token == sent["access_token"]
        assert data.refresh_token == sent["refresh_token"]
        assert data.expires_at_seconds == sent["expires_at_seconds"]
        assert data.token_type == sent["token_type"]
    return stored

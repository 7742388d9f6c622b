"""``TokenStore``: one engine for a multi-user backend, and a storage per user from it.

A web backend creates one ``TokenStore`` per process at start-up and asks it for a
user's storage (or refreshing authorizer) in each request. Creating the store does no
I/O; the first storage it hands out checks the schema (as its settings allow: create,
upgrade, or only require it), once per engine in a process, and the later ones cost no
I/O. :meth:`TokenStore.check_schema` does that up front.

The store also owns the admin operations on its database, with its settings: schema
:meth:`~TokenStore.upgrade`, :meth:`~TokenStore.check` and :meth:`~TokenStore.status`,
:meth:`~TokenStore.prune` and :meth:`~TokenStore.stats`, key rotation, import and
export. The schema operations work on a database whose schema is behind (that is what
they are for); the others first bring the schema to head as the settings allow.

Namespaces follow the package's convention (see :mod:`tokenstore_sql.namespaces`):
``user:{identity_id}``, or ``{app}:user:{identity_id}`` when several apps share a database.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from globus_sdk import AuthLoginClient
from sqlalchemy import Engine

from ._sdk import TokenStorageData
from .admin import StoreAdmin
from .engines import EngineOwner
from .refresh import LockingRefreshTokenAuthorizer, OnRefresh, refresh_once
from .refresh_request import RefreshOptions
from .storage import SQLAlchemyTokenStorage
from .store_common import AppStore

if TYPE_CHECKING:
    pass


class TokenStore(
    AppStore[Engine, SQLAlchemyTokenStorage, TokenStorageData], StoreAdmin, EngineOwner
):
    """The token data of many users in one database, over one shared engine.

    :param url_or_engine: a database URL, or an ``Engine`` (which the store then never
        disposes of)
    :param app: the app or environment label put in every namespace (see
        :func:`user_namespace`); None for none
    :param settings: placement, keys, retry policy, schema policy and engine options,
        shared by every storage the store hands out and by its admin operations
    :param options: any field of :class:`~tokenstore_sql.settings.StoreSettings` by name,
        replacing that field of ``settings``
    """

    def for_namespace(self, namespace: str) -> SQLAlchemyTokenStorage:
        """Return a storage over the shared engine for any namespace.

        The first storage checks the schema as the settings allow; later ones cost no I/O.
        """
        return SQLAlchemyTokenStorage(self.engine, namespace=namespace, settings=self.settings)

    def authorizer(
        self,
        identity_id: str | uuid.UUID,
        resource_server: str,
        auth_client: AuthLoginClient,
        *,
        on_refresh: OnRefresh | None = None,
    ) -> LockingRefreshTokenAuthorizer:
        """Return an authorizer for a user's calls to a resource server.

        It refreshes an expired access token at most once across every worker that
        shares the database (see :class:`~tokenstore_sql.refresh.LockingRefreshTokenAuthorizer`).

        :raises MissingTokenDataError: the user has no token data (or no refresh token)
            for that resource server: send them to log in
        """
        return LockingRefreshTokenAuthorizer(
            self.for_user(identity_id), resource_server, auth_client, on_refresh=on_refresh
        )

    def _refresh_once(
        self,
        storage: SQLAlchemyTokenStorage,
        resource_server: str,
        auth_client: AuthLoginClient,
        options: RefreshOptions,
    ) -> TokenStorageData:
        return refresh_once(storage, resource_server, auth_client, **options)

    def remove_user(self, identity_id: str | uuid.UUID) -> int:
        """Remove every token of one user (logout, offboarding) in one transaction.

        :returns: how many resource servers' token data were removed
        """
        return self.for_user(identity_id).remove_namespace()

"""``AsyncTokenStore``: the async twin of :class:`~tokenstore_sql.TokenStore`.

An asyncio web backend creates one per process (in its lifespan) and asks it for a
user's storage, or a fresh access token, in each request. Namespaces follow the same
convention as the sync store's (see :func:`~tokenstore_sql.user_namespace`), so both
APIs read each other's rows.

It owns the admin operations, with its settings, as coroutines. The schema's
:meth:`~AsyncTokenStore.check_schema`, :meth:`~AsyncTokenStore.check` and
:meth:`~AsyncTokenStore.upgrade`, which a service runs in its lifespan, run on the async
engine itself. The others (downgrade, status, namespaces, prune, statistics, key
rotation, import and export) are those of :class:`~tokenstore_sql.TokenStore`, run in a
worker thread on a sync engine the store opens for them and disposes of in
:meth:`~AsyncTokenStore.aclose` (see :mod:`tokenstore_sql.async_admin`).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable

from globus_sdk import AuthLoginClient
from sqlalchemy.ext.asyncio import AsyncEngine

from ._sdk import TokenStorageData
from .async_admin import AsyncStoreAdmin
from .async_engines import AsyncEngineOwner
from .async_refresh import async_refresh_once
from .async_storage import AsyncSQLAlchemyTokenStorage
from .refresh_request import RefreshOptions
from .schema import SchemaStatus, ensure_schema_on, require_head
from .store_common import AppStore


class AsyncTokenStore(
    AppStore[AsyncEngine, AsyncSQLAlchemyTokenStorage, Awaitable[TokenStorageData]],
    AsyncStoreAdmin,
    AsyncEngineOwner,
):
    """The token data of many users in one database, over one shared async engine.

    Constructing it does no I/O; the first call (or :meth:`check_schema`, in an ASGI
    lifespan) checks the schema once.

    :param url_or_engine: a database URL, or an ``AsyncEngine`` (never disposed of
        by the store)
    :param app: the app or environment label put in every namespace; None for none
    :param settings: placement, keys, retry policy, schema policy and engine options,
        shared by every storage the store hands out and by its admin operations
    :param options: any field of :class:`~tokenstore_sql.settings.StoreSettings` by name,
        replacing that field of ``settings``
    """

    def for_namespace(self, namespace: str) -> AsyncSQLAlchemyTokenStorage:
        """Return a storage over the shared engine for any namespace; no I/O."""
        return AsyncSQLAlchemyTokenStorage(self.engine, namespace=namespace, settings=self.settings)

    async def check_schema(self) -> None:
        """Check (and create, or upgrade, as the options allow) the schema, once per engine.

        :raises SchemaOutOfDateError: the database needs ``tokenstore-sql upgrade`` first
        """
        await self.for_namespace("schema-check").check_schema()

    async def check(self) -> SchemaStatus:
        """Check, changing nothing, that the database is at this package's head.

        :raises SchemaOutOfDateError: the schema is older, or absent: :meth:`upgrade`
        :raises SchemaTooNewError: a revision this package does not know: upgrade it
        :raises SchemaNotManagedError: token tables exist without a version record
        """
        async with self.engine.connect() as connection:
            return await connection.run_sync(require_head, self.placement)

    async def upgrade(self) -> None:
        """Create or upgrade the schema to head under the schema lock, once.

        Whatever ``upgrade_schema`` says: this is the explicit request.
        """
        async with self.engine.connect() as connection:
            await connection.run_sync(ensure_schema_on, self.placement, create=True, upgrade=True)

    async def aclose(self) -> None:
        """Dispose of the admin operations' engine, and of the engine if created here.

        Safe to repeat.
        """
        await self._close_sync_store()
        await super().aclose()

    def _refresh_once(
        self,
        storage: AsyncSQLAlchemyTokenStorage,
        resource_server: str,
        auth_client: AuthLoginClient,
        options: RefreshOptions,
    ) -> Awaitable[TokenStorageData]:
        return async_refresh_once(storage, resource_server, auth_client, **options)

    async def remove_user(self, identity_id: str | uuid.UUID) -> int:
        """Remove every token of one user (logout, offboarding) in one transaction.

        :returns: how many resource servers' token data were removed
        """
        return await self.for_user(identity_id).remove_namespace()

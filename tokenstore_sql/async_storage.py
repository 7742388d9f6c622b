"""``AsyncSQLAlchemyTokenStorage``: the token storage for asyncio web backends.

The same rows and the same semantics as :class:`~tokenstore_sql.SQLAlchemyTokenStorage`,
awaited instead of blocking: the statements, the validation and encryption of the codec,
the retry policy and the schema handling are the sync storage's own. Each call is one
statement in one transaction on a connection of its own, so one storage (or one engine
shared by many storages) serves any number of concurrent tasks of one event loop. Every
statement goes through :mod:`tokenstore_sql.execution_async`, which runs it on the
driver's own connection, as the sync storage does, or through SQLAlchemy's
``AsyncConnection`` for drivers it does not drive directly (asyncpg, asyncmy).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, Executable, Select
from sqlalchemy.ext.asyncio import AsyncEngine

from ._sdk import TokenStorage, TokenStorageData
from .async_engines import AsyncEngineOwner
from .codec import check_key, rows_for_storage, stamped, token_data_from_values
from .execution_async import AsyncExecution
from .models import Placement
from .schema import ensure_schema_on, is_checked
from .settings import StoreSettings
from .statements import check_dialect, key_params
from .storage_common import StorageCommon

if TYPE_CHECKING:
    from globus_sdk import OAuthTokenResponse

# One lock per engine and placement, so that concurrent first calls check the schema once.
_schema_locks: weakref.WeakKeyDictionary[Engine, dict[Placement, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)
_schema_locks_guard = threading.Lock()


class AsyncSQLAlchemyTokenStorage(StorageCommon[AsyncEngine], AsyncEngineOwner):
    """Token data in a SQLite, PostgreSQL or MySQL database, for asyncio code.

    The methods are those of globus-sdk's ``TokenStorage``, as coroutines, and
    ``iter_namespaces`` as an async iterator. Constructing a storage does no I/O: the
    first call checks the schema (once per engine and placement in a process), creating
    it on an empty database; :meth:`check_schema` does that up front (in an ASGI app's
    lifespan, say). An engine's pooled connections belong to the event loop that opened
    them: use an engine, and the storages on it, within one loop.

    :param url_or_engine: a database URL, or an ``AsyncEngine`` (left to its
        owner); a sync URL is mapped to the async driver (see :func:`create_async_engine`)
    :param namespace: the partition of token data this storage reads and writes
    :param settings: as for :class:`~tokenstore_sql.SQLAlchemyTokenStorage`, and each of
        its fields by name among ``options``
    """

    def _opened(self, engine: AsyncEngine, settings: StoreSettings, namespace: str) -> None:
        self.namespace = namespace
        check_dialect(engine.dialect)  # an engine that never connected holds nothing to dispose
        settings.placement.check_dialect(engine.dialect.name)
        self._schema = {"create": settings.create_schema, "upgrade": settings.upgrade_schema}
        self._schema_ready = False  # found at head by this storage's first call
        self._execution = AsyncExecution(engine, settings.retry)

    async def check_schema(self) -> None:
        """Check the schema (creating or upgrading it as the options allow), once.

        Once per engine and placement in a process: concurrent first calls wait for one
        check. It runs on the driver's own connection without blocking the event loop.

        :raises SchemaOutOfDateError: the database needs ``tokenstore-sql upgrade`` first
        """
        engine = self.engine.sync_engine
        if is_checked(engine, self.placement):
            return
        with _schema_locks_guard:
            lock = _schema_locks.setdefault(engine, {}).setdefault(self.placement, asyncio.Lock())
        async with lock:
            if not is_checked(engine, self.placement):  # else another task just checked it
                await self.retry.run_async("open the database", self.engine, self._check_once)

    async def _check_once(self) -> None:
        async with self.engine.connect() as connection:  # the schema check begins its own
            await connection.run_sync(ensure_schema_on, self.placement, **self._schema)

    async def store_token_data_by_resource_server(
        self, token_data_by_resource_server: Mapping[str, TokenStorageData]
    ) -> None:
        """Store token data for one or more resource servers, all or nothing.

        :raises InvalidTokenDataError: on bad input, before anything is written
        """
        rows = rows_for_storage(self.namespace, token_data_by_resource_server, self.keys)
        if not rows:
            return
        statement, batch = self._statements.upsert_of(self.engine.dialect, stamped(rows))
        await self._write("store token data", statement, batch)

    async def store_token_response(self, token_response: OAuthTokenResponse) -> None:
        """Store the tokens of a globus-sdk token response, as ``TokenStorage`` does.

        The identity comes from the response's ``id_token``, decoded by globus-sdk in a
        worker thread (it may fetch Globus Auth's keys).
        """
        reader = _ResponseReader(self.namespace)
        await asyncio.to_thread(reader.store_token_response, token_response)
        await self.store_token_data_by_resource_server(reader.token_data)

    async def get_token_data_by_resource_server(self) -> dict[str, TokenStorageData]:
        """Retrieve all token data stored in this namespace, by resource server."""
        params = key_params(self.namespace)
        rows = await self._read("read token data", self._statements.select_namespace, params)
        return self._by_resource_server(rows)

    async def get_token_data(self, resource_server: str) -> TokenStorageData | None:
        """Retrieve token data for one resource server in this namespace (None if absent)."""
        check_key("resource server", resource_server)
        if not self._schema_ready:
            await self._ready()
        values = await self._execution.read_row(
            "read token data", self._statements, self.namespace, resource_server
        )
        if values is None:
            return None
        return token_data_from_values(self.namespace, values, self.settings.keys)

    async def remove_token_data(self, resource_server: str) -> bool:
        """Remove token data for one resource server; True if there was any."""
        check_key("resource server", resource_server)
        params = key_params(self.namespace, resource_server)
        return await self._write("remove token data", self._statements.delete_one, [params]) > 0

    async def remove_namespace(self) -> int:
        """Remove all token data of this namespace in one transaction; give the count."""
        params = key_params(self.namespace)
        return await self._write("remove a namespace", self._statements.delete_namespace, [params])

    async def iter_namespaces(self) -> AsyncIterator[str]:
        """Iterate over every namespace that holds token data in this database, in order."""
        for row in await self._read("list namespaces", self._statements.select_namespaces(), {}):
            yield row["namespace"]

    async def _read(
        self, operation: str, statement: Select[Any], params: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        """Fetch the rows of one ``SELECT``, through the execution seam."""
        await self._ready()
        return await self._execution.read_rows(operation, statement, params)

    async def _write(
        self, operation: str, statement: Executable, rows: Sequence[Mapping[str, Any]]
    ) -> int:
        """Run one write statement for ``rows``, through the execution seam."""
        await self._ready()
        return await self._execution.write_rows(operation, statement, rows)

    async def _ready(self) -> None:
        """Check the schema on this storage's first call (an attribute read afterwards).

        Once found at head, as the sync storage finds it when it is constructed.
        """
        if not self._schema_ready:
            if not is_checked(self.engine.sync_engine, self.placement):
                await self.check_schema()
            self._schema_ready = True


class _ResponseReader(TokenStorage):
    """globus-sdk's own reading of a token response, keeping the result for the caller."""

    def __init__(self, namespace: str) -> None:
        super().__init__(namespace=namespace)
        self.token_data: dict[str, TokenStorageData] = {}

    def store_token_data_by_resource_server(
        self, token_data_by_resource_server: Mapping[str, TokenStorageData]
    ) -> None:
        self.token_data = dict(token_data_by_resource_server)

    def get_token_data_by_resource_server(self) -> dict[str, TokenStorageData]:
        return dict(self.token_data)

    def get_token_data(self, resource_server: str) -> TokenStorageData | None:
        return self.token_data.get(resource_server)

    def remove_token_data(self, resource_server: str) -> bool:
        return self.token_data.pop(resource_server, None) is not None

"""The admin operations of an :class:`~tokenstore_sql.AsyncTokenStore`, run in a worker thread.

Downgrade, status, namespaces, prune, statistics, key rotation, import and export are
each the :class:`~tokenstore_sql.admin.StoreAdmin` operation of a sync
:class:`~tokenstore_sql.TokenStore` with the async store's settings, awaited in a worker
thread (:func:`asyncio.to_thread`): the same parameters, results and errors, and the
event loop keeps serving while a job reads or writes files, waits for a lock or sleeps
before a retry.

That sync store is opened on the first such call (constructing the async store stays
free of I/O), over an engine of its own on the same database: the async engine's URL,
password included but never shown, with its backend's sync driver (sqlite3, psycopg,
PyMySQL), and the settings' ``engine_options``. :meth:`AsyncTokenStore.aclose` disposes
of it. An engine of your own gives its URL but not the options it was created with
(``connect_args``, say): give them as ``engine_options`` too.

Why not the async engine itself, through ``AsyncConnection.run_sync``: the sync code
would run on the event loop's thread, blocking it through every file read and write and
every sleep between retries; and the storages' direct driver path (:mod:`tokenstore_sql.direct`)
needs a sync driver's connection (on psycopg's async one it fails). The schema check and
upgrade need neither, and run that way (see :mod:`tokenstore_sql.async_store`).

An in-memory SQLite database lives in its one connection, where a second engine would
open another, empty database: these operations refuse it with a
:class:`~tokenstore_sql.errors.ConfigurationError` (use a database file, or a ``TokenStore``).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Concatenate, TypeVar

from sqlalchemy import URL
from sqlalchemy.ext.asyncio import AsyncEngine
from typing_extensions import ParamSpec

from .admin import StoreAdmin
from .backends import backend_for
from .errors import ConfigurationError
from .settings import StoreSettings
from .store import TokenStore

_T = TypeVar("_T")
_P = ParamSpec("_P")


def sync_url(url: URL) -> URL:
    """Give an async engine's URL with the sync driver tokenstore-sql uses for its database.

    :raises UnsupportedDatabaseError: a database tokenstore-sql does not support
    """
    name = url.get_backend_name()
    backend = backend_for(name)
    return url.set(drivername=name if backend.driver is None else f"{name}+{backend.driver[0]}")


def sync_engine_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Give an async engine's options as a sync engine takes them: no asyncio pool or creator."""
    return {
        name: value
        for name, value in options.items()
        if name != "async_creator" and not getattr(value, "_is_asyncio", False)
    }


def _threaded(
    operation: Callable[Concatenate[StoreAdmin, _P], _T],
) -> Callable[Concatenate[AsyncStoreAdmin, _P], Coroutine[Any, Any, _T]]:
    """Make an admin operation a coroutine that awaits it in a worker thread.

    On the async store's sync twin; the parameters, results, errors and docstring are
    the sync operation's own.
    """

    async def threaded(self: AsyncStoreAdmin, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        return await self._in_thread(lambda store: operation(store, *args, **kwargs))

    functools.update_wrapper(threaded, operation)
    return threaded


class AsyncStoreAdmin:
    """The admin operations of :class:`~tokenstore_sql.admin.StoreAdmin`, as coroutines.

    Each takes the same parameters and gives the same result as the sync operation of
    that name; a file is read or written, and ``progress`` called, in the worker thread.
    Leave a stream given to :meth:`export_stream` alone until it returns.
    """

    engine: AsyncEngine
    settings: StoreSettings
    _sync_store: TokenStore | None = None

    downgrade = _threaded(StoreAdmin.downgrade)
    status = _threaded(StoreAdmin.status)
    namespaces = _threaded(StoreAdmin.namespaces)
    prune = _threaded(StoreAdmin.prune)
    stats = _threaded(StoreAdmin.stats)
    rotate_keys = _threaded(StoreAdmin.rotate_keys)
    import_files = _threaded(StoreAdmin.import_files)
    export_file = _threaded(StoreAdmin.export_file)
    export_stream = _threaded(StoreAdmin.export_stream)

    async def _in_thread(self, operation: Callable[[TokenStore], _T]) -> _T:
        """Run a sync store's operation in a worker thread, on the store's sync twin."""
        store = self._sync_store if self._sync_store is not None else self._open_sync_store()
        return await asyncio.to_thread(operation, store)

    def _open_sync_store(self) -> TokenStore:
        # Only builds the engine: it connects in the worker thread, on first use.
        url = self.engine.url
        if backend_for(url.get_backend_name()).in_memory(url):
            raise ConfigurationError(
                "the async store's admin operations need a second connection to the "
                "database, and an in-memory SQLite database cannot have one: use a "
                "database file, or a TokenStore"
            )
        options = sync_engine_options(self.settings.engine_options)
        self._sync_store = TokenStore(
            sync_url(url), settings=self.settings.replace(engine_options=options)
        )
        return self._sync_store

    async def _close_sync_store(self) -> None:
        """Dispose of the sync store's engine, if one was opened (in a worker thread)."""
        store, self._sync_store = self._sync_store, None
        if store is not None:
            await asyncio.to_thread(store.close)

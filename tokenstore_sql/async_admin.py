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
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TextIO, TypeVar

from sqlalchemy import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from . import maintenance, rotation, schema, transfer
from .backends import backend_for
from .errors import ConfigurationError
from .settings import StoreSettings
from .store import TokenStore

_T = TypeVar("_T")


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


class AsyncStoreAdmin:
    """The admin operations of :class:`~tokenstore_sql.admin.StoreAdmin`, as coroutines."""

    engine: AsyncEngine
    settings: StoreSettings
    _sync_store: TokenStore | None = None

    async def downgrade(self, revision: str) -> str | None:
        """Downgrade the schema to ``revision`` (a revision id, ``-1`` or ``base``).

        ``base`` drops the token table and every token in it.

        :returns: the revision the database is at afterwards (None: no schema)
        """
        return await self._in_thread(lambda store: store.downgrade(revision))

    async def status(self) -> schema.SchemaStatus:
        """Tell where the schema stands against this package's head; changes nothing.

        :raises SchemaNotManagedError: token tables exist without a version record
        """
        return await self._in_thread(TokenStore.status)

    async def namespaces(self) -> list[str]:
        """List every namespace that holds token data, in order."""
        return await self._in_thread(TokenStore.namespaces)

    async def prune(self, *, dry_run: bool = False, now: int | None = None) -> int:
        """Remove every row that can never be used again (see :func:`maintenance.prune`).

        :returns: how many rows were removed (or would be, with ``dry_run``)
        """
        return await self._in_thread(lambda store: store.prune(dry_run=dry_run, now=now))

    async def stats(self, *, now: int | None = None) -> maintenance.TokenStats:
        """Count rows by namespace and by resource server (see :func:`maintenance.stats`)."""
        return await self._in_thread(lambda store: store.stats(now=now))

    async def rotate_keys(
        self, *, decrypt: bool = False, batch_size: int = rotation.DEFAULT_BATCH_SIZE
    ) -> rotation.RotationReport:
        """Bring every row under the first of the settings' keys, or into clear text.

        See :func:`~tokenstore_sql.rotation.rotate_keys`.
        """
        return await self._in_thread(
            lambda store: store.rotate_keys(decrypt=decrypt, batch_size=batch_size)
        )

    async def import_files(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        namespace: str | None = None,
        on_conflict: str = "newer",
        dry_run: bool = False,
        identity_from_config: bool = False,
        progress: Callable[[str], None] | None = None,
        merge: bool = False,
        allow_plaintext: bool = False,
    ) -> transfer.ImportReport:
        """Import globus-sdk token files in one transaction.

        See :func:`~tokenstore_sql.transfer.import_token_files` for the parameters;
        ``paths`` is read, and ``progress`` called, in the worker thread.
        """
        return await self._in_thread(
            lambda store: store.import_files(
                paths,
                namespace=namespace,
                on_conflict=on_conflict,
                dry_run=dry_run,
                identity_from_config=identity_from_config,
                progress=progress,
                merge=merge,
                allow_plaintext=allow_plaintext,
            )
        )

    async def export_file(
        self,
        path: str | os.PathLike[str],
        *,
        namespaces: Sequence[str] | None = None,
        overwrite: bool = False,
    ) -> dict[str, int]:
        """Write token data to a JSON file globus-sdk's ``JSONTokenStorage`` reads.

        See :func:`~tokenstore_sql.exporting.export_token_file`.

        :returns: the number of tokens written, by namespace
        """
        return await self._in_thread(
            lambda store: store.export_file(path, namespaces=namespaces, overwrite=overwrite)
        )

    async def export_stream(
        self, stream: TextIO, *, namespaces: Sequence[str] | None = None
    ) -> dict[str, int]:
        """Write the JSON of :meth:`export_file` to an open text stream (stdout, say).

        The worker thread writes it: leave the stream alone until this returns.
        """
        return await self._in_thread(
            lambda store: store.export_stream(stream, namespaces=namespaces)
        )

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

"""Async engines that tokenstore-sql creates: the same defaults on asyncio drivers.

The drivers, chosen to behave like the synchronous ones:

- PostgreSQL: psycopg 3 in its async mode, the very package the sync engines use, so
  the same SQLSTATEs, connection options and ``connect_timeout``;
- MySQL/MariaDB: aiomysql, built on PyMySQL (the sync driver), so the same error
  numbers reach the retry policy; its connections run in autocommit mode, as the sync
  engines' do, and every transaction but a single statement begins with ``BEGIN``;
- SQLite: aiosqlite, which runs the standard ``sqlite3`` module in a thread per
  connection, with the same pragmas and ``BEGIN IMMEDIATE`` for writes.

A sync URL names the same database here: ``sqlite:///tokens.db``,
``postgresql+psycopg://...`` and ``mysql+pymysql://...`` are mapped to these drivers.
Neither psycopg nor aiomysql logs bound values; aiosqlite does, and is silenced below.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Final, TypeVar

from sqlalchemy import URL
from sqlalchemy.exc import NoSuchModuleError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.asyncio import create_async_engine as sqlalchemy_async_engine

from .backends import all_backends, find_backend
from .engines import EngineOwnership, configure_engine, engine_arguments, reset_pools_after_fork
from .errors import MissingDriverError
from .urls import missing_driver_hint, parse_url

# aiosqlite logs each operation at DEBUG with its statement and bound values, tokens
# included, on one process-wide logger. As with the engines' own logger (engines.py), a
# filter drops its records below INFO, even where the application logs everything.
logging.getLogger("aiosqlite").addFilter(lambda record: record.levelno >= logging.INFO)

# The asyncio driver a sync URL's backend is mapped to, by dialect name.
ASYNC_DRIVERS: Final = {
    name: backend.async_driver for backend in all_backends() for name in backend.dialect_names
}


def async_url(url: str | URL) -> URL:
    """Give the URL with its driver replaced by the asyncio driver for its backend."""
    url = parse_url(url)
    name = url.get_backend_name()
    backend = find_backend(name)
    named = url.drivername.partition("+")[2]
    if backend is None or named in (backend.async_driver, "asyncpg", "asyncmy"):
        return url
    return url.set(drivername=f"{name}+{backend.async_driver}")


def create_async_engine(url: str | URL, **options: Any) -> AsyncEngine:
    """Create an async engine with tokenstore-sql's defaults; keyword options override them.

    The defaults and options are those of :func:`tokenstore_sql.create_engine`. Share one
    engine between many storages, within one event loop.
    """
    url, arguments, busy_timeout_ms = engine_arguments(async_url(url), options, asynchronous=True)
    try:
        engine = sqlalchemy_async_engine(url, **arguments)
    except (NoSuchModuleError, ImportError):
        raise MissingDriverError(missing_driver_hint(url)) from None
    configure_engine(engine.sync_engine, busy_timeout_ms)
    return engine


Owner = TypeVar("Owner", bound="AsyncEngineOwner")


class AsyncEngineOwner(EngineOwnership[AsyncEngine]):
    """Holds an async engine that was either given (left alone) or created here (disposed).

    The async twin of :class:`tokenstore_sql.engines.EngineOwner`: :meth:`aclose`
    disposes of the engine only if it was created from a URL, is safe to repeat, and
    runs at the end of an ``async with`` block. Held engines get fresh pools in a
    forked child.
    """

    def _hold_engine(
        self, url_or_engine: str | URL | AsyncEngine, engine_options: Mapping[str, Any] | None
    ) -> AsyncEngine:
        if isinstance(url_or_engine, AsyncEngine):
            engine = self._keep_engine(url_or_engine, created=False)
        else:
            options = engine_options or {}
            engine = self._keep_engine(create_async_engine(url_or_engine, **options), created=True)
        reset_pools_after_fork(engine.sync_engine)
        return engine

    async def __aenter__(self: Owner) -> Owner:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Dispose of the engine if it was created here. Safe to repeat."""
        if self._close_once():
            await self.engine.dispose()

"""Both APIs behind one interface, so one behavioural suite runs on each.

:class:`BlockingAsyncStorage` puts the sync ``TokenStorage`` methods in front of an
:class:`~tokenstore_sql.AsyncSQLAlchemyTokenStorage`, awaiting each call on an event loop
that runs in a thread of its own (:class:`LoopThread`), as an async web server's would.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from tokenstore_sql import AsyncSQLAlchemyTokenStorage
from tokenstore_sql._sdk import TokenStorageData

T = TypeVar("T")
CALL_TIMEOUT_SECONDS = 120


class LoopThread:
    """An event loop running in a daemon thread; :meth:`run` waits for a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the loop and return its result (or raise its error)."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout=CALL_TIMEOUT_SECONDS)

    def close(self) -> None:
        """Stop the loop and its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


class BlockingAsyncStorage:
    """The async storage, called through the sync storage's method names."""

    def __init__(self, storage: AsyncSQLAlchemyTokenStorage, loop: LoopThread) -> None:
        self.storage = storage
        self.loop = loop

    @property
    def namespace(self) -> str:
        """The storage's namespace."""
        return self.storage.namespace

    @property
    def keys(self) -> Any:
        """The storage's key ring."""
        return self.storage.keys

    def __repr__(self) -> str:
        return repr(self.storage)

    def store_token_data_by_resource_server(self, data: Mapping[str, TokenStorageData]) -> None:
        self.loop.run(self.storage.store_token_data_by_resource_server(data))

    def store_token_response(self, response: Any) -> None:
        self.loop.run(self.storage.store_token_response(response))

    def get_token_data_by_resource_server(self) -> dict[str, TokenStorageData]:
        return self.loop.run(self.storage.get_token_data_by_resource_server())

    def get_token_data(self, resource_server: str) -> TokenStorageData | None:
        return self.loop.run(self.storage.get_token_data(resource_server))

    def remove_token_data(self, resource_server: str) -> bool:
        return self.loop.run(self.storage.remove_token_data(resource_server))

    def remove_namespace(self) -> int:
        return self.loop.run(self.storage.remove_namespace())

    def iter_namespaces(self) -> Iterator[str]:
        return iter(self.loop.run(_collect(self.storage.iter_namespaces())))

    def close(self) -> None:
        self.loop.run(self.storage.aclose())

    def __enter__(self) -> BlockingAsyncStorage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


async def _collect(names: AsyncIterator[str]) -> list[str]:
    return [name async for name in names]


def dispose(engine: AsyncEngine, loop: LoopThread) -> None:
    """Dispose of an async engine on the loop its connections belong to."""
    loop.run(engine.dispose())

"""One worker process of the refresh storm (:mod:`.refresh_storm`).

It lives in a module of its own, which imports globus-sdk (and tokenstore-sql, which
imports it) only after pointing globus-sdk at the stand-in token endpoint. For each
database it is handed, the process opens one engine, gives each user a storage over it,
and goes through every user in an order of its own from several threads, calling
``refresh_once`` for each. It reports how long each call took and whether that caller
refreshed (called Auth) or not (it waited for another caller's refresh, or found it
done), the errors by type, and, for each Auth call, how many pooled connections the
calling thread held then (and how many the whole pool had out).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, event

from .token_endpoint import AUTH_URL_VARIABLE

if TYPE_CHECKING:
    from multiprocessing.queues import Queue
    from multiprocessing.synchronize import Barrier

    from tokenstore_sql import SQLAlchemyTokenStorage

BARRIER_SECONDS = 120.0


class HeldConnections:
    """Which thread holds each connection checked out of an engine's pool, from pool events."""

    def __init__(self, engine: Engine) -> None:
        self._holders: dict[int, int] = {}
        self._lock = threading.Lock()
        event.listen(engine, "checkout", self._checkout)
        event.listen(engine, "checkin", self._checkin)

    def _checkout(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        with self._lock:
            self._holders[id(record)] = threading.get_ident()

    def _checkin(self, dbapi_connection: Any, record: Any) -> None:
        with self._lock:
            self._holders.pop(id(record), None)

    def by_this_thread(self) -> int:
        """Count the connections the calling thread has checked out."""
        me = threading.get_ident()
        with self._lock:
            return sum(1 for holder in self._holders.values() if holder == me)


@dataclass
class Tally:
    """What the callers of one process saw; appends are atomic, errors take the lock."""

    refreshed: list[float] = field(default_factory=list)  # seconds per call that called Auth
    waited: list[float] = field(default_factory=list)  # seconds per call that did not
    errors: Counter[str] = field(default_factory=Counter)
    held_by_caller: list[int] = field(default_factory=list)  # at each Auth call
    pool_checked_out: list[int] = field(default_factory=list)  # at each Auth call
    lock: threading.Lock = field(default_factory=threading.Lock)

    def error(self, kind: str) -> None:
        """Count an error of ``kind``."""
        with self.lock:
            self.errors[kind] += 1


def _caller(
    todo: deque[str],
    storages: dict[str, SQLAlchemyTokenStorage],
    refresh: Callable[..., Any],
    resource_server: str,
    client: Any,
    tally: Tally,
) -> None:
    """Take users off ``todo`` until none is left, getting each a fresh access token."""
    while True:
        try:
            namespace = todo.popleft()
        except IndexError:
            return
        responses: list[Any] = []  # on_refresh is called only where this caller refreshed
        started = time.perf_counter()
        try:
            data = refresh(
                storages[namespace], resource_server, client, on_refresh=responses.append
            )
        except Exception as exc:
            tally.error(type(exc).__name__)
            continue
        elapsed = time.perf_counter() - started
        if data.expires_at_seconds <= time.time():
            tally.error("ExpiredTokenReturned")
            continue
        (tally.refreshed if responses else tally.waited).append(elapsed)


def _warm(engine: Engine, connections: int) -> None:
    """Open as many pooled connections as there are threads, so no call pays for one."""
    opened = [engine.connect() for _ in range(connections)]
    for connection in opened:
        connection.close()


def _measuring_client_class() -> type[Any]:
    """Make globus-sdk's confidential client, noting connections held at each Auth call."""
    import globus_sdk

    class MeasuringClient(globus_sdk.ConfidentialAppAuthClient):
        engine: Engine
        held: HeldConnections
        tally: Tally

        def oauth2_refresh_token(self, refresh_token: str, *args: Any, **kwargs: Any) -> Any:
            self.tally.held_by_caller.append(self.held.by_this_thread())
            self.tally.pool_checked_out.append(self.engine.pool.checkedout())  # type: ignore[attr-defined]
            return super().oauth2_refresh_token(refresh_token, *args, **kwargs)

    return MeasuringClient


def _storm(
    task: dict[str, Any], settings: dict[str, Any], client_class: type[Any], barrier: Barrier
) -> dict[str, Any]:
    """Run one storm on the task's database, after every worker is ready for it."""
    import tokenstore_sql
    import tokenstore_sql.refresh

    engine = tokenstore_sql.create_engine(task["url"], **task["engine_options"])
    try:
        client = client_class(settings["client_id"], "client-secret")
        client.engine, client.held, client.tally = engine, HeldConnections(engine), Tally()
        store = tokenstore_sql.TokenStore(engine)  # its first storage checks the schema
        storages = {name: store.for_namespace(name) for name in task["namespaces"]}
        order = list(task["namespaces"])
        random.Random(task["seed"]).shuffle(order)
        todo = deque(order)
        _warm(engine, settings["threads"])
        args = (
            todo,
            storages,
            tokenstore_sql.refresh.refresh_once,
            task["resource_server"],
            client,
        )
        threads = [
            threading.Thread(target=_caller, args=(*args, client.tally))
            for _ in range(settings["threads"])
        ]
        barrier.wait(timeout=BARRIER_SECONDS)
        began = time.time()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        ended = time.time()
        store.close()
    finally:
        engine.dispose()
    tally: Tally = client.tally
    return {
        "began": began,
        "ended": ended,
        "refreshed": tally.refreshed,
        "waited": tally.waited,
        "errors": dict(tally.errors),
        "held_by_caller": tally.held_by_caller,
        "pool_checked_out": tally.pool_checked_out,
    }


def storm_worker(
    index: int,
    settings: dict[str, Any],
    barrier: Barrier,
    tasks: Queue[dict[str, Any] | None],
    results: Queue[dict[str, Any]],
) -> None:
    """Run the storm of each task from ``tasks`` until None comes; report each in turn.

    ``settings``: ``auth_url``, ``client_id``, ``threads``. A task: ``url``,
    ``engine_options``, ``resource_server``, ``namespaces`` and ``seed`` (of this
    process's order of the users). A report carries ``index``; a worker that fails
    reports ``fatal`` and stops, breaking the barrier so that the others stop waiting.
    """
    os.environ[AUTH_URL_VARIABLE] = settings["auth_url"]  # before globus-sdk is imported
    try:
        client_class = _measuring_client_class()
        while (task := tasks.get()) is not None:
            results.put({"index": index, **_storm(task, settings, client_class, barrier)})
    except BaseException as exc:
        barrier.abort()
        results.put({"index": index, "fatal": f"{type(exc).__name__}: {exc}"})
        raise

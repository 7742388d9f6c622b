"""Shared pieces of the refresh tests: seeding a user's tokens, clients, worker processes."""

from __future__ import annotations

import multiprocessing
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from queue import Empty
from typing import Any

import globus_sdk
import pytest
from sqlalchemy import URL

from tokenstore_sql.refresh import refresh_once

from .fake_auth import TRANSFER, FakeAuth, mocked, serving
from .refresh_worker import refresh_worker
from .sdk import TokenStorageData

IDENTITY = str(uuid.uuid4())


def seed(storage: Any, auth: FakeAuth, *, expired: bool = True) -> TokenStorageData:
    """Store a user's transfer tokens, as issued by ``auth``, expired or fresh."""
    tokens = auth.grant(IDENTITY, TRANSFER)
    data = TokenStorageData(
        resource_server=TRANSFER,
        identity_id=IDENTITY,
        scope=tokens["scope"],
        access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
        expires_at_seconds=int(time.time()) + (-10 if expired else 3600),
        token_type="Bearer",
        extra={"kept": True},
    )
    storage.store_token_data_by_resource_server({TRANSFER: data})
    return data


def client_of(auth: FakeAuth) -> globus_sdk.ConfidentialAppAuthClient:
    """The confidential client that owns ``auth``'s grants."""
    return globus_sdk.ConfidentialAppAuthClient(auth.client_id, "client-secret")


def refresh_transfer(storage: Any, auth: FakeAuth, **options: Any) -> TokenStorageData:
    """:func:`~tokenstore_sql.refresh.refresh_once` of the transfer token, ``auth`` answering.

    :param options: More ``refresh_once`` options, such as ``lock_timeout``.
    """
    with mocked(auth):
        return refresh_once(storage, TRANSFER, client_of(auth), **options)


def start_workers(
    url: URL,
    namespace: str,
    auth_url: str,
    auth: FakeAuth,
    *,
    processes: int,
    callers: int,
    tasks: bool = False,
    urls: Sequence[URL] | None = None,
    **options: Any,
) -> Workers:
    """Start worker processes that refresh at once.

    ``urls``, when given, holds one URL per process (one per node of a cluster, say),
    used instead of ``url``.
    """
    if urls is not None and len(urls) != processes:
        raise ValueError(f"{len(urls)} URLs for {processes} worker processes")
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results = context.Queue()
    config = {
        "url": url.render_as_string(hide_password=False),
        "namespace": namespace,
        "resource_server": TRANSFER,
        "client_id": auth.client_id,
        "auth_url": auth_url,
        "callers": callers,
        "tasks": tasks,
        **options,
    }
    own_urls = [url] * processes if urls is None else list(urls)
    started = [
        context.Process(
            target=refresh_worker,
            args=({**config, "url": own.render_as_string(hide_password=False)}, barrier, results),
        )
        for own in own_urls
    ]
    for process in started:
        process.start()
    return Workers(started, results, barrier)


@dataclass
class Workers:
    """Started worker processes, their results queue, and the barrier they wait at.

    The barrier and queue stay referenced here until the end: a spawned child that
    unpickles them after the parent dropped them finds their semaphores gone.
    """

    processes: list[Any]
    results: Any
    barrier: Any

    def collect(self, timeout: float = 90) -> list[dict[str, Any]]:
        """Wait for every worker's report, then for the workers to exit."""
        return _collect(self.processes, self.results, timeout)


def _collect(processes: list[Any], results: Any, timeout: float) -> list[dict[str, Any]]:
    reports: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        for _ in processes:
            reports.append(results.get(timeout=max(deadline - time.monotonic(), 0.1)))
    except Empty:
        pytest.fail(f"only {len(reports)} of {len(processes)} workers reported")
    finally:
        join_or_kill(processes)
    return reports


def join_or_kill(processes: Sequence[Any]) -> None:
    """Wait for each process to end, killing any still running 10 s later."""
    for process in processes:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
            process.join()


def run_workers(
    url: URL,
    namespace: str,
    auth: FakeAuth,
    *,
    processes: int,
    callers: int,
    urls: Sequence[URL] | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Serve ``auth`` over HTTP and run worker processes against it to the end.

    ``urls``, when given, holds one URL per process, used instead of ``url``.
    """
    with serving(auth) as auth_url:
        workers = start_workers(
            url,
            namespace,
            auth_url,
            auth,
            processes=processes,
            callers=callers,
            urls=urls,
            **options,
        )
        return workers.collect()

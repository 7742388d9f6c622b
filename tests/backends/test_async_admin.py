"""AsyncTokenStore's admin coroutines: the sync store's results, off the event loop.

Each database's test gets one of its own (``empty_database_url``): the results of the
two stores are compared, and no other test may write between them.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import URL, make_url
from sqlalchemy.pool import AsyncAdaptedQueuePool, NullPool

from tests.support.sdk import make_token_data
from tests.support.sdk_files import write_json
from tokenstore_sql import (
    AsyncTokenStore,
    StoreSettings,
    TokenStore,
    create_async_engine,
    generate_key,
)
from tokenstore_sql.async_admin import sync_engine_options, sync_url
from tokenstore_sql.errors import ConfigurationError, SchemaError, TokenFileError

KEY_A, KEY_B = generate_key(), generate_key()
NOW = int(time.time())
SECRETS = ("alice-access-SECRET", "alice-refresh-SECRET", "bob-access-SECRET")


@pytest.fixture
def url(empty_database_url: URL) -> URL:
    """A database of the test's own: alice has a live and a dead row, bob a live one."""
    with TokenStore(empty_database_url, keys=[KEY_A]) as store:
        store.for_namespace("user:alice").store_token_data_by_resource_server(
            {
                "auth": make_token_data("auth", access_token=SECRETS[0], refresh_token=SECRETS[1]),
                "dead": make_token_data("dead", expires_at_seconds=NOW - 100, refresh_token=None),
            }
        )
        store.for_namespace("user:bob").store_token_data_by_resource_server(
            {"auth": make_token_data("auth", access_token=SECRETS[2])}
        )
    return empty_database_url


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_each_coroutine_gives_what_the_sync_store_gives(url: URL, tmp_path: Path) -> None:
    async def through_async() -> dict[str, Any]:
        async with AsyncTokenStore(url, keys=[KEY_A]) as store:
            stream = io.StringIO()
            return {
                "status": await store.status(),
                "namespaces": await store.namespaces(),
                "stats": await store.stats(now=NOW),
                "prune": await store.prune(dry_run=True, now=NOW),
                "export": await store.export_file(tmp_path / "async.json"),
                "stream": (await store.export_stream(stream), stream.getvalue()),
            }

    got = run(through_async())
    with TokenStore(url, keys=[KEY_A]) as sync:
        stream = io.StringIO()
        assert got == {
            "status": sync.status(),
            "namespaces": sync.namespaces(),
            "stats": sync.stats(now=NOW),
            "prune": sync.prune(dry_run=True, now=NOW),
            "export": sync.export_file(tmp_path / "sync.json"),
            "stream": (sync.export_stream(stream), stream.getvalue()),
        }
    assert got["namespaces"] == ["user:alice", "user:bob"]
    assert got["prune"] == 1
    assert got["export"] == {"user:alice": 2, "user:bob": 1}
    exported = json.loads((tmp_path / "async.json").read_text())
    assert exported == json.loads((tmp_path / "sync.json").read_text())
    assert exported["data"]["user:alice"]["auth"]["access_token"] == SECRETS[0]


def test_prune_rotation_and_downgrade_change_the_database_as_the_sync_store_sees(
    url: URL,
) -> None:
    async def jobs() -> tuple[str, int, Any, str | None]:
        async with AsyncTokenStore(url, keys=[KEY_A]) as store:
            with pytest.raises(SchemaError) as refused:  # as the sync store refuses it
                await store.downgrade("base")
            pruned = await store.prune(now=NOW)
            decrypted = await store.rotate_keys(decrypt=True)
            return str(refused.value), pruned, decrypted, await store.downgrade("base")

    refusal, pruned, decrypted, revision = run(jobs())
    assert "hold encrypted tokens" in refusal
    assert (pruned, decrypted.rewritten, decrypted.unreadable, revision) == (1, 2, [], None)
    with TokenStore(url) as sync:
        assert sync.status().current is None
        sync.upgrade()
        assert sync.namespaces() == []

    async def again() -> int:
        async with AsyncTokenStore(url) as store:
            return await store.prune(now=NOW)

    assert run(again()) == 0


def test_rotated_rows_are_read_with_the_new_key_only(url: URL) -> None:
    async def rotate() -> None:
        async with AsyncTokenStore(url, keys=[KEY_B, KEY_A]) as store:
            await store.rotate_keys()

    run(rotate())
    with TokenStore(url, keys=[KEY_B]) as sync:
        data = sync.for_namespace("user:alice").get_token_data("auth")
        assert data is not None
        assert data.access_token == SECRETS[0]
        assert sync.rotate_keys().rewritten == 0


def _token_files(tmp_path: Path, count: int) -> list[Path]:
    return [
        write_json(
            tmp_path / f"tokens{i}.json",
            {f"file{i}": {"transfer": make_token_data("transfer", access_token=f"{i}-SECRET")}},
        )
        for i in range(count)
    ]


def test_an_import_leaves_the_loop_free_and_matches_a_sync_dry_run(
    url: URL, tmp_path: Path
) -> None:
    paths = _token_files(tmp_path, 5)
    ticks: list[float] = []
    progress_threads: set[int] = set()

    def slow_progress(message: str) -> None:  # as a large file's parsing would be
        progress_threads.add(threading.get_ident())
        time.sleep(0.05)

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    async def main() -> tuple[Any, Any, int]:
        async with AsyncTokenStore(url, keys=[KEY_A]) as store:
            rehearsal = await store.import_files(paths, dry_run=True)
            task = asyncio.create_task(ticker())
            await asyncio.sleep(0)
            ticks.clear()
            report = await store.import_files(paths, progress=slow_progress)
            task.cancel()
            return rehearsal, report, threading.get_ident()

    with TokenStore(url, keys=[KEY_A]) as sync:
        expected = sync.import_files(paths, dry_run=True)
    rehearsal, report, loop_thread = run(main())
    assert len(ticks) >= 10  # the loop ran the ticker through the import's 0.25 s or more
    assert progress_threads
    assert loop_thread not in progress_threads
    assert (rehearsal.counts, rehearsal.dry_run) == (expected.counts, True)
    assert [f.path for f in rehearsal.files] == [f.path for f in expected.files]
    with TokenStore(url, keys=[KEY_A]) as sync:
        assert [(c.added, c.updated) for c in report.counts] == [(1, 0)] * 5
        assert sync.namespaces() == [*(f"file{i}" for i in range(5)), "user:alice", "user:bob"]
        data = sync.for_namespace("file3").get_token_data("transfer")
        assert data is not None
        assert data.access_token == "3-SECRET"


def test_a_bad_file_in_an_import_stores_nothing(url: URL, tmp_path: Path) -> None:
    good = _token_files(tmp_path, 1)[0]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format_version": "2.0", "data": {"x": {"rs": {"a": 1}}}}))

    async def main() -> None:
        async with AsyncTokenStore(url, keys=[KEY_A]) as store:
            await store.import_files([good, bad])

    with pytest.raises(TokenFileError) as raised:
        run(main())
    assert not any(secret in str(raised.value) for secret in ("0-SECRET", *SECRETS))
    with TokenStore(url, keys=[KEY_A]) as sync:
        assert sync.namespaces() == ["user:alice", "user:bob"]


def test_aclose_disposes_of_the_admin_engine_and_leaves_a_given_one(url: URL) -> None:
    async def main() -> None:
        given = create_async_engine(url)
        try:
            store = AsyncTokenStore(given, keys=[KEY_A])
            assert store._sync_store is None  # constructing opens nothing
            assert await store.namespaces() == ["user:alice", "user:bob"]
            sync_store = store._sync_store
            assert sync_store is not None
            pool = sync_store.engine.pool
            assert pool.checkedin() >= 1  # type: ignore[attr-defined]
            assert pool.checkedout() == 0  # type: ignore[attr-defined]
            await store.aclose()
            assert store._sync_store is None
            assert sync_store.engine.pool is not pool  # disposed: a new, empty pool
            assert sync_store.engine.pool.checkedin() == 0  # type: ignore[attr-defined]
            await store.aclose()  # safe to repeat
            async with AsyncTokenStore(given, keys=[KEY_A]) as again:  # the given engine works
                assert await again.for_namespace("user:bob").get_token_data("auth")
        finally:
            await given.dispose()

    run(main())


def test_no_token_or_password_shows_in_a_repr(url: URL) -> None:
    async def main() -> list[str]:
        async with AsyncTokenStore(url, keys=[KEY_A]) as store:
            await store.stats()
            assert store._sync_store is not None
            return [repr(store), repr(store._sync_store), repr(await store.stats())]

    texts = run(main())
    hidden = [*SECRETS, KEY_A] + ([url.password] if url.password else [])
    assert not [text for text in texts for value in hidden if str(value) in text]


@pytest.mark.parametrize("memory", ["sqlite+aiosqlite://", "sqlite://"])
def test_an_in_memory_database_refuses_the_thread_operations_only(memory: str) -> None:
    async def main() -> None:
        async with AsyncTokenStore(memory) as store:
            await store.upgrade()
            assert (await store.check()).at_head
            for operation in (store.namespaces(), store.prune(), store.status()):
                with pytest.raises(ConfigurationError, match="in-memory SQLite"):
                    await operation
            assert store._sync_store is None

    run(main())


def test_an_async_url_maps_to_the_sync_driver_of_its_database() -> None:
    cases = {
        "sqlite+aiosqlite:////tmp/t.db": "sqlite:////tmp/t.db",
        "postgresql+psycopg://u:pw@h/d": "postgresql+psycopg://u:pw@h/d",
        "postgresql+asyncpg://u:pw@h/d?sslmode=require": "postgresql+psycopg://u:pw@h/d?sslmode=require",
        "mysql+aiomysql://u:pw@h/d": "mysql+pymysql://u:pw@h/d",
        "mariadb+asyncmy://u:pw@h/d": "mariadb+pymysql://u:pw@h/d",
    }
    for given, expected in cases.items():
        assert sync_url(make_url(given)).render_as_string(hide_password=False) == expected


def test_asyncio_only_engine_options_are_left_out_of_the_sync_engine(
    tmp_path: Path,
) -> None:
    options = {"poolclass": AsyncAdaptedQueuePool, "async_creator": object(), "pool_size": 3}
    assert sync_engine_options(options) == {"pool_size": 3}
    assert sync_engine_options({"poolclass": NullPool}) == {"poolclass": NullPool}

    async def main() -> list[str]:
        settings = StoreSettings(engine_options={"poolclass": AsyncAdaptedQueuePool})
        async with AsyncTokenStore(f"sqlite:///{tmp_path / 't.db'}", settings=settings) as store:
            return await store.namespaces()

    assert run(main()) == []

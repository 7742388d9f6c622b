"""Each pool's connection handoff on each event loop, and how a connection goes back.

:mod:`tokenstore_sql.async_calls` asks :func:`handoff_for` for that of the engine it
runs on; a pool with no fixed capacity (NullPool, unlimited overflow) has none. Code that
must see the pool whole (before disposing of it, before a call to Globus Auth, in tests)
call :func:`settle`: the connection kept for a next call goes back at once.
"""

from __future__ import annotations

import asyncio
import functools
import weakref

from sqlalchemy import Engine, event
from sqlalchemy.pool import Pool, PoolProxiedConnection, QueuePool
from sqlalchemy.util.concurrency import await_only, in_greenlet

from .async_handoff import Handoff


def check_in(connection: PoolProxiedConnection) -> None:
    """Return a connection that is back as it was lent; the pool skips its reset.

    The pool rolls back every connection it gets back: a round trip on aiomysql, a hop
    to aiosqlite's thread. Only a private method tells the pool the transaction was
    already reset: the one SQLAlchemy's own ``Connection.close`` uses after ending its
    transaction. Without it (another SQLAlchemy release) the pool rolls back as before;
    a test in tests/backends/test_async.py fails then.
    """
    close_special = getattr(connection, "_close_special", None)
    if close_special is None:
        connection.close()
    else:
        close_special(transaction_reset=True)


# One handoff per pool and event loop: an engine's connections belong to one loop, and
# a loop that ends (asyncio.run() returns) takes its calls' slots with it.
_handoffs: weakref.WeakKeyDictionary[
    Pool, weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Handoff]
] = weakref.WeakKeyDictionary()


# The handoff found last, with its pool: every call asks, most often for the same one,
# and the two weak dictionaries above cost more than the call's own bookkeeping. Replaced
# whole, so a thread reads one pair or another, never half of each.
_last_found: tuple[weakref.ref[Pool], Handoff] | None = None


async def settle(pool: Pool) -> None:
    """Bring every connection of ``pool`` that no call on the running loop holds back to it.

    A connection kept for the next call goes back within a millisecond anyway; this is
    for code that must see the pool whole at once: before disposing of it, or in tests.
    """
    handoff = _running_handoff(pool)
    if handoff is not None:
        await handoff.settle()


def handoff_for(engine: Engine) -> Handoff | None:
    """Give the handoff of the engine's pool on the running loop (None: no fixed capacity).

    A disposed engine's new pool gets a handoff of its own. The first handoff of a pool
    has ``engine.dispose()`` close the connection kept on it, which would otherwise be
    left to the garbage collector.
    """
    global _last_found
    pool, loop = engine.pool, asyncio.get_running_loop()
    last = _last_found
    if last is not None and last[0]() is pool and last[1].loop_ref() is loop:
        return last[1]
    by_loop = _handoffs.get(pool)
    if by_loop is None:
        if not isinstance(pool, QueuePool) or _capacity(pool) is None:
            return None
        by_loop = _handoffs[pool] = weakref.WeakKeyDictionary()
        event.listen(engine, "engine_disposed", functools.partial(_disposed, weakref.ref(pool)))
    handoff = by_loop.get(loop)
    if handoff is None:
        assert isinstance(pool, QueuePool)
        handoff = by_loop[loop] = Handoff(_capacity(pool) or 0, pool.timeout(), loop)
    _last_found = (weakref.ref(pool), handoff)
    return handoff


def _running_handoff(pool: Pool) -> Handoff | None:
    """Give the pool's handoff on the running loop, if it has one (no loop: None)."""
    by_loop = _handoffs.get(pool)
    if by_loop is None:
        return None
    try:
        return by_loop.get(asyncio.get_running_loop())
    except RuntimeError:  # no loop running
        return None


def _disposed(pool_ref: weakref.ref[Pool], _: Engine) -> None:
    pool = pool_ref()
    if pool is None or not in_greenlet():  # a sync dispose(): the kept one goes soon
        return
    handoff = _running_handoff(pool)
    if handoff is not None:
        await_only(handoff.settle())


def _capacity(pool: QueuePool) -> int | None:
    # QueuePool (and the async engines' AsyncAdaptedQueuePool) says its size and timeout,
    # but not its overflow limit: read where it keeps it, and go without a handoff if
    # that ever moves. pool_size=0 and max_overflow=-1 mean no limit.
    max_overflow = getattr(pool, "_max_overflow", -1)
    if not isinstance(max_overflow, int) or max_overflow < 0 or pool.size() <= 0:
        return None
    return pool.size() + max_overflow

"""Connections passed straight from one async storage call to the next, skipping the pool.

:mod:`tokenstore_sql.async_direct` takes each call's connection from the engine's pool
and gives it back in SQLAlchemy's greenlet (the pool's code may await a free connection
or open one). With many tasks in flight the greenlet's switches cost more than the
statement's own work in the client: with 64 tasks on one loop, a PostgreSQL call spent
about 210 µs of CPU against psycopg's own 110 µs (benchmarks/async_rows.py).

So a :class:`Handoff` per pool counts the connections its calls hold against the pool's
capacity (``pool_size`` + ``max_overflow``). A call beyond it waits here, in line, and a
call that is done hands its connection, clean (no transaction open, as lent), straight to
the first in line: no check-in, no check-out, no greenlet. When no call waits, the
connection goes back to the pool at once. A connection circulates for at most
:data:`HANDOFF_SECONDS` after it left the pool, so the pool's recycling and its
invalidation of stale connections still reach it; a wait is bounded by the pool's
timeout, as a wait inside the pool is. A pool with no fixed capacity (NullPool,
unlimited overflow) gets no handoff: each call takes its connection from the pool.

A call that is done while none waits keeps its connection, as it left it, for the next
call: a task awaiting one storage call after another then takes no connection from the
pool at all (the pool's greenlet and checkout were half the cost of an uncontended get).
Unless a call takes it first, a kept connection goes back to the pool when the task that
kept it ends or :data:`KEEP_SECONDS` later, whichever is first: one timer serves every
keep meanwhile (a timer per call was a tenth of a sequential get's work on the loop's
thread), and a task's end brings it back when a loop ends right after a call
(``asyncio.run()`` returning), before an engine shared with the next loop needs it.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Final, cast

from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.pool import PoolProxiedConnection

# How long a connection may go from call to call before it goes back to the pool.
HANDOFF_SECONDS: Final = 1.0
# How long a connection no call took may stay kept for the next call, at most.
KEEP_SECONDS: Final = 0.001

# A connection handed on: with its driver handle (which knows what the call switched, to
# switch back before the pool gets it), and when it left the pool.
Handed = tuple[PoolProxiedConnection, Any, float]
# Gives a kept connection back to the pool (then releases its slot).
GiveBack = Callable[[Handed], Coroutine[Any, Any, None]]


class Handoff:
    """Slots for the connections a pool can lend, and the calls waiting for one.

    A call holds a slot from :meth:`take` (or from its place in line, :meth:`join`)
    until it hands its connection on (:meth:`hand_off`) or gives the slot up
    (:meth:`release`), exactly once.
    """

    def __init__(self, capacity: int, timeout: float, loop: asyncio.AbstractEventLoop) -> None:
        self.capacity, self.timeout = capacity, timeout
        # Weakly: a pool's handoffs are kept by loop, weakly, and a loop that ended would
        # otherwise stay alive with its handoff as long as the pool (used only as it runs).
        self.loop_ref = cast("Callable[[], asyncio.AbstractEventLoop]", weakref.ref(loop))
        self.held = 0
        # Calls in line, each with its deadline: in the order of their deadlines too.
        self._waiting: deque[tuple[asyncio.Future[Handed | None], float]] = deque()
        # One timer, for the first deadline in line: a timer per wait would cost every
        # call a heap entry in the event loop, most of them cancelled.
        self._timer: asyncio.TimerHandle | None = None
        # The kept connection and how it goes back; whether a timer will give back what
        # is kept (its handle, which holds the loop, is left to the loop), and the tasks
        # that will when they end, the last one apart (the weak set's lookup was 2% of a
        # sequential get's work on the loop's thread).
        self._kept: tuple[Handed, GiveBack] | None = None
        self._keep_timer_set = False
        self._watched: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()
        self._last_watched: weakref.ref[asyncio.Task[Any]] | None = None
        self._giving_back: set[asyncio.Task[None]] = set()  # referenced until done

    def take(self) -> bool:
        """Take a free slot, if one is free and no call is waiting for one (no I/O)."""
        if self._slot_free():
            self.held += 1
            return True
        return False

    def _slot_free(self) -> bool:
        return self.held < self.capacity and not self._waiting

    def would_wait(self) -> bool:
        """Tell whether a call starting now would wait in line for a connection (no I/O)."""
        return self._kept is None and not self._slot_free()

    def join(self) -> asyncio.Future[Handed | None]:
        """Join the line: the future gives a connection handed on, or None for a slot.

        A call cancelled just as its future got a result holds what it got. The future
        fails with ``sqlalchemy.exc.TimeoutError`` when nothing comes within the pool's
        timeout, as a wait inside the pool does.
        """
        loop = self.loop_ref()
        waiter: asyncio.Future[Handed | None] = loop.create_future()
        deadline = loop.time() + self.timeout
        self._waiting.append((waiter, deadline))
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._expire)
        return waiter

    def pass_on(self, handed: Handed, give_back: GiveBack) -> bool:
        """Hand a clean connection and its slot to the first call in line, or keep it.

        Kept when none waits and none is kept already: unless a call takes it first
        (:meth:`take_kept`), ``give_back(handed)`` runs when the running task ends or
        within :data:`KEEP_SECONDS` (in a task from its first wait on), and must
        :meth:`release` the slot.

        :returns: False when it must go back to the pool now (then :meth:`release` the slot)
        """
        if time.monotonic() - handed[2] >= HANDOFF_SECONDS:
            return False
        waiter = self._next() if self._waiting else None
        if waiter is not None:
            waiter.set_result(handed)
            return True
        if self._kept is not None:
            return False
        self._kept = (handed, give_back)
        loop = self.loop_ref()
        if not self._keep_timer_set:
            loop.call_at(loop.time() + KEEP_SECONDS, self._keep_timer_fired)
            self._keep_timer_set = True
        # And the running task gives it back when it ends (watched once per task).
        task, last = asyncio.current_task(loop), self._last_watched
        if task is not None and (last is None or last() is not task):
            if task not in self._watched:
                self._watched.add(task)
                task.add_done_callback(self._task_ended)
            self._last_watched = weakref.ref(task)
        return True

    def take_kept(self) -> Handed | None:
        """Take the kept connection and its slot, if one is kept (no I/O)."""
        kept, self._kept = self._kept, None
        return None if kept is None else kept[0]

    async def settle(self) -> None:
        """Give the kept connection back to the pool now, and wait for those on their way.

        Before the pool is disposed of; afterwards every connection of this loop's calls
        that is not in a call is in the pool.
        """
        kept, self._kept = self._kept, None
        if kept is not None:
            await kept[1](kept[0])
        if self._giving_back:
            await asyncio.gather(*self._giving_back, return_exceptions=True)

    def _keep_timer_fired(self) -> None:
        self._keep_timer_set = False
        self._give_back()

    def _task_ended(self, task: asyncio.Task[Any]) -> None:
        self._watched.discard(task)
        self._give_back()

    def _give_back(self) -> None:
        # Whatever is kept now waits idle: the loop is running its callbacks, no task.
        kept, self._kept = self._kept, None
        if kept is None:  # taken meanwhile
            return
        handed, give_back = kept
        # At once, as far as it goes: the pool takes a connection back with no I/O, and a
        # task started now might not run before the loop stops (asyncio.run() ending).
        task = _run_now_or_soon(give_back(handed))
        if task is not None:
            self._giving_back.add(task)
            task.add_done_callback(self._giving_back.discard)

    def release(self) -> None:
        """Give up a slot: to the first call in line (to fill from the pool), or free it."""
        waiter = self._next()
        if waiter is None:
            self.held -= 1
        else:
            waiter.set_result(None)

    def _next(self) -> asyncio.Future[Handed | None] | None:
        while self._waiting:
            waiter, _ = self._waiting.popleft()
            if not waiter.done():  # else cancelled, or timed out
                return waiter
        if self._timer is not None:  # nobody left in line
            self._timer.cancel()
            self._timer = None
        return None

    def _expire(self) -> None:
        """Fail the calls in line whose deadline has passed; time the next one."""
        self._timer = None
        loop = self.loop_ref()
        now = loop.time()
        while self._waiting and self._waiting[0][1] <= now:
            waiter, _ = self._waiting.popleft()
            if not waiter.done():
                waiter.set_exception(
                    PoolTimeoutError(
                        f"no pooled connection came free within {self.timeout:g} s "
                        f"(pool capacity {self.capacity})"
                    )
                )
        if self._waiting:
            self._timer = loop.call_at(self._waiting[0][1], self._expire)


def _run_now_or_soon(coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Run ``coroutine`` now until it first waits; a task finishes it from there (or None).

    For the rare give-back that must wait for I/O (closing a connection the pool has no
    room for, on a driver whose close is a round trip).
    """
    try:
        waited = coroutine.send(None)
    except StopIteration:
        return None
    return asyncio.get_running_loop().create_task(_resumed(coroutine, waited))


async def _resumed(coroutine: Coroutine[Any, Any, None], waited: Any) -> None:
    await _Resume(coroutine, waited)


class _Resume:
    """Awaits what a started coroutine waits for, then resumes it where it stopped."""

    def __init__(self, coroutine: Coroutine[Any, Any, None], waited: Any) -> None:
        self.coroutine, self.waited = coroutine, waited

    def __await__(self) -> Generator[Any, None, None]:
        try:
            yield self.waited  # the future the coroutine yielded: the task waits for it
        except BaseException as exc:  # the task cancelled meanwhile: into the coroutine
            try:
                self.waited = self.coroutine.throw(exc)
            except StopIteration:
                return
            return (yield from self.__await__())  # it handles that, and waits again
        return (yield from self.coroutine.__await__())

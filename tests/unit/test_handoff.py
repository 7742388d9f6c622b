"""The pool handoff's bookkeeping, with stand-ins for connections: no database."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from tokenstore_sql import async_handoff
from tokenstore_sql.async_handoff import HANDOFF_SECONDS, Handoff


def test_the_handoff_serves_the_line_in_order_and_gives_up_on_time() -> None:
    # A slot is held until it is handed on with its connection or released, exactly once.
    async def give_back(handed: Any) -> None:
        raise AssertionError("a connection handed on is not given back")

    async def main() -> None:
        handoff = Handoff(capacity=1, timeout=0.2, loop=asyncio.get_running_loop())
        assert handoff.take()
        assert not handoff.take()  # the one slot is taken: calls join the line
        cancelled, first, second, third = (handoff.join() for _ in range(4))
        cancelled.cancel()  # its call was cancelled while waiting: skipped
        now = time.monotonic()
        assert handoff.pass_on(("connection", "lent", now), give_back)
        assert first.result() == ("connection", "lent", now)
        stale = ("stale", "lent", now - HANDOFF_SECONDS)
        assert not handoff.pass_on(stale, give_back)  # to the pool
        handoff.release()  # so the slot goes to the next in line, to fill from the pool
        assert second.result() is None
        with pytest.raises(PoolTimeoutError):
            await third
        assert handoff.held == 1
        handoff.release()
        assert handoff.held == 0
        assert handoff.take()

    asyncio.run(main())


@pytest.fixture
def keep_for(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Set how long a connection stays kept; give what was given back, and the give-back."""

    def keeping(seconds: float) -> tuple[list[object], Any]:
        monkeypatch.setattr(async_handoff, "KEEP_SECONDS", seconds)
        given_back: list[object] = []

        async def give_back(handed: Any) -> None:
            given_back.append(handed[0])

        return given_back, give_back

    return keeping


def test_a_connection_none_takes_is_kept_for_a_moment_while_its_task_goes_on(
    keep_for: Any,
) -> None:
    given_back, give_back = keep_for(0.05)

    async def main() -> None:
        handoff = Handoff(capacity=2, timeout=0.2, loop=asyncio.get_running_loop())
        now = time.monotonic()
        assert handoff.pass_on(("first", "lent", now), give_back)  # none waits: kept
        assert not handoff.pass_on(("second", "lent", now), give_back)  # one is kept already
        assert handoff.take_kept() == ("first", "lent", now)
        assert handoff.take_kept() is None
        assert handoff.pass_on(("again", "lent", now), give_back)
        await asyncio.sleep(0)
        assert given_back == []  # the loop turned, but the moment has not passed
        await asyncio.sleep(0.2)
        assert given_back == ["again"]  # not "first": a call took that one
        assert handoff.take_kept() is None

    asyncio.run(main())


def test_a_connection_none_takes_goes_back_when_the_task_that_kept_it_ends(
    keep_for: Any,
) -> None:
    # How a connection kept by a loop's last call is back in the pool before the loop
    # closes (asyncio.run() returns once its main task ends), however long the moment.
    given_back, give_back = keep_for(60.0)
    watched: list[int] = []

    async def one_call_after_another(handoff: Handoff) -> None:
        for name in ("a", "b", "c"):
            handoff.take_kept()  # each call takes what the one before kept
            assert handoff.pass_on((name, "lent", time.monotonic()), give_back)
        # Watched once, however often it kept one: a task's callbacks do not pile up.
        this_task = asyncio.current_task()
        assert this_task is not None
        watched.append(this_task.remove_done_callback(handoff._task_ended))
        this_task.add_done_callback(handoff._task_ended)

    async def main() -> list[object]:
        handoff = Handoff(capacity=2, timeout=0.2, loop=asyncio.get_running_loop())
        await asyncio.create_task(one_call_after_another(handoff))
        before_a_turn = list(given_back)  # this task resumes before the ended task's callbacks
        await asyncio.sleep(0)
        return before_a_turn

    assert asyncio.run(main()) == []
    assert given_back == ["c"]
    assert watched == [1]

"""Run one piece of work in several threads at once and keep what they raised."""

from __future__ import annotations

import threading
from collections.abc import Callable


def errors_in_threads(
    work: Callable[[int], None], threads: int, *, timeout: float
) -> list[BaseException]:
    """Run ``work(0)`` ... ``work(threads - 1)`` in threads at once; return their errors.

    Each thread gets ``timeout`` seconds to finish; one still running then is an error.
    """
    errors: list[BaseException] = []

    def guarded(worker: int) -> None:
        try:
            work(worker)
        except BaseException as exc:
            errors.append(exc)

    started = [threading.Thread(target=guarded, args=(n,)) for n in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join(timeout=timeout)
        if thread.is_alive():
            errors.append(TimeoutError(f"{thread.name} still running after {timeout} s"))
    return errors

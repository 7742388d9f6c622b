"""Interleaved timing: every cell gets a short slice in each round, in a shuffled order.

So noise from other work on the machine falls on every storage alike. Fast operations
are timed in batches (about 50 microseconds each) and a sample is the batch's mean;
operations with an untimed setup are timed one call at a time. A cell times its own
calls (:meth:`Cell.time_calls`, :meth:`Cell.take_slice`), so that cells of coroutines
join the same rounds (see :mod:`.async_rows`).
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from .subjects import Op, Subject

BATCH_SECONDS = 50e-6
SLICE_SECONDS = 0.002


@dataclass
class Cell:
    """One operation of one subject, and its samples (seconds per call)."""

    subject: Subject
    operation: str
    batch: int = 1
    samples: list[float] = field(default_factory=list)

    @property
    def op(self) -> Op:
        """The operation's callables."""
        return self.subject.ops[self.operation]

    def median(self) -> float:
        """Return the median sample, in seconds."""
        return statistics.median(self.samples)

    def p95(self) -> float:
        """Return the 95th percentile sample (nearest rank), in seconds."""
        ordered = sorted(self.samples)
        return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]

    def time_calls(self, calls: int) -> float:
        """Time ``calls`` calls of the operation; return seconds per call."""
        return time_batch(self.op, calls)

    def take_slice(self, seconds: float) -> None:
        """Take samples of ``batch`` calls each until ``seconds`` have passed (at least one)."""
        slice_end = time.perf_counter() + seconds
        while True:
            self.samples.append(time_batch(self.op, self.batch))
            if time.perf_counter() >= slice_end:
                return

    def calibrate(self) -> None:
        """Warm the operation up and choose its batch size."""
        self.time_calls(1)
        once = self.time_calls(1)
        if self.op.setup is None:
            self.batch = max(1, min(2000, int(BATCH_SECONDS / max(once, 1e-9))))


def time_batch(op: Op, calls: int) -> float:
    """Run ``op`` ``calls`` times and return seconds per call, setup and cleanup untimed."""
    run = op.run
    if op.setup is not None:
        op.setup()
    started = time.perf_counter()
    for _ in range(calls):
        run()
    elapsed = time.perf_counter() - started
    if op.cleanup is not None:
        op.cleanup()
    return elapsed / calls


def measure(cells: Sequence[Cell], seconds: float, min_samples: int, seed: int = 0) -> None:
    """Sample every cell in shuffled rounds until ``seconds`` pass and each has enough."""
    rng = random.Random(seed)
    for cell in cells:
        cell.calibrate()
    deadline = time.monotonic() + seconds
    order = list(cells)
    while True:
        rng.shuffle(order)
        for cell in order:
            cell.take_slice(SLICE_SECONDS)
        if time.monotonic() >= deadline and all(len(c.samples) >= min_samples for c in cells):
            return

"""PostgreSQL failover: a multi-host URL rides over a promoted standby, losing nothing.

A storage on ``postgresql+psycopg://user@/tokens?host=A:P1&host=B:P2&target_session_attrs=read-write``
connects (through libpq) to whichever host takes writes. Each test here starts a private
primary and a hot standby of it (``tests/support/private_standby.py``), has writer threads
store increasing values to keys of their own through storages on that URL, kills the
primary (an immediate stop, as a crash), promotes the standby at once or after a gap,
keeps writing, and then reads every key from the new primary.

While no host takes writes (the primary is gone, the standby still in recovery) every
connection attempt fails at once: the old primary refuses it, the standby is rejected
by ``target_session_attrs=read-write``. Each failure is transient, so a call rides over
the gap if its :class:`~tokenstore_sql.retries.RetryPolicy` outlasts it. Its jittered
waits (each between half and all of the current delay) add up to at least:

* ``RetryPolicy()`` (6 attempts, delays from 0.05 s doubling, 15 s deadline): 0.8 s
  (1.2 s on average). A standby promoted at once leaves an outage of 0.25-0.6 s here,
  which the default rode over in every run (9 of 9), its longest calls 0.3-0.9 s: the
  margin is thin. Over a gap of seconds calls raise ``StorageUnavailableError``
  after at most 2 s (measured in a 10 s gap: 56-64 such errors from 8 threads), and
  the same storages work again after the promotion.
* ``RetryPolicy(attempts=10)``: 4.6 s, for a promotion at once or within a few seconds.
* ``RetryPolicy(attempts=40, max_delay=1.0, deadline=30.0)``: 18 s, and no attempt
  starts after 30 s: it rides over a gap of 10 s (measured: longest call 11-12 s,
  no error).

For a gap of G seconds take ``deadline`` >= G + 5 and ``attempts`` >= 6 + 2 * G /
``max_delay``; ``max_delay`` is also how late a call may notice the promotion.

A primary whose host vanishes from the network (no refusal, no reset) costs more: libpq
tries the hosts in order and gives each one ``connect_timeout`` seconds, so every new
connection waits that long for the dead host before reaching the live one, also long
after the failover. With tokenstore-sql's default of 10 s the first call on each of the
pools' new connections takes 10 s (measured: 10.1 s); on a multi-host URL pass
``engine_options={"connect_timeout": 2}`` (libpq's least), and add ``connect_timeout``
per attempt when sizing the deadline.

With synchronous replication (``synchronous_standby_names`` naming the standby,
``synchronous_commit=on``) the primary acknowledges a commit only once the standby has
flushed it, and a promoted standby replays all it flushed: no acknowledged write may be
lost, which the synchronous tests assert key by key, on the standby just before its
promotion (all it received replayed) and on the new primary at the end. Without it, what
the standby had not received is lost: the asynchronous test measures that.

Each test logs its figures (``-o log_cli=true --log-cli-level=INFO`` shows them) and
records them as ``record_property`` entries. The module takes 75-105 s on 2 cores.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import pytest
from sqlalchemy import URL

from tests.support.faults import TcpProxy
from tests.support.private_servers import (
    HOST,
    SUPERUSER,
    PrivatePostgres,
    free_port,
    private_postgresql,
)
from tests.support.private_standby import REPLICATION_SETTINGS, PrivateStandby, private_standby
from tests.support.sdk import make_token_data
from tokenstore_sql import SQLAlchemyTokenStorage, StorageUnavailableError, TokenStoreError
from tokenstore_sql.engines import CONNECT_TIMEOUT_SECONDS
from tokenstore_sql.retries import RetryPolicy

pytestmark = [pytest.mark.postgresql, pytest.mark.topology]

log = logging.getLogger(__name__)
RecordProperty = Callable[[str, object], None]  # pytest's record_property fixture

DATABASE = "tokens"
NAMESPACE = "failover"
# Trust authentication ignores it; it must never show in a message or a repr.
PASSWORD = "hunter2-SECRET"
STORAGES = 2  # engines, each shared by its threads
THREADS = 8
KEYS_PER_THREAD = 3
READ_EVERY = 5  # every fifth call of a thread reads back a key of its own
WARM_UP = 1.5  # seconds of writing before the primary is killed
AFTER_PROMOTION = 3.0  # seconds of writing after the standby is promoted

DEFAULT_POLICY = RetryPolicy()
# The default's delays, four more attempts: rides over an outage of up to 4.5 s.
QUICK_PROMOTION_POLICY = RetryPolicy(attempts=10)
# Rides over an outage of up to 17 s; no attempt starts after 30 s.
LONG_GAP_POLICY = RetryPolicy(attempts=40, max_delay=1.0, deadline=30.0)


@dataclass(frozen=True)
class Call:
    """One storage call of a writer thread, as the caller saw it."""

    thread: int
    kind: str  # "store" or "get"
    key: str
    seq: int  # the value stored, or the value read back (-1: none)
    started: float
    ended: float
    error: str | None = None  # the exception's class (and code) when the call raised

    @property
    def seconds(self) -> float:
        return self.ended - self.started


@dataclass
class Writers:
    """Threads storing increasing values, each to keys of its own, through shared storages.

    A thread's values go up by one with each store, across its keys. Every call is
    journaled; an exception does not stop the thread. A read of a key of its own must
    give at least the last value acknowledged for it (``stale_reads`` collects any that
    do not).
    """

    storages: Sequence[SQLAlchemyTokenStorage]
    threads: int = THREADS
    calls: list[Call] = field(default_factory=list)
    stale_reads: list[str] = field(default_factory=list)
    first_error: BaseException | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _running: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        """Start the threads."""
        for number in range(self.threads):
            thread = threading.Thread(
                target=self._write, args=(number,), name=f"writer-{number}", daemon=True
            )
            thread.start()
            self._running.append(thread)

    def stop(self, timeout: float) -> list[str]:
        """Ask the threads to stop, and wait for them.

        :param timeout: Seconds to wait for all of them together.
        :returns: The names of the threads still running then (hung in a call).
        """
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._running:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        return [thread.name for thread in self._running if thread.is_alive()]

    def _write(self, number: int) -> None:
        storage = self.storages[number % len(self.storages)]
        keys = [f"t{number}-k{k}" for k in range(KEYS_PER_THREAD)]
        acknowledged: dict[str, int] = {}
        seq = 0
        while not self._stop.is_set():
            seq += 1
            key = keys[seq % len(keys)]
            kind = "get" if seq % READ_EVERY == 0 else "store"
            started = time.monotonic()
            try:
                if kind == "get":
                    data = storage.get_token_data(key)
                    got = -1 if data is None else int(data.access_token or "-1")
                    if got < acknowledged.get(key, -1):
                        self.stale_reads.append(f"{key}: read {got} after {acknowledged[key]}")
                else:
                    got = seq
                    storage.store_token_data_by_resource_server(
                        {key: make_token_data(key, access_token=str(seq))}
                    )
                    acknowledged[key] = seq
            except Exception as exc:
                code = getattr(exc, "code", None)
                error = type(exc).__name__ + (f"({code})" if code else "")
                self._journal(Call(number, kind, key, seq, started, time.monotonic(), error))
                with self._lock:
                    if self.first_error is None:
                        self.first_error = exc
            else:
                self._journal(Call(number, kind, key, got, started, time.monotonic()))

    def _journal(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)


@dataclass
class Outcome:
    """What one failover run did, as the callers and the new primary saw it."""

    url: URL  # the storages' multi-host URL
    policy: RetryPolicy
    gap: float
    paused: float  # monotonic time the WAL sender was frozen (= killed without a lag)
    killed: float  # monotonic time the primary was told to quit
    down: float  # ... and had quit
    promoted: float  # ... the standby had left recovery
    calls: list[Call]
    # key -> value on the standby just before its promotion, every WAL record received
    # replayed (read at monotonic time snapshot_at, after the primary's death); None
    # when the standby was promoted at once, without this read
    snapshot: dict[str, int] | None
    snapshot_at: float
    stored: dict[str, int]  # key -> value on the new primary at the end
    stale_reads: list[str]
    hung: list[str]
    first_error: BaseException | None
    reprs: list[str]

    @property
    def errors(self) -> list[Call]:
        """Calls that raised to their caller."""
        return [call for call in self.calls if call.error is not None]

    @property
    def acknowledged(self) -> list[Call]:
        """Stores that returned normally: the writes promised to the caller."""
        return [c for c in self.calls if c.kind == "store" and c.error is None]

    @property
    def longest(self) -> float:
        """The longest single call, in seconds."""
        return max((call.seconds for call in self.calls), default=0.0)

    def last_acknowledged(self) -> dict[str, int]:
        """Each key's last acknowledged value (values only grow, per key)."""
        last: dict[str, int] = {}
        for call in self.acknowledged:
            last[call.key] = max(last.get(call.key, -1), call.seq)
        return last

    def lost(self) -> dict[str, tuple[int, int | None]]:
        """Keys whose stored value at the end is older than their last acknowledged one.

        A write lost in the failover is hidden here once its key is written again after
        the promotion: :meth:`lost_in_failover` counts those.
        """
        return {
            key: (seq, self.stored.get(key))
            for key, seq in self.last_acknowledged().items()
            if self.stored.get(key, -1) < seq
        }

    def lost_in_failover(self) -> list[Call] | None:
        """Writes the old primary acknowledged that the standby did not have when promoted.

        :returns: ``None`` when the standby was not read before its promotion.
        """
        snapshot = self.snapshot
        if snapshot is None:
            return None
        return [
            call
            for call in self.acknowledged
            if call.ended < self.snapshot_at and snapshot.get(call.key, -1) < call.seq
        ]

    def unwritten(self) -> dict[str, int]:
        """Keys holding a value no call of their thread tried to store."""
        tried: dict[str, int] = {}
        for call in self.calls:
            if call.kind == "store":
                tried[call.key] = max(tried.get(call.key, -1), call.seq)
        return {key: seq for key, seq in self.stored.items() if seq > tried.get(key, -1)}

    def summary(self) -> str:
        """The figures of the run, on one line."""
        before = sum(call.ended < self.down for call in self.acknowledged)
        kinds = sorted({call.error or "" for call in self.errors})
        return (
            f"gap {self.gap:g} s with {self.policy}: {len(self.errors)} caller-visible "
            f"errors {kinds}, longest call {self.longest:.2f} s, outage "
            f"{self.promoted - self.killed:.2f} s (kill {self.down - self.killed:.2f} s), "
            f"acknowledged writes {before} before the kill and "
            f"{len(self.acknowledged) - before} after, lost in the failover "
            f"{_count(self.lost_in_failover())}, lost at the end {len(self.lost())}, "
            f"stale reads {len(self.stale_reads)}"
        )

    def record(self, record_property: RecordProperty) -> None:
        """Log the figures and attach them to the test's report."""
        log.info("%s", self.summary())
        record_property("failover", self.summary())


def _count(calls: list[Call] | None) -> str:
    return "(not read)" if calls is None else str(len(calls))


def failover_url(*ports: int, password: str | None = PASSWORD) -> URL:
    """The multi-host URL of :data:`DATABASE` on 127.0.0.1: whichever port takes writes."""
    return URL.create(
        "postgresql+psycopg",
        username=SUPERUSER,
        password=password,
        database=DATABASE,
        query={
            "host": tuple(f"{HOST}:{port}" for port in ports),
            "target_session_attrs": "read-write",
        },
    )


@contextlib.contextmanager
def replicated_pair(synchronous: bool) -> Iterator[tuple[PrivatePostgres, PrivateStandby]]:
    """A private primary holding an empty :data:`DATABASE`, and a hot standby of it."""
    with (
        private_postgresql(**REPLICATION_SETTINGS) as primary,
        private_standby(primary, synchronous=synchronous) as standby,
    ):
        primary.create_database(DATABASE)
        yield primary, standby


def stored_values(reader: SQLAlchemyTokenStorage) -> dict[str, int]:
    """Every key of ``reader``'s namespace and the value it holds."""
    stored = reader.get_token_data_by_resource_server()
    return {key: int(data.access_token or "-1") for key, data in stored.items()}


def close_all(storages: Sequence[SQLAlchemyTokenStorage]) -> None:
    """Close every storage (and dispose of its engine)."""
    for storage in storages:
        storage.close()


def fail_over(
    *,
    synchronous: bool,
    gap: float,
    policy: RetryPolicy,
    silent: bool = False,
    connect_timeout: int = CONNECT_TIMEOUT_SECONDS,
    lag: float = 0.0,
    snapshot: bool = True,
) -> Outcome:
    """Write through a multi-host URL while the primary dies and the standby takes over.

    :param synchronous: Replicate synchronously.
    :param gap: Seconds between the primary's death and the standby's promotion.
    :param policy: The storages' retry policy.
    :param silent: Reach the primary through a :class:`TcpProxy` that, when the primary
        dies, cuts every connection and then takes new ones but never answers (a host
        gone from the network, not a server refusing connections).
    :param connect_timeout: The engines' ``connect_timeout`` (libpq's, per host).
    :param lag: Seconds for which the primary's WAL sender is frozen just before the
        primary dies (and until it has been told to quit): the standby falls that far
        behind.
    :param snapshot: Before promoting the standby, wait until it has replayed all it
        received and read what it holds (:attr:`Outcome.snapshot`); this delays a
        promotion "at once" by about half a second.
    """
    # A call may take up to its deadline plus one connection attempt (one per host).
    bound = policy.deadline + 2 * connect_timeout + 5
    with replicated_pair(synchronous) as (primary, standby), contextlib.ExitStack() as stack:
        first_port = primary.port
        if silent:
            proxy = TcpProxy(HOST, primary.port)
            stack.callback(proxy.stop)
            first_port = proxy.port
        url = failover_url(first_port, standby.port)
        options = {"connect_timeout": connect_timeout}
        storages: list[SQLAlchemyTokenStorage] = []
        writers = Writers(storages)
        stack.callback(close_all, storages)
        stack.callback(writers.stop, timeout=bound)
        for _ in range(STORAGES):
            storages.append(
                SQLAlchemyTokenStorage(
                    url, namespace=NAMESPACE, retry=policy, engine_options=options
                )
            )
        # the standby alone, read-only until promoted; made now, to read at once later
        reader = SQLAlchemyTokenStorage(
            standby.url_for(DATABASE), namespace=NAMESPACE, create_schema=False
        )
        stack.callback(reader.close)
        writers.start()
        time.sleep(WARM_UP)
        with contextlib.ExitStack() as pause:
            resuming: threading.Timer | None = None
            if lag:
                resume = pause.enter_context(standby.sender_paused())
                paused = time.monotonic()
                time.sleep(lag)
                # resumed once the postmaster has passed on the quit: the sender exits
                resuming = threading.Timer(0.3, resume)
                resuming.start()
            killed = time.monotonic()
            if not lag:
                paused = killed
            if silent:
                stack.enter_context(proxy.black_hole())
            primary.stop("immediate")
            down = time.monotonic()
            if resuming is not None:
                resuming.join()
        held: dict[str, int] | None = None
        if snapshot:  # what the standby holds when promoted: all it received, replayed
            standby.wait_until_replayed()
            held = stored_values(reader)
        snapshot_at = time.monotonic()
        time.sleep(max(0.0, down + gap - snapshot_at))
        standby.promote()
        promoted = time.monotonic()
        time.sleep(AFTER_PROMOTION)
        hung = writers.stop(timeout=bound)
        return Outcome(
            url=url,
            policy=policy,
            gap=gap,
            paused=paused,
            killed=killed,
            down=down,
            promoted=promoted,
            calls=list(writers.calls),
            snapshot=held,
            snapshot_at=snapshot_at,
            stored=stored_values(reader),
            stale_reads=list(writers.stale_reads),
            hung=hung,
            first_error=writers.first_error,
            reprs=[repr(storage) for storage in storages],
        )


def assert_names_hosts_not_password(shown: str, url: URL) -> None:
    """``shown`` names every host of the multi-host ``url`` and never its password.

    A rendered URL (a storage's repr) escapes the ``:`` of ``host=127.0.0.1:5432`` in
    its query as ``%3A``; that counts as naming the host.
    """
    for text in (shown, unquote(shown)):
        assert PASSWORD not in text
        assert "SECRET" not in text
    for host in url.query["host"]:
        assert host in unquote(shown), f"{host} is not named in {shown!r}"


def assert_nothing_lost(outcome: Outcome) -> None:
    """Every acknowledged write is on the new primary, and nothing else is."""
    assert outcome.hung == [], "a call hung past its policy's deadline"
    assert outcome.lost_in_failover() in ([], None), "the standby lacked acknowledged writes"
    assert outcome.lost() == {}, "acknowledged writes were lost"
    assert outcome.unwritten() == {}
    assert outcome.stale_reads == []
    assert len(outcome.last_acknowledged()) == THREADS * KEYS_PER_THREAD
    after = {call.thread for call in outcome.acknowledged if call.started > outcome.promoted}
    assert after == set(range(THREADS)), "a thread wrote nothing after the promotion"


@pytest.mark.parametrize(
    ("gap", "policy", "lag", "snapshot"),
    [
        # promoted at once, without even reading the standby first
        pytest.param(0.0, QUICK_PROMOTION_POLICY, 0.0, False, id="promoted-at-once"),
        # the standby is held 0.5 s behind when the primary dies: the commits of that
        # half second wait for it, are cut off unacknowledged, and are retried
        pytest.param(10.0, LONG_GAP_POLICY, 0.5, True, id="promoted-after-10s"),
    ],
)
def test_a_promoted_synchronous_standby_takes_over_with_no_acknowledged_write_lost(
    gap: float, policy: RetryPolicy, lag: float, snapshot: bool, record_property: RecordProperty
) -> None:
    outcome = fail_over(synchronous=True, gap=gap, policy=policy, lag=lag, snapshot=snapshot)
    outcome.record(record_property)

    assert_nothing_lost(outcome)
    assert outcome.errors == [], "a call did not ride over the failover"
    assert outcome.first_error is None
    # every thread had a call in flight through the outage, and waited it out
    assert outcome.longest >= 0.5 * (outcome.promoted - outcome.down)
    assert outcome.longest < policy.deadline + 2 * CONNECT_TIMEOUT_SECONDS
    for shown in outcome.reprs:
        assert_names_hosts_not_password(shown, outcome.url)


def test_the_default_policy_gives_up_on_a_10s_gap_within_its_deadline_and_recovers(
    record_property: RecordProperty,
) -> None:
    # The limit of the default policy, documented: calls during a gap of 10 s raise
    # StorageUnavailableError (after 1-2 s, not hanging), acknowledged writes are still
    # all kept, and the same storages work again once the standby is promoted.
    policy, gap = DEFAULT_POLICY, 10.0
    outcome = fail_over(synchronous=True, gap=gap, policy=policy)
    outcome.record(record_property)

    assert_nothing_lost(outcome)
    assert outcome.errors, "the default policy rode over a 10 s gap: update the docs"
    assert all((call.error or "").startswith("StorageUnavailableError") for call in outcome.errors)
    assert all(call.seconds < policy.deadline + CONNECT_TIMEOUT_SECONDS for call in outcome.errors)
    assert all(outcome.down <= call.ended <= outcome.promoted + 1.0 for call in outcome.errors)
    error = outcome.first_error
    assert isinstance(error, StorageUnavailableError)
    assert_names_hosts_not_password(str(error), outcome.url)
    assert DATABASE in str(error)
    assert PASSWORD not in repr(error)
    assert PASSWORD not in "".join(traceback.format_exception(error))


def test_an_asynchronous_standby_loses_what_it_had_not_received(
    record_property: RecordProperty,
) -> None:
    """Measure what asynchronous replication loses in a failover.

    Without synchronous replication the primary acknowledges a commit once it has
    flushed it locally, and streams the WAL to the standby a moment later. A commit
    acknowledged but not yet streamed when the primary dies (an immediate stop) is not
    on the standby, and is lost when the standby is promoted: the old primary's WAL
    never reaches the new timeline. On one machine that window is a millisecond or
    so (a run without the lag below lost 0-3 writes), so the standby is held behind
    for 0.5 s first, as a loaded standby or a slow link would be (the primary's WAL
    sender is frozen). The figures show the writes lost (``lost in the failover``),
    which later writes to the same keys hide (``lost at the end``), and reads that
    went back in time. Asserted is only what holds whatever the timing: nothing
    acknowledged before the standby fell behind is lost, no key holds a value nobody
    wrote, no call fails or hangs, and writing resumes on the new primary.
    """
    outcome = fail_over(synchronous=False, gap=0.0, policy=QUICK_PROMOTION_POLICY, lag=0.5)
    outcome.record(record_property)
    lost = outcome.lost_in_failover()
    assert lost is not None
    log.info(
        "asynchronous replication lost %d acknowledged writes, of %d acknowledged while the "
        "standby was held behind, on %d keys",
        len(lost),
        sum(outcome.paused <= call.ended < outcome.killed for call in outcome.acknowledged),
        len({call.key for call in lost}),
    )

    assert all(call.ended > outcome.paused - 0.25 for call in lost)
    assert outcome.hung == []
    assert outcome.unwritten() == {}
    assert outcome.errors == []
    after = {call.thread for call in outcome.acknowledged if call.started > outcome.promoted}
    assert after == set(range(THREADS))


def test_a_primary_gone_silent_costs_each_new_connection_its_connect_timeout(
    record_property: RecordProperty,
) -> None:
    """A primary host that stops answering: nothing lost, calls slowed by connect_timeout.

    Its connections are cut and new ones are accepted but never answered, as from a
    host gone from the network. libpq gives the first host ``connect_timeout`` seconds
    before it tries the second, so each new connection (every call meets one after the
    failover: the pools drop the dead connections) takes that long, but no call fails.
    """
    connect_timeout = 2  # libpq's least; tokenstore-sql's default of 10 s makes calls 10 s
    policy = QUICK_PROMOTION_POLICY
    outcome = fail_over(
        synchronous=True, gap=0.0, policy=policy, silent=True, connect_timeout=connect_timeout
    )
    outcome.record(record_property)

    assert_nothing_lost(outcome)
    assert outcome.errors == []
    assert connect_timeout <= outcome.longest < policy.deadline + 2 * connect_timeout


def test_a_multi_host_url_with_every_host_down_fails_fast_naming_the_hosts() -> None:
    url = failover_url(free_port(), free_port())  # nothing listens on either
    started = time.monotonic()

    with pytest.raises(TokenStoreError) as caught:
        SQLAlchemyTokenStorage(url, retry=RetryPolicy(deadline=1.0))

    assert time.monotonic() - started < 1.0 + CONNECT_TIMEOUT_SECONDS
    shown = str(caught.value)
    assert_names_hosts_not_password(shown, url)
    assert f"/{DATABASE}" in shown
    assert PASSWORD not in repr(caught.value)
    assert PASSWORD not in "".join(traceback.format_exception(caught.value))


def test_the_standby_harness_streams_synchronously_and_leaves_nothing_behind() -> None:
    with private_postgresql(**REPLICATION_SETTINGS) as primary:
        with private_standby(primary) as standby:
            assert standby.replication() == ("streaming", "sync")
            assert standby.in_recovery()
            assert standby.port not in (primary.port, 5432, 3306)
            # promoted, it would wait for no standby of its own
            assert standby.execute("SHOW synchronous_standby_names") == [("",)]
            pid, directory = standby.pid, standby.directory
        assert not Path(f"/proc/{pid}").exists()
        assert not directory.exists()
        # the primary no longer waits for the standby that is gone: its commits return
        assert primary.execute("SHOW synchronous_standby_names") == [("",)]
        primary.create_database("after_the_standby")

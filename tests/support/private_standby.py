"""A streaming-replication standby of a private PostgreSQL server, for failover tests.

A failover test starts a primary of its own
(:func:`tests.support.private_servers.private_postgresql`), a hot standby of it, kills
the primary and promotes the standby::

    with (
        private_postgresql(**REPLICATION_SETTINGS) as primary,
        private_standby(primary, synchronous=True) as standby,
    ):
        primary.create_database("tokens")  # replicated: the standby has it too
        ...
        primary.stop("immediate")
        standby.promote()

:func:`private_standby` copies the primary with ``pg_basebackup -R -X stream`` into a
new temporary directory and starts the copy as a hot standby on a free port of its own,
streaming from the primary as ``application_name`` ``standby1``. It returns once the
standby takes connections, is in recovery, and the primary's ``pg_stat_replication``
shows it ``streaming`` (and, when ``synchronous``, with ``sync_state`` ``sync``: the
primary then acknowledges a commit only once the standby has flushed its WAL). On the
way out it stops the standby by its PID and removes its directory, as the harness does
for primaries, and makes a primary that still runs stop waiting for the standby.

The primary is made synchronous with ``ALTER SYSTEM`` *after* the base backup, so the
copy does not inherit ``synchronous_standby_names`` (a promoted standby that waits for a
standby of its own would hang every commit); the standby is also started with that
setting empty.

``initdb --auth trust`` lets the primary's own OS user in for replication from
127.0.0.1 (``host replication all 127.0.0.1/32 trust`` in ``pg_hba.conf``), and
PostgreSQL 15's defaults (``wal_level=replica``, ``max_wal_senders=10``,
``hot_standby=on``) allow streaming; :data:`REPLICATION_SETTINGS` states them for a
primary anyway.

Importing this module starts nothing.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .private_servers import (
    _DEFAULTS,
    _RESERVED,
    BINDIR,
    HOST,
    START_TIMEOUT,
    SUPERUSER,
    PrivatePostgres,
    Setting,
    _require_binaries,
    _server_account,
    _unavailable,
    child_pids,
    owned_directory,
    setting_text,
)

APPLICATION_NAME = "standby1"
# What a primary needs to stream to a standby (PostgreSQL 15's defaults, stated).
REPLICATION_SETTINGS: dict[str, Setting] = {"wal_level": "replica", "max_wal_senders": 4}
BASEBACKUP_TIMEOUT = 120.0
PROMOTE_TIMEOUT = 60
_NAME = re.compile(r"[a-z_][a-z0-9_]*")
# Settings the standby's harness owns, beyond where it listens.
_STANDBY_RESERVED = frozenset({"primary_conninfo", "hot_standby"})


class PrivateStandby(PrivatePostgres):
    """A hot standby of a :class:`PrivatePostgres`, made by :func:`private_standby`.

    Everything a :class:`PrivatePostgres` offers works on it (``execute``, ``url_for``,
    ``stop``, ``start``); ``initdb`` is replaced by :meth:`copy_primary`.

    :ivar primary: The server it streams from.
    :ivar application_name: The name the primary knows it by in ``pg_stat_replication``.
    """

    def __init__(
        self,
        directory: Path,
        primary: PrivatePostgres,
        application_name: str,
        settings: dict[str, str],
        account: pwd.struct_passwd | None,
    ) -> None:
        """Describe a standby of ``primary``; :meth:`copy_primary` and ``start`` make it.

        :param directory: An empty directory the server's account may write to.
        :param primary: The running server to copy and stream from.
        :param application_name: Its name on the primary (lowercase letters, digits, ``_``).
        :param settings: ``-c`` server options beyond where it listens and what it streams.
        :param account: The OS account to run as, or ``None`` to run as ourselves.
        """
        conninfo = (
            f"host={HOST} port={primary.port} user={SUPERUSER} application_name={application_name}"
        )
        super().__init__(
            directory,
            {**settings, "hot_standby": "on", "primary_conninfo": conninfo},
            account,
        )
        self.primary = primary
        self.application_name = application_name

    def initdb(self) -> None:
        """A standby is not made by ``initdb``: see :meth:`copy_primary`."""
        raise RuntimeError("a standby is made by copy_primary(), not initdb()")

    def copy_primary(self, timeout: float = BASEBACKUP_TIMEOUT) -> None:
        """Copy the primary into :attr:`data_directory` with ``pg_basebackup``.

        ``-R`` writes ``standby.signal`` (the copy starts in recovery), ``-X stream``
        brings the WAL written during the copy, ``-c fast`` does not wait for a spread
        checkpoint.

        :param timeout: Seconds the copy may take.
        :raises RuntimeError: ``pg_basebackup`` failed; the message holds its output.
        """
        self.run_data_tool(
            "pg_basebackup",
            "--host",
            HOST,
            "--port",
            str(self.primary.port),
            "--username",
            SUPERUSER,
            "--no-password",
            "--write-recovery-conf",
            "--wal-method",
            "stream",
            "--checkpoint",
            "fast",
            "--no-sync",
            timeout=timeout,
        )

    def in_recovery(self) -> bool:
        """Whether the server is (still) a standby: ``pg_is_in_recovery()``."""
        return bool(self.execute("SELECT pg_is_in_recovery()")[0][0])

    def replication(self) -> tuple[str, str] | None:
        """``(state, sync_state)`` of this standby in the primary's ``pg_stat_replication``.

        :returns: ``None`` while the primary shows no WAL sender for it.
        """
        rows = self.primary.execute(
            "SELECT state, sync_state FROM pg_stat_replication WHERE application_name = %s",
            [self.application_name],
        )
        return (str(rows[0][0]), str(rows[0][1])) if rows else None

    def wait_until_streaming(self, sync_state: str, timeout: float = START_TIMEOUT) -> None:
        """Return once this standby is in recovery and streams in ``sync_state``.

        :param sync_state: ``sync`` or ``async``, as ``pg_stat_replication`` shows it.
        :param timeout: Seconds to wait.
        :raises RuntimeError: It did not get there in time; the message holds what was seen.
        """
        deadline = time.monotonic() + timeout
        while True:
            seen = self.replication()
            if seen == ("streaming", sync_state) and self.in_recovery():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"standby {self.application_name} is not streaming ({sync_state}) after "
                    f"{timeout:g} s; the primary shows {seen}:\n{self.log()[-4000:]}"
                )
            time.sleep(0.05)

    def wait_until_replayed(self, timeout: float = START_TIMEOUT) -> None:
        """Return once the standby has lost its primary and replayed all WAL it received.

        What it holds then is what a promotion starts from. Replay has ended when it
        reached the end of what was received, or (the received WAL ending in the middle
        of a record) made no progress for half a second with no WAL receiver streaming.

        :param timeout: Seconds to wait.
        :raises RuntimeError: It still streams, or replays, after ``timeout``.
        """
        deadline = time.monotonic() + timeout
        replayed, since = None, time.monotonic()
        while True:
            idle, caught_up, now_replayed = self.execute(
                "SELECT NOT EXISTS (SELECT FROM pg_stat_wal_receiver WHERE status = 'streaming'),"
                " pg_last_wal_replay_lsn() >= COALESCE(pg_last_wal_receive_lsn(), '0/0'),"
                " pg_last_wal_replay_lsn()::text"
            )[0]
            now = time.monotonic()
            if now_replayed != replayed:
                replayed, since = now_replayed, now
            if idle and (caught_up or now - since >= 0.5):
                return
            if now > deadline:
                raise RuntimeError(
                    f"standby {self.application_name} still streams or replays after "
                    f"{timeout:g} s:\n{self.log()[-4000:]}"
                )
            time.sleep(0.02)

    @contextlib.contextmanager
    def sender_paused(self) -> Iterator[Callable[[], None]]:
        """Freeze the primary's WAL sender for this standby (``SIGSTOP``) for the block.

        The primary sends it nothing more: under asynchronous replication the standby
        falls behind while the primary goes on acknowledging commits; under synchronous
        replication those commits wait. (Freezing the standby's WAL receiver instead
        does not hold it back: the kernel buffers what the sender streams meanwhile.)
        The block ends with ``SIGCONT`` unless the process is gone; signals go through a
        pidfd taken while the process is the primary's child.

        :returns: A context manager yielding a function that resumes the sender early.
            A sender resumed after ``primary.stop("immediate")`` has signalled it exits
            without sending anything more.
        :raises RuntimeError: The primary has no WAL sender for this standby.
        """
        primary = self.primary
        rows = primary.execute(
            "SELECT pid FROM pg_stat_replication WHERE application_name = %s",
            [self.application_name],
        )
        pid = int(rows[0][0]) if rows else None
        if pid is None or pid not in child_pids(primary.pid):
            raise RuntimeError(f"the primary has no WAL sender for {self.application_name}")
        handle = os.pidfd_open(pid)

        def resume() -> None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(handle, signal.SIGCONT)

        try:
            signal.pidfd_send_signal(handle, signal.SIGSTOP)
            try:
                yield resume
            finally:
                resume()
        finally:
            os.close(handle)

    def promote(self, timeout: int = PROMOTE_TIMEOUT) -> None:
        """Make this standby a primary, and return once it has left recovery.

        It replays the WAL it received (all that the primary acknowledged under
        synchronous replication) and then takes writes.

        :param timeout: Seconds to wait for the promotion.
        :raises RuntimeError: It was not promoted within ``timeout``.
        """
        promoted = self.execute("SELECT pg_promote(true, %s)", [int(timeout)])[0][0]
        if not promoted or self.in_recovery():
            raise RuntimeError(
                f"standby {self.application_name} was not promoted within {timeout} s:\n"
                f"{self.log()[-4000:]}"
            )


def _set_synchronous_standby(primary: PrivatePostgres, name: str) -> None:
    """Have ``primary`` wait for standby ``name`` on every commit (``''``: for none)."""
    # two round trips: ALTER SYSTEM cannot run in the implicit transaction of a batch
    primary.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{name}'")
    primary.execute("SELECT pg_reload_conf()")


@contextlib.contextmanager
def private_standby(
    primary: PrivatePostgres,
    *,
    synchronous: bool = True,
    application_name: str = APPLICATION_NAME,
    **settings: Setting,
) -> Iterator[PrivateStandby]:
    """Copy ``primary`` into a hot standby streaming from it; stop and remove it after.

    :param primary: A running private server (with :data:`REPLICATION_SETTINGS`).
    :param synchronous: Make the primary wait for this standby's flush before it
        acknowledges a commit (``synchronous_standby_names``, ``synchronous_commit=on``).
    :param application_name: Its name on the primary (lowercase letters, digits, ``_``).
    :param settings: Server options for the standby, each passed as ``-c name=value``.
    :returns: A context manager yielding the running :class:`PrivateStandby`.
    :raises ValueError: A setting the harness owns was given, or a bad name.
    :raises pytest.skip.Exception: The binaries are missing (``pytest.fail`` under CI).
    """
    reserved = sorted((_RESERVED | _STANDBY_RESERVED).intersection(settings))
    if reserved:
        raise ValueError(f"the harness sets {', '.join(reserved)} itself")
    if not _NAME.fullmatch(application_name):
        raise ValueError(f"application_name {application_name!r} is not a plain name")
    if not primary.running:
        raise RuntimeError("the primary is not running")
    _require_binaries()
    if not os.access(BINDIR / "pg_basebackup", os.X_OK):
        _unavailable(f"a private standby needs pg_basebackup in {BINDIR}")
    account = _server_account()
    with owned_directory("tokenstore-pg-standby-", account) as directory:
        standby = PrivateStandby(
            directory,
            primary,
            application_name,
            {
                **_DEFAULTS,
                # once promoted, it must not wait for a standby of its own
                "synchronous_standby_names": "",
                **{name: setting_text(value) for name, value in settings.items()},
            },
            account,
        )
        made_synchronous = False
        try:
            standby.copy_primary()
            standby.start_first()
            if synchronous:
                _set_synchronous_standby(primary, application_name)
                made_synchronous = True
            standby.wait_until_streaming("sync" if synchronous else "async")
            yield standby
        finally:
            if made_synchronous and primary.running:
                # no commit on the primary may wait for a standby that is gone
                with contextlib.suppress(Exception):
                    _set_synchronous_standby(primary, "")
            standby.shut_down()

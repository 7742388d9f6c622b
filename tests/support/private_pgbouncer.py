"""A private PgBouncer in front of a private PostgreSQL server, for the topology tests.

::

    with private_postgresql() as server, private_pgbouncer(server.port) as bouncer:
        server.create_database("tokens")
        url = bouncer.url_for("tokens")  # postgresql+psycopg, through PgBouncer
        ...

:func:`private_pgbouncer` writes a ``pgbouncer.ini`` and a user list in a new temporary
directory and starts ``pgbouncer`` on it, in the foreground, listening on 127.0.0.1 only,
on a free port of its own, with its unix socket in that directory. Every database name
maps to the same name on the upstream server (``* = host=127.0.0.1 port=UPSTREAM``), and
clients are trusted (``auth_type = trust``: the user must be in the user list, which
holds ``postgres`` and the ``users`` given). On the way out, whether the test passed or
not, it stops PgBouncer by its PID (``SIGTERM``, PgBouncer's immediate shutdown, then
``SIGKILL`` after a bounded wait) and removes the directory.

Front a private server (:mod:`tests.support.private_servers`), never the shared one at
127.0.0.1:5432: a test that needs PgBouncer wants a pool of its own, and the shared
server's connections are counted by every other test run on the machine.

PgBouncer comes from ``/usr/sbin/pgbouncer`` (Debian's ``pgbouncer`` package) or the
``PATH``; without it the test skips, or fails under CI. PgBouncer refuses to run as
root, so as root it runs as the ``postgres`` OS user. Linux only.

Importing this module starts nothing.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from sqlalchemy import URL

from .private_servers import (
    HOST,
    SUPERUSER,
    double_quoted,
    free_port,
    os_account,
    owned_directory,
    popen_options,
    read_log,
    setting_text,
    signal_and_wait,
    start_on_a_free_port,
    unavailable,
    wait_until_ready,
)

if TYPE_CHECKING:
    import psycopg

PACKAGE = "pgbouncer"
DEFAULT_BINARY = Path("/usr/sbin/pgbouncer")
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
# Clients that psycopg and SQLAlchemy may send startup parameters PgBouncer does not
# track; it refuses a connection with one it does not know, unless told to ignore it.
IGNORED_STARTUP_PARAMETERS = ("extra_float_digits", "options")

PoolMode = Literal["session", "transaction", "statement"]
Setting = str | int | float | bool

# Settings the harness owns: where PgBouncer listens, logs and authenticates.
_RESERVED = frozenset(
    {
        "listen_addr",
        "listen_port",
        "unix_socket_dir",
        "auth_type",
        "auth_file",
        "logfile",
        "pidfile",
        "pool_mode",
        "default_pool_size",
        "max_client_conn",
    }
)


def _unavailable(reason: str) -> NoReturn:
    unavailable("PgBouncer", reason)


def find_binary() -> Path:
    """Find the ``pgbouncer`` executable; skip (or fail under CI) when there is none.

    :returns: ``/usr/sbin/pgbouncer`` if it is there, else the one on the ``PATH``.
    """
    if os.access(DEFAULT_BINARY, os.X_OK):
        return DEFAULT_BINARY
    found = shutil.which("pgbouncer")
    if found is None:
        _unavailable(
            f"a private PgBouncer needs {DEFAULT_BINARY} or pgbouncer on the PATH: "
            f"install the Debian package {PACKAGE}"
        )
    return Path(found)


class PrivatePgBouncer:
    """A PgBouncer of one test's own, made by :func:`private_pgbouncer`.

    :ivar directory: The temporary directory holding the configuration, the user list,
        the unix socket and the log; removed when the :func:`private_pgbouncer` block ends.
    :ivar config_path: ``directory / "pgbouncer.ini"``.
    :ivar log_path: Where PgBouncer logs, ``directory / "pgbouncer.log"``.
    :ivar pool_mode: ``session``, ``transaction`` or ``statement``.
    :ivar pool_size: Server connections per (database, user) pair: ``default_pool_size``.
    :ivar upstream_port: The PostgreSQL server's port on 127.0.0.1.
    """

    def __init__(
        self,
        binary: Path,
        directory: Path,
        upstream_port: int,
        *,
        pool_mode: PoolMode,
        pool_size: int,
        max_client_conn: int,
        users: Sequence[str],
        settings: Mapping[str, str],
        account: pwd.struct_passwd | None,
    ) -> None:
        """Describe a PgBouncer; :meth:`start` writes its files and starts it."""
        self.binary = binary
        self.directory = directory
        self.config_path = directory / "pgbouncer.ini"
        self.log_path = directory / "pgbouncer.log"
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        self.upstream_port = upstream_port
        self._max_client_conn = max_client_conn
        self._users = list(dict.fromkeys([SUPERUSER, *users]))
        self._settings = dict(settings)
        self._account = account
        self._port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        """The TCP port on 127.0.0.1 PgBouncer listens on."""
        return self._port

    @property
    def pid(self) -> int:
        """The PID of the PgBouncer process.

        :raises RuntimeError: It was never started.
        """
        if self._process is None:
            raise RuntimeError("the private PgBouncer is not running")
        return self._process.pid

    @property
    def running(self) -> bool:
        """Whether the PgBouncer this object started is still alive."""
        return self._process is not None and self._process.poll() is None

    def url_for(self, database: str, user: str = SUPERUSER) -> URL:
        """The URL of ``database`` through PgBouncer as ``user`` (no password: trust).

        :param database: A database of the upstream server.
        :param user: A user in PgBouncer's user list and a role of the upstream server.
        :returns: A ``postgresql+psycopg`` URL over TCP.
        """
        return URL.create(
            "postgresql+psycopg", username=user, host=HOST, port=self.port, database=database
        )

    def log(self) -> str:
        """Everything PgBouncer has logged so far."""
        return read_log(self.log_path)

    def config(self) -> str:
        """The text of ``pgbouncer.ini``, as :meth:`start` writes it."""
        settings = {
            "listen_addr": HOST,
            "listen_port": str(self.port),
            "unix_socket_dir": str(self.directory),
            "auth_type": "trust",
            "auth_file": str(self.directory / "userlist.txt"),
            "admin_users": SUPERUSER,
            "stats_users": SUPERUSER,
            "logfile": str(self.log_path),
            "pool_mode": self.pool_mode,
            "default_pool_size": str(self.pool_size),
            "min_pool_size": "0",
            "reserve_pool_size": "0",
            "max_client_conn": str(self._max_client_conn),
            "ignore_startup_parameters": ",".join(IGNORED_STARTUP_PARAMETERS),
            "server_login_retry": "1",
            **self._settings,
        }
        lines = [
            "[databases]",
            f"* = host={HOST} port={self.upstream_port}",
            "",
            "[pgbouncer]",
            *(f"{name} = {value}" for name, value in settings.items()),
        ]
        return "\n".join(lines) + "\n"

    def admin(self, command: str) -> list[dict[str, str | None]]:
        """Run a command of PgBouncer's admin console (``SHOW POOLS``, say).

        The console speaks the simple query protocol only, so the command goes through
        libpq's ``PQexec``.

        :returns: Each row as a mapping of column name to its text (``None`` for NULL).
        :raises RuntimeError: The console refused the command.
        """
        from psycopg import pq

        with self._connect("pgbouncer", timeout=5) as connection:
            result = connection.pgconn.exec_(command.encode())
            if result.status not in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
                message = (result.error_message or b"").decode(errors="replace").strip()
                raise RuntimeError(f"PgBouncer refused {command!r}: {message}")
            names = [(result.fname(column) or b"").decode() for column in range(result.nfields)]
            rows = []
            for row in range(result.ntuples):
                values = [result.get_value(row, column) for column in range(result.nfields)]
                rows.append(
                    {
                        name: None if value is None else value.decode()
                        for name, value in zip(names, values, strict=True)
                    }
                )
            return rows

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Write the files, start PgBouncer, and wait until a query passes through it.

        :param timeout: Seconds to wait for ``SELECT 1`` through it to succeed.
        :raises RuntimeError: It is running already, or did not come up; the message holds
            the end of its log. :class:`PortTakenError` when its port was taken.
        """
        if self.running:
            raise RuntimeError(f"the private PgBouncer (PID {self.pid}) is running")
        self._write_files()
        logged_before = len(self.log())
        with (self.directory / "console.log").open("ab") as console:
            process = subprocess.Popen(
                [str(self.binary), str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                # its own session: a Ctrl-C meant for pytest reaches the harness, not it
                start_new_session=True,
                **self._popen_options(),
            )
        self._process = process
        try:
            self._wait_until_ready(process, timeout, logged_before)
        except BaseException:
            self._process = None
            self._halt(process)
            raise

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop PgBouncer (``SIGTERM``; ``SIGKILL`` after ``timeout`` seconds) and reap it.

        Safe to repeat: does nothing when it is not running.
        """
        process, self._process = self._process, None
        if process is not None:
            self._halt(process, timeout)

    def start_first(self) -> None:
        """Start PgBouncer for the first time, on another free port if its own was taken."""
        start_on_a_free_port(self.start, self._move)

    def _move(self, port: int) -> None:
        self._port = port

    def _write_files(self) -> None:
        self.config_path.write_text(self.config())
        userlist = "".join(f"{double_quoted(user)} {double_quoted('')}\n" for user in self._users)
        (self.directory / "userlist.txt").write_text(userlist)
        if self._account is not None:
            for name in ("pgbouncer.ini", "userlist.txt"):
                os.chown(self.directory / name, self._account.pw_uid, self._account.pw_gid)

    def _wait_until_ready(
        self, process: subprocess.Popen[bytes], timeout: float, logged_before: int
    ) -> None:
        wait_until_ready(
            process,
            self._passes_a_query,
            lambda: self.log()[logged_before:] + self._console(),
            name="PgBouncer",
            port=self.port,
            timeout=timeout,
            waiting_for="passed no query",
        )

    def _console(self) -> str:
        return read_log(self.directory / "console.log")

    def _connect(self, database: str, *, timeout: int, **options: Any) -> psycopg.Connection[Any]:
        """A superuser's autocommit connection through PgBouncer."""
        import psycopg

        return psycopg.connect(
            host=HOST,
            port=self.port,
            dbname=database,
            user=SUPERUSER,
            connect_timeout=timeout,
            autocommit=True,
            **options,
        )

    def _passes_a_query(self) -> bool:
        import psycopg

        try:
            with self._connect("postgres", timeout=2, prepare_threshold=None) as connection:
                connection.execute("SELECT 1").fetchone()
        except psycopg.OperationalError:
            return False
        return True

    def _popen_options(self) -> dict[str, Any]:
        """Run as the account, in the directory, with no PG* variables around."""
        return popen_options(self.directory, self._account)

    @staticmethod
    def _halt(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
        """``SIGTERM`` (immediate shutdown), then ``SIGKILL`` after ``timeout``; reap it."""
        if signal_and_wait(process, signal.SIGTERM, timeout):
            return
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait(timeout=timeout)


@contextlib.contextmanager
def private_pgbouncer(
    upstream_port: int,
    *,
    pool_mode: PoolMode = "transaction",
    pool_size: int = 8,
    max_client_conn: int = 500,
    users: Sequence[str] = (),
    **settings: Setting,
) -> Iterator[PrivatePgBouncer]:
    """Start a PgBouncer of the test's own in front of 127.0.0.1:``upstream_port``.

    :param upstream_port: The port of a private PostgreSQL server (never 5432's shared one).
    :param pool_mode: PgBouncer's ``pool_mode``.
    :param pool_size: ``default_pool_size``: server connections per database and user.
    :param max_client_conn: Client connections PgBouncer accepts in all.
    :param users: Users besides ``postgres`` that may log in (trusted, no password).
    :param settings: More ``[pgbouncer]`` settings (``True``/``False`` as ``1``/``0``);
        where it listens, logs and authenticates, and the pool settings above, are the
        harness's.
    :returns: A context manager yielding the running :class:`PrivatePgBouncer`.
    :raises ValueError: A setting the harness owns was given, or the upstream is 5432.
    :raises pytest.skip.Exception: PgBouncer is missing (``pytest.fail`` under CI).
    """
    reserved = sorted(_RESERVED.intersection(settings))
    if reserved:
        raise ValueError(f"the harness sets {', '.join(reserved)} itself")
    if upstream_port == 5432:
        raise ValueError("front a private PostgreSQL server, not the shared one at 5432")
    binary = find_binary()
    account = os_account(SUPERUSER, "PgBouncer", "PgBouncer", f"{PACKAGE} (or postgresql)")
    with owned_directory("tokenstore-pgbouncer-", account) as directory:
        bouncer = PrivatePgBouncer(
            binary,
            directory,
            upstream_port,
            pool_mode=pool_mode,
            pool_size=pool_size,
            max_client_conn=max_client_conn,
            users=users,
            settings={name: setting_text(value, "1", "0") for name, value in settings.items()},
            account=account,
        )
        try:
            bouncer.start_first()
            yield bouncer
        finally:
            bouncer.stop()

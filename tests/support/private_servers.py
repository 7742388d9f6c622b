"""Private PostgreSQL 15 servers for tests that stop, restart or reconfigure a server.

The servers at 127.0.0.1:5432 (PostgreSQL) and 127.0.0.1:3306 (MariaDB) are shared by
every test run on the machine: no test may stop or restart them, or change a role or a
global setting on them. A test that needs any of that starts a server of its own::

    with private_postgresql(statement_timeout="1s") as server:
        url = server.create_database("tokens")
        server.execute("CREATE ROLE app LOGIN; ALTER ROLE app SET lock_timeout = '500ms'")
        ...
        server.stop("immediate")
        server.start()

:func:`private_postgresql` runs ``initdb`` in a new temporary directory and starts
``postgres`` on it, listening on 127.0.0.1 only, on a free port of its own, with its
unix socket in that directory, trust authentication and no ``fsync``. On the way out,
whether the test passed or not, it stops the postmaster by its PID (a fast shutdown,
after a bounded wait an immediate one, and last ``SIGKILL`` for it and its children)
and removes the directory. Only a test process killed outright (``SIGKILL``) leaves a
server behind. A fresh cluster takes a second or two to make.

The binaries come from ``/usr/lib/postgresql/15/bin`` (Debian's ``postgresql-15``
package); without them the test skips, or fails under CI. PostgreSQL refuses to run as
root, so as root the server runs as the ``postgres`` OS user. Linux only (``/proc``).

Importing this module starts nothing.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import pytest
from sqlalchemy import URL

if TYPE_CHECKING:
    import psycopg

BINDIR = Path("/usr/lib/postgresql/15/bin")
PACKAGE = "postgresql-15"
HOST = "127.0.0.1"
SUPERUSER = "postgres"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0

StopMode = Literal["smart", "fast", "immediate"]
Setting = str | int | float | bool

# PostgreSQL's shutdown modes, as the postmaster reads them from signals.
_SHUTDOWN_SIGNALS: dict[str, signal.Signals] = {
    "smart": signal.SIGTERM,
    "fast": signal.SIGINT,
    "immediate": signal.SIGQUIT,
}
# Settings the harness owns: where the server listens.
_RESERVED = frozenset({"port", "listen_addresses", "unix_socket_directories"})
# Surviving an OS crash is of no use to a server that lives for one test. Commits still
# reach the WAL in the OS's cache (synchronous_commit stays on), so an immediate stop,
# which is a server crash, loses no committed transaction.
_DEFAULTS: dict[str, str] = {"fsync": "off", "full_page_writes": "off"}
_PORT_ATTEMPTS = 3


class PortTakenError(RuntimeError):
    """The server could not listen on its port: another process took it first."""


def in_ci(environ: Mapping[str, str] | None = None) -> bool:
    """Tell whether this is a CI run, where a missing server must fail, not skip.

    :param environ: The environment to read; ``os.environ`` when omitted.
    :returns: ``True`` when ``CI`` is set to anything but empty, ``0``, ``false`` or ``no``.
    """
    value = (os.environ if environ is None else environ).get("CI", "")
    return value.strip().lower() not in ("", "0", "false", "no")


def unavailable(what: str, reason: str) -> NoReturn:
    """Skip the test for ``reason``, or fail it under CI, which expects ``what`` to run.

    :param what: The private server, as in "a private PostgreSQL server".
    :param reason: What is missing and which package brings it.
    """
    if in_ci():
        pytest.fail(f"CI expects {what}: {reason}", pytrace=False)
    pytest.skip(reason)


def _unavailable(reason: str) -> NoReturn:
    unavailable("a private PostgreSQL server", reason)


def os_account(name: str, what: str, program: str, package: str) -> pwd.struct_passwd | None:
    """The OS account a server runs as when we are root; ``None`` (ourselves) otherwise.

    :param name: The account, such as ``postgres`` or ``mysql``.
    :param what: The private server, for :func:`unavailable`.
    :param program: The server program that refuses to run as root, for the skip reason.
    :param package: The package that creates the account, for the skip reason.
    """
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(name)
    except KeyError:
        unavailable(
            what,
            f"{program} refuses to run as root and there is no {name!r} OS user to run it "
            f"as: install the {package} package, which creates one",
        )


def _require_binaries() -> None:
    """Skip (or fail under CI) unless ``initdb``, ``pg_ctl`` and ``postgres`` are installed."""
    missing = [
        name for name in ("initdb", "pg_ctl", "postgres") if not os.access(BINDIR / name, os.X_OK)
    ]
    if missing:
        _unavailable(
            f"a private PostgreSQL server needs {', '.join(missing)} in {BINDIR}: "
            f"install the {PACKAGE} package"
        )


def _server_account() -> pwd.struct_passwd | None:
    """The OS account the server runs as: ``postgres`` as root, else ``None`` (ourselves)."""
    return os_account(SUPERUSER, "a private PostgreSQL server", "PostgreSQL", PACKAGE)


def read_log(path: Path) -> str:
    """Everything logged to ``path`` so far (``""`` before the process first writes it)."""
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


@contextlib.contextmanager
def owned_directory(prefix: str, account: pwd.struct_passwd | None) -> Iterator[Path]:
    """A new temporary directory, owned by ``account`` (the servers' OS account) if given.

    It is removed, with all in it, when the block ends.
    """
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        if account is not None:
            os.chown(directory, account.pw_uid, account.pw_gid)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run_tool(command: Sequence[str], *, timeout: float, **options: Any) -> None:
    """Run a server's set-up tool (initdb, say) to its end; raise with its output on failure."""
    done = subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        **options,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{Path(command[0]).name} failed with exit status {done.returncode}:\n"
            f"{done.stdout}{done.stderr}"
        )


def popen_options(
    directory: Path, account: pwd.struct_passwd | None, **environment: str
) -> dict[str, Any]:
    """``subprocess`` options to run a PostgreSQL program as ``account`` in ``directory``.

    :param environment: Variables to set, on top of ours with no PG* variables around.
    """
    variables = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    options: dict[str, Any] = {"cwd": directory, "env": {**variables, **environment}}
    if account is not None:
        options.update(user=account.pw_uid, group=account.pw_gid, extra_groups=[])
    return options


def signal_and_wait(process: subprocess.Popen[bytes], signum: int, timeout: float) -> bool:
    """Send ``signum`` to ``process`` and wait up to ``timeout``: whether it has exited."""
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signum)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    return True


def wait_until_ready(
    process: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    news: Callable[[], str],
    *,
    name: str,
    port: int,
    timeout: float,
    waiting_for: str,
) -> None:
    """Return once ``ready()``; raise with the process's ``news()`` if it exits or times out.

    A process that exits saying its port is in use raises :class:`PortTakenError`, so that
    :func:`start_on_a_free_port` can try another port.
    """
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            text = news()
            if "Address already in use" in text:
                raise PortTakenError(f"port {port} is taken:\n{text[-2000:]}")
            raise RuntimeError(
                f"{name} exited with status {process.returncode} while starting:\n{text[-4000:]}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} {waiting_for} within {timeout:g} s:\n{news()[-4000:]}")
        time.sleep(0.05)


def start_on_a_free_port(start: Callable[[], None], move: Callable[[int], None]) -> None:
    """``start()``; while the port turns out taken, ``move()`` to another free port and retry."""
    for attempt in range(1, _PORT_ATTEMPTS + 1):
        try:
            start()
            return
        except PortTakenError:
            if attempt == _PORT_ATTEMPTS:
                raise
            move(free_port())


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on at the moment of asking."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
    return port


def setting_text(value: Setting, on: str = "on", off: str = "off") -> str:
    """A Python value as a server setting (PostgreSQL's ``-c name=value`` by default)."""
    if isinstance(value, bool):
        return on if value else off
    return str(value)


def double_quoted(text: str) -> str:
    """``text`` in double quotes, inner ones doubled: a PostgreSQL identifier, say."""
    return '"' + text.replace('"', '""') + '"'


def _parent(pid: int) -> int | None:
    """The parent PID of process ``pid`` as ``/proc`` gives it, or ``None`` if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 else None


def child_pids(pid: int) -> list[int]:
    """The PIDs of the processes whose parent is ``pid`` (zombies too), from ``/proc``.

    :param pid: A process ID, such as a postmaster's.
    :returns: Its children's PIDs (empty where there is no ``/proc``).
    """
    return [
        int(entry.name) for entry in Path("/proc").glob("[0-9]*") if _parent(int(entry.name)) == pid
    ]


def _kill_children(pid: int) -> None:
    """``SIGKILL`` every child of ``pid``, each through a pidfd taken while it is ``pid``'s.

    Checking the parent after opening the pidfd makes sure the signal reaches that child,
    not a process that took its PID after the child had been reaped.
    """
    for child in child_pids(pid):
        try:
            handle = os.pidfd_open(child)
        except ProcessLookupError:
            continue
        try:
            if _parent(child) == pid:
                signal.pidfd_send_signal(handle, signal.SIGKILL)
        except ProcessLookupError:
            pass
        finally:
            os.close(handle)


class PrivatePostgres:
    """A PostgreSQL server of one test's own, made by :func:`private_postgresql`.

    :ivar directory: The temporary directory holding the data directory, the socket and
        the server's log; removed when the :func:`private_postgresql` block ends.
    :ivar data_directory: The cluster, ``directory / "data"``.
    :ivar log_path: Where the server writes its log, ``directory / "server.log"``.
    """

    def __init__(
        self,
        directory: Path,
        settings: Mapping[str, str],
        account: pwd.struct_passwd | None,
    ) -> None:
        """Describe a server; :meth:`initdb` and :meth:`start` make and start it.

        :param directory: An empty directory the server's account may write to.
        :param settings: ``-c`` server options, beyond where the server listens.
        :param account: The OS account to run as, or ``None`` to run as ourselves.
        """
        self.directory = directory
        self.data_directory = directory / "data"
        self.log_path = directory / "server.log"
        self._settings = dict(settings)
        self._account = account
        self._port = free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None

    @property
    def port(self) -> int:
        """The TCP port on 127.0.0.1 the server listens on, the same after a restart."""
        return self._port

    @property
    def pid(self) -> int:
        """The PID of the postmaster now running, or of the last one if it was stopped.

        :raises RuntimeError: The server was never started.
        """
        if self._pid is None:
            raise RuntimeError("the private PostgreSQL server was never started")
        return self._pid

    @property
    def running(self) -> bool:
        """Whether the postmaster this object started is still alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def settings(self) -> dict[str, str]:
        """The ``-c`` server options the server runs with (a copy)."""
        return {**self._settings, **self._listening()}

    @property
    def admin_url(self) -> str:
        """The superuser's URL for the ``postgres`` database, rendered as a string."""
        return self.url_for("postgres").render_as_string(hide_password=False)

    def url_for(self, database: str, user: str = SUPERUSER) -> URL:
        """The URL of ``database`` on this server as ``user`` (no password: trust auth).

        :param database: A database name.
        :param user: A role that may log in.
        :returns: A ``postgresql+psycopg`` URL over TCP.
        """
        return URL.create(
            "postgresql+psycopg", username=user, host=HOST, port=self.port, database=database
        )

    def log(self) -> str:
        """Everything the server has logged so far (``""`` before it first starts)."""
        return read_log(self.log_path)

    def execute(
        self,
        sql: str,
        params: Sequence[Any] | Mapping[str, Any] | None = None,
        *,
        database: str = "postgres",
        user: str = SUPERUSER,
    ) -> list[tuple[Any, ...]]:
        """Run SQL in autocommit on a connection of its own, as ``user`` (the superuser).

        Without ``params``, ``sql`` may hold several statements separated by ``;``.

        :param sql: The statement(s); placeholders as psycopg takes them (``%s``).
        :param params: Values for the placeholders of a single statement.
        :param database: The database to connect to.
        :param user: The role to connect as.
        :returns: The rows of the last statement, or ``[]`` if it returns none.
        """
        with self._connect(database, user) as connection:
            cursor = connection.execute(sql, params)
            while cursor.nextset():
                pass
            return cursor.fetchall() if cursor.description is not None else []

    def create_database(self, name: str, owner: str | None = None) -> URL:
        """Create an empty UTF-8 database.

        :param name: Its name.
        :param owner: A role to own it; the superuser when omitted.
        :returns: Its URL, for the superuser.
        """
        statement = f"CREATE DATABASE {double_quoted(name)} ENCODING 'UTF8' TEMPLATE template0"
        if owner is not None:
            statement += f" OWNER {double_quoted(owner)}"
        self.execute(statement)
        return self.url_for(name)

    def initdb(self) -> None:
        """Make a new cluster in :attr:`data_directory`, with trust authentication.

        :raises RuntimeError: ``initdb`` failed; the message holds its output.
        """
        self.run_data_tool(
            "initdb",
            "--username",
            SUPERUSER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--no-locale",
            "--no-sync",
            "--no-instructions",
            timeout=120,
        )

    def run_data_tool(self, tool: str, *arguments: str, timeout: float) -> None:
        """Run ``tool`` (from :data:`BINDIR`) on :attr:`data_directory` as the server would.

        :raises RuntimeError: It failed; the message holds its output.
        """
        command = [str(BINDIR / tool), "--pgdata", str(self.data_directory), *arguments]
        run_tool(command, timeout=timeout, **self._popen_options())

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the postmaster on the same port and data, and wait until it takes connections.

        :param timeout: Seconds to wait for it to accept a connection.
        :raises RuntimeError: It is already running, or did not come up; the message holds
            the end of its log. :class:`PortTakenError` when its port was taken.
        """
        if self.running:
            raise RuntimeError(f"the private PostgreSQL server (PID {self.pid}) is running")
        self._process = None
        logged_before = len(self.log())
        with self.log_path.open("ab") as log:
            process = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # its own session: a Ctrl-C meant for pytest reaches the harness, not it
                start_new_session=True,
                **self._popen_options(),
            )
        self._process = process
        self._pid = process.pid
        try:
            self._wait_until_ready(process, timeout, logged_before)
        except BaseException:
            self._process = None
            self._halt(process, signal.SIGQUIT, timeout=5.0)
            raise

    def stop(self, mode: StopMode = "fast", timeout: float = STOP_TIMEOUT) -> None:
        """Shut the server down, and wait until the postmaster has exited.

        ``smart`` waits for every client to disconnect, ``fast`` disconnects them, and
        ``immediate`` quits at once, as a crash does (the next start recovers from the
        WAL). After ``timeout`` seconds the postmaster and its children are killed.

        :param mode: PostgreSQL's shutdown mode.
        :param timeout: Seconds to wait before ``SIGKILL``.
        :raises RuntimeError: The server is not running (was never started, or stopped).
        """
        process = self._process
        if process is None:
            raise RuntimeError("the private PostgreSQL server is not running")
        try:
            self._halt(process, _SHUTDOWN_SIGNALS[mode], timeout)
        finally:
            self._process = None

    def restart(self, mode: StopMode = "fast") -> None:
        """:meth:`stop` then :meth:`start`, on the same port and data directory.

        :param mode: The shutdown mode.
        """
        self.stop(mode)
        self.start()

    def shut_down(self) -> None:
        """Stop the server if it runs, fast, killing it after :data:`STOP_TIMEOUT` seconds."""
        process, self._process = self._process, None
        if process is not None:
            self._halt(process, signal.SIGINT, STOP_TIMEOUT)

    def start_first(self) -> None:
        """Start the server for the first time, on another free port if its own was taken."""
        start_on_a_free_port(self.start, self._move)

    def _move(self, port: int) -> None:
        self._port = port

    def _wait_until_ready(
        self, process: subprocess.Popen[bytes], timeout: float, logged_before: int
    ) -> None:
        """Return once the server takes a connection and ``postmaster.pid`` names ``process``."""
        wait_until_ready(
            process,
            self._accepts_connections,
            lambda: self.log()[logged_before:],
            name="PostgreSQL",
            port=self.port,
            timeout=timeout,
            waiting_for="did not accept connections",
        )
        recorded = self._recorded_pid()
        if recorded != process.pid:
            raise RuntimeError(
                f"postmaster.pid names PID {recorded}, but the process started is {process.pid}"
            )

    def _listening(self) -> dict[str, str]:
        return {
            "port": str(self.port),
            "listen_addresses": HOST,
            "unix_socket_directories": str(self.directory),
        }

    def _command(self) -> list[str]:
        command = [str(BINDIR / "postgres"), "-D", str(self.data_directory)]
        for name, value in self.settings.items():
            command += ["-c", f"{name}={value}"]
        return command

    def _popen_options(self) -> dict[str, Any]:
        """Run as the server's account, in its directory, with no PG* variables around."""
        return popen_options(self.directory, self._account, LC_ALL="C")

    def _connect(
        self, database: str = "postgres", user: str = SUPERUSER
    ) -> psycopg.Connection[Any]:
        import psycopg

        return psycopg.connect(
            host=HOST,
            port=self.port,
            dbname=database,
            user=user,
            connect_timeout=5,
            autocommit=True,
        )

    def _accepts_connections(self) -> bool:
        import psycopg

        try:
            self._connect().close()
        except psycopg.OperationalError:
            return False
        return True

    def _recorded_pid(self) -> int | None:
        """The postmaster's PID as the first line of ``postmaster.pid`` gives it."""
        try:
            first = (self.data_directory / "postmaster.pid").read_text().split("\n", 1)[0]
        except OSError:
            return None
        return int(first) if first.strip().isdigit() else None

    @staticmethod
    def _halt(process: subprocess.Popen[bytes], signum: int, timeout: float) -> None:
        """Stop the postmaster with ``signum``, harder after each ``timeout``; always reap it.

        First ``signum``; then an immediate shutdown (``SIGQUIT``), in which the postmaster
        ends its children itself; last ``SIGKILL`` for the children, which the postmaster
        reaps, and then for the postmaster. (Its orphans would go to PID 1, which does not
        reap them everywhere.)
        """
        for step in (signum, signal.SIGQUIT):
            if signal_and_wait(process, step, timeout):
                return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGCONT)  # a stopped postmaster cannot reap
        _kill_children(process.pid)
        deadline = time.monotonic() + 5.0
        while child_pids(process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        process.kill()
        process.wait()


@contextlib.contextmanager
def private_postgresql(**settings: Setting) -> Iterator[PrivatePostgres]:
    """Make and start a PostgreSQL 15 server of the test's own; stop and remove it after.

    :param settings: Server options, each passed as ``-c name=value`` (``True`` and
        ``False`` as ``on`` and ``off``); ``port``, ``listen_addresses`` and
        ``unix_socket_directories`` are the harness's.
    :returns: A context manager yielding the running :class:`PrivatePostgres`.
    :raises ValueError: A setting the harness owns was given.
    :raises pytest.skip.Exception: The binaries are missing (``pytest.fail`` under CI).
    """
    reserved = sorted(_RESERVED.intersection(settings))
    if reserved:
        raise ValueError(f"the harness sets {', '.join(reserved)} itself")
    _require_binaries()
    account = _server_account()
    with owned_directory("tokenstore-pg-", account) as directory:
        server = PrivatePostgres(
            directory,
            {**_DEFAULTS, **{name: setting_text(value) for name, value in settings.items()}},
            account,
        )
        try:
            server.initdb()
            server.start_first()
            yield server
        finally:
            server.shut_down()

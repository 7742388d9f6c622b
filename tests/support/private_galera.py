"""A private three-node MariaDB Galera cluster on 127.0.0.1, for the topology tests.

Galera replicates every commit to all nodes before it is acknowledged, but applies it
on the other nodes a moment later, and settles write conflicts between nodes at commit
time (certification). Tests of what an application sees across nodes need a cluster of
their own::

    with private_galera() as cluster:
        urls = cluster.create_database("tokens")  # one URL per node
        cluster.execute(1, "SHOW STATUS LIKE 'wsrep_cluster_size'")

:func:`private_galera` makes one temporary directory per node, runs
``mariadb-install-db`` for the first node, bootstraps it as a new cluster, waits until
it is ``Synced``, then starts the other nodes with empty data directories, each once
the one before is in the group: each joins and receives a full copy (SST) from a donor
with ``rsync``, one at a time. It returns once every node is ``Synced`` in a cluster of
the expected size, within :data:`START_TIMEOUT` seconds in all (10 to 20 s on two
cores, most of it the two state transfers). Every node listens on 127.0.0.1 only, on
free ports of its own: the client port, Galera's group communication (gcomm), the SST
receiver and the incremental state transfer (IST) receiver. Root has an empty password
over TCP.

The servers are never configured from ``/etc/mysql`` (whose settings are the shared
server's): each node reads one option file of its own, written in its directory and
named with ``--defaults-file``, which makes ``mariadbd`` read no other. That is as
good as ``--no-defaults`` for the server, and better for the state transfer: Galera
passes the same ``--defaults-file`` to the SST script, whose ``my_print_defaults``
calls would otherwise read ``/etc/mysql/my.cnf`` (with the shared server's datadir).

As root, the servers run as the ``mysql`` OS user. On the way out, whether the test
passed or not, every node is stopped by its PID (``SIGTERM``, a bounded wait, then
``SIGKILL`` for it and everything it started) and the directories are removed.

Without ``mariadb-server``, ``galera-4`` or ``rsync`` the test skips, or fails under
CI. Linux only (``/proc``). Importing this module starts nothing.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from sqlalchemy import URL

from .private_servers import child_pids, os_account, read_log, run_tool, unavailable

if TYPE_CHECKING:
    import pymysql  # type: ignore[import-untyped]

MARIADBD = Path("/usr/sbin/mariadbd")
INSTALL_DB = Path("/usr/bin/mariadb-install-db")
PROVIDER = Path("/usr/lib/galera/libgalera_smm.so")
HOST = "127.0.0.1"
ROOT = "root"
ACCOUNT = "mysql"
START_TIMEOUT = 90.0  # the whole cluster, from the first install to the last Synced
STOP_TIMEOUT = 30.0  # one node's clean shutdown, before SIGKILL
POLL_SECONDS = 0.1

# Small and quick: a node lives for one test module. Commits are written to the OS at
# once and synced once a second; Galera has the other nodes' copies anyway.
_SERVER_SETTINGS: dict[str, str] = {
    "skip_name_resolve": "ON",
    "bind_address": HOST,
    "performance_schema": "OFF",
    "innodb_buffer_pool_size": "32M",
    "innodb_log_file_size": "8M",
    "innodb_log_buffer_size": "4M",
    "innodb_flush_log_at_trx_commit": "2",
    "innodb_doublewrite": "OFF",
    "max_connections": "300",
    # what Galera requires
    "binlog_format": "ROW",
    "default_storage_engine": "InnoDB",
    "innodb_autoinc_lock_mode": "2",
    "wsrep_on": "ON",
    "wsrep_sst_method": "rsync",
    "wsrep_slave_threads": "2",
}


class GaleraNode:
    """One node of a :class:`PrivateGalera` cluster, with its directory and ports.

    :ivar index: The node's place in the cluster, from 0.
    :ivar name: ``node1``, ``node2``, ... (Galera's ``wsrep_node_name``).
    :ivar directory: The node's temporary directory: data, option file, socket, log.
    :ivar port: The client port on 127.0.0.1.
    :ivar gcomm_port: Galera's group communication port.
    :ivar sst_port: Where the node receives a full state transfer (rsync).
    :ivar ist_port: Where the node receives an incremental state transfer.
    """

    def __init__(
        self,
        index: int,
        directory: Path,
        ports: Sequence[int],
        cluster_address: str,
        cluster_name: str,
        account: pwd.struct_passwd | None,
    ) -> None:
        """Describe a node; :meth:`write_options` and :meth:`start` make and start it.

        :param index: The node's place in the cluster, from 0.
        :param directory: An empty directory the node's account may write to.
        :param ports: Four free ports: client, gcomm, SST, IST.
        :param cluster_address: ``gcomm://`` with every node's gcomm address.
        :param cluster_name: The cluster's name, the same on every node.
        :param account: The OS account to run as, or ``None`` to run as ourselves.
        """
        self.index = index
        self.name = f"node{index + 1}"
        self.directory = directory
        self.port, self.gcomm_port, self.sst_port, self.ist_port = ports
        self.data_directory = directory / "data"
        self.options_path = directory / "my.cnf"
        self.log_path = directory / "server.log"
        self.socket_path = directory / "mysqld.sock"
        self._cluster_address = cluster_address
        self._cluster_name = cluster_name
        self._account = account
        self._process: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None

    @property
    def pid(self) -> int:
        """The PID of the ``mariadbd`` now running, or of the last one if it stopped.

        :raises RuntimeError: The node was never started.
        """
        if self._pid is None:
            raise RuntimeError(f"Galera {self.name} was never started")
        return self._pid

    @property
    def running(self) -> bool:
        """Whether the ``mariadbd`` this object started is still alive."""
        return self._process is not None and self._process.poll() is None

    def url_for(self, database: str) -> URL:
        """The URL of ``database`` on this node, as root (no password) over TCP.

        :param database: A database name.
        :returns: A ``mysql+pymysql`` URL.
        """
        return URL.create(
            "mysql+pymysql", username=ROOT, host=HOST, port=self.port, database=database
        )

    def log(self) -> str:
        """Everything the node (and its SST scripts) logged so far."""
        return read_log(self.log_path)

    def connect(self, database: str | None = None, **options: Any) -> pymysql.Connection[Any]:
        """A plain PyMySQL connection to the node as root, in autocommit mode.

        :param database: The database to use, if any.
        :param options: More ``pymysql.connect`` options.
        """
        import pymysql

        return pymysql.connect(
            host=HOST,
            port=self.port,
            user=ROOT,
            password="",
            database=database,
            autocommit=True,
            connect_timeout=5,
            **options,
        )

    def execute(
        self,
        sql: str,
        params: Sequence[Any] | Mapping[str, Any] | None = None,
        *,
        database: str | None = None,
    ) -> list[tuple[Any, ...]]:
        """Run one statement on a connection of its own, in autocommit mode.

        :param sql: The statement; placeholders as PyMySQL takes them (``%s``).
        :param params: Values for the placeholders.
        :param database: The database to use, if any.
        :returns: Its rows, or ``[]`` if it returns none.
        """
        with (
            contextlib.closing(self.connect(database)) as connection,
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, params)
            return list(cursor.fetchall()) if cursor.description else []

    def status(self) -> dict[str, str]:
        """The node's ``wsrep_%`` global status variables, by name."""
        rows = self.execute("SHOW GLOBAL STATUS LIKE 'wsrep\\_%%'")
        return {str(name): str(value) for name, value in rows}

    def write_options(self) -> None:
        """Write the node's option file, the only one its ``mariadbd`` reads."""
        gcomm = f"{HOST}:{self.gcomm_port}"
        provider_options = "; ".join(
            (
                f"base_host={HOST}",
                f"base_port={self.gcomm_port}",
                f"gmcast.listen_addr=tcp://{gcomm}",
                f"ist.recv_addr={HOST}:{self.ist_port}",
                "gcache.size=32M",
                "gcache.page_size=32M",
                "pc.recovery=FALSE",
            )
        )
        settings = {
            "datadir": str(self.data_directory),
            "port": str(self.port),
            "socket": str(self.socket_path),
            "pid_file": str(self.directory / "mysqld.pid"),
            "tmpdir": str(self.directory),
            **_SERVER_SETTINGS,
            "wsrep_provider": str(PROVIDER),
            "wsrep_provider_options": f'"{provider_options}"',
            "wsrep_cluster_name": self._cluster_name,
            "wsrep_cluster_address": self._cluster_address,
            "wsrep_node_name": self.name,
            "wsrep_node_address": gcomm,
            "wsrep_node_incoming_address": f"{HOST}:{self.port}",
            "wsrep_sst_receive_address": f"{HOST}:{self.sst_port}",
        }
        lines = ["[mysqld]", *(f"{name} = {value}" for name, value in settings.items())]
        self.options_path.write_text("\n".join(lines) + "\n")
        self.data_directory.mkdir(exist_ok=True)
        if self._account is not None:
            for path in (self.options_path, self.data_directory):
                os.chown(path, self._account.pw_uid, self._account.pw_gid)

    def install(self, timeout: float = 60.0) -> None:
        """Make the system tables in the data directory (``mariadb-install-db``).

        :param timeout: Seconds it may take.
        :raises RuntimeError: It failed; the message holds its output.
        """
        command = [
            str(INSTALL_DB),
            "--no-defaults",  # not /etc/mysql: the shared server's settings
            f"--datadir={self.data_directory}",
            "--auth-root-authentication-method=normal",  # root@127.0.0.1, no password
            "--skip-name-resolve",
            "--skip-test-db",
            f"--innodb-log-file-size={_SERVER_SETTINGS['innodb_log_file_size']}",
            f"--innodb-buffer-pool-size={_SERVER_SETTINGS['innodb_buffer_pool_size']}",
        ]
        if self._account is not None:
            command.append(f"--user={self._account.pw_name}")
        run_tool(command, timeout=timeout, cwd=self.directory)

    def start(self, *, new_cluster: bool = False) -> None:
        """Start ``mariadbd``; :meth:`wait_until_synced` waits for it to join.

        :param new_cluster: Bootstrap a new cluster (the first node) rather than join.
        :raises RuntimeError: The node is already running.
        """
        if self.running:
            raise RuntimeError(f"Galera {self.name} (PID {self.pid}) is running")
        command = [str(MARIADBD), f"--defaults-file={self.options_path}"]
        if new_cluster:
            command.append("--wsrep-new-cluster")
        options: dict[str, Any] = {"cwd": self.directory, "env": _environment()}
        if self._account is not None:
            options.update(user=self._account.pw_uid, group=self._account.pw_gid, extra_groups=[])
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # its own session: a Ctrl-C meant for pytest reaches the harness, not it
                start_new_session=True,
                **options,
            )
        self._pid = self._process.pid

    def synced(self) -> dict[str, str] | None:
        """The node's ``wsrep_%`` status if it takes clients and is ``Synced``, else ``None``.

        :raises RuntimeError: The node's ``mariadbd`` has exited.
        """
        process = self._process
        if process is None or process.poll() is not None:
            code = None if process is None else process.returncode
            raise RuntimeError(
                f"Galera {self.name} is not running (exit status {code}):\n{self.log()[-4000:]}"
            )
        import pymysql

        try:
            found = self.status()
        except pymysql.Error:
            return None
        if found.get("wsrep_ready") != "ON" or found.get("wsrep_local_state_comment") != "Synced":
            return None
        return found

    def wait_until_synced(self, deadline: float, cluster_size: int) -> None:
        """Wait until the node is ``Synced`` in a primary component of ``cluster_size``.

        :param deadline: A :func:`time.monotonic` time to give up at.
        :param cluster_size: The number of nodes it must see.
        :raises RuntimeError: The node exited, or was not there by ``deadline``.
        """
        while True:
            found = self.synced()
            if (
                found is not None
                and found.get("wsrep_cluster_status") == "Primary"
                and found.get("wsrep_cluster_size") == str(cluster_size)
            ):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Galera {self.name} was not Synced in a cluster of {cluster_size} in "
                    f"time (status {found}):\n{self.log()[-4000:]}"
                )
            time.sleep(POLL_SECONDS)

    def wait_for_cluster_size(self, deadline: float, cluster_size: int) -> None:
        """Wait until the node sees at least ``cluster_size`` nodes in its group.

        :param deadline: A :func:`time.monotonic` time to give up at.
        :param cluster_size: The number of nodes it must see, joined or still joining.
        :raises RuntimeError: The node exited, or did not see them by ``deadline``.
        """
        while True:
            found = self.synced()
            size = None if found is None else found.get("wsrep_cluster_size", "")
            if size is not None and size.isdigit() and int(size) >= cluster_size:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Galera {self.name} did not see {cluster_size} nodes in time "
                    f"(status {found}):\n{self.log()[-4000:]}"
                )
            time.sleep(POLL_SECONDS)

    def terminate(self) -> None:
        """Ask the node to shut down (``SIGTERM``) if it runs; :meth:`shut_down` waits."""
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                self._process.send_signal(signal.SIGTERM)

    def shut_down(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the node if it runs: ``SIGTERM``, then after ``timeout`` ``SIGKILL``.

        The node leaves the cluster cleanly; the others go on without it.
        """
        self.terminate()
        process, self._process = self._process, None
        if process is not None:
            _halt(process, timeout)


class PrivateGalera:
    """A Galera cluster of one test module's own, made by :func:`private_galera`.

    :ivar nodes: The nodes, in the order they joined: ``nodes[0]`` bootstrapped it.
    :ivar directory: The temporary directory holding every node's directory.
    :ivar started_in: Seconds it took from the first install to every node ``Synced``.
    """

    def __init__(self, directory: Path, nodes: Sequence[GaleraNode]) -> None:
        """Wrap nodes that :func:`private_galera` starts."""
        self.directory = directory
        self.nodes = list(nodes)
        self.started_in = 0.0

    def execute(
        self,
        node_index: int,
        sql: str,
        params: Sequence[Any] | Mapping[str, Any] | None = None,
        *,
        database: str | None = None,
    ) -> list[tuple[Any, ...]]:
        """Run one statement on node ``node_index`` (from 0); see :meth:`GaleraNode.execute`."""
        return self.nodes[node_index].execute(sql, params, database=database)

    def create_database(self, name: str) -> list[URL]:
        """Create an empty utf8mb4 database (binary collation) and wait until every node has it.

        The ``CREATE DATABASE`` runs on the first node; the others apply it a moment
        later, and a client that names the database when it connects would not find it
        before then.

        :param name: Its name.
        :returns: Its URL on each node, in node order.
        """
        self.execute(0, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        for node in self.nodes:
            with contextlib.closing(node.connect()) as connection, connection.cursor() as cursor:
                cursor.execute("SET SESSION wsrep_sync_wait = 1")  # catch up first
                cursor.execute(
                    "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
                    (name,),
                )
                row = cursor.fetchone()
                if row is None or row[0] != 1:
                    raise RuntimeError(f"database {name!r} did not reach {node.name}")
        return [node.url_for(name) for node in self.nodes]

    def status(self, name: str) -> list[str]:
        """One ``wsrep_%`` status variable as each node reports it, in node order."""
        return [node.status().get(name, "") for node in self.nodes]

    def wait_until_synced(self, timeout: float = 30.0) -> None:
        """Wait until every node is ``Synced`` in a cluster of all of them."""
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            node.wait_until_synced(deadline, len(self.nodes))

    def shut_down(self) -> None:
        """Stop every node that runs, all at once (quicker than one by one), each by its PID."""
        for node in self.nodes:
            node.terminate()
        for node in self.nodes:
            node.shut_down()


def _unavailable(reason: str) -> NoReturn:
    unavailable("a private Galera cluster", reason)


def _require_binaries() -> None:
    """Skip (or fail under CI) unless MariaDB's server, Galera and rsync are installed."""
    missing: list[str] = []
    if not (os.access(MARIADBD, os.X_OK) and os.access(INSTALL_DB, os.X_OK)):
        missing.append("mariadb-server")
    if not PROVIDER.is_file():
        missing.append("galera-4")
    if shutil.which("rsync") is None:
        missing.append("rsync")
    if missing:
        _unavailable(
            f"a private Galera cluster needs {MARIADBD}, {PROVIDER} and rsync: "
            f"install the {', '.join(missing)} package(s)"
        )


def _free_ports(count: int) -> list[int]:
    """``count`` different TCP ports of 127.0.0.1 that nothing listens on at the moment."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind((HOST, 0))
        return [int(probe.getsockname()[1]) for probe in probes]


def _environment() -> dict[str, str]:
    """The nodes' environment: ours without MySQL client variables, in the C locale."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("MYSQL", "MARIADB"))
    }
    environment["LC_ALL"] = "C"
    return environment


def _descendants(pid: int) -> list[tuple[int, int]]:
    """Every process below ``pid`` as (PID, parent PID), children first, from ``/proc``."""
    found: list[tuple[int, int]] = []
    level = [pid]
    while level:
        pairs = [(child, parent) for parent in level for child in child_pids(parent)]
        found.extend(pairs)
        level = [child for child, _ in pairs]
    return found


def _kill(processes: Sequence[tuple[int, int]]) -> None:
    """``SIGKILL`` each (PID, parent PID) through a pidfd, if it is still that parent's.

    Checking the parent after opening the pidfd makes sure the signal reaches that
    process, not one that took its PID after it ended.
    """
    for pid, parent in processes:
        try:
            handle = os.pidfd_open(pid)
        except OSError:  # gone (ProcessLookupError) or not ours to open
            continue
        try:
            if pid in child_pids(parent):
                signal.pidfd_send_signal(handle, signal.SIGKILL)
        except ProcessLookupError:
            pass
        finally:
            os.close(handle)


def _halt(process: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait up to ``timeout`` for a signalled node to exit; then kill it and its helpers.

    A node's helpers (the SST script, an rsync daemon) are killed first, while they are
    still its descendants, then the node itself; it is always reaped.
    """
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGCONT)  # a stopped process cannot die of SIGTERM
        _kill(_descendants(process.pid))
        process.kill()
        process.wait()


@contextlib.contextmanager
def private_galera(nodes: int = 3, timeout: float = START_TIMEOUT) -> Iterator[PrivateGalera]:
    """Make and start a MariaDB Galera cluster of the test's own; stop and remove it after.

    :param nodes: How many nodes, all on 127.0.0.1.
    :param timeout: Seconds for the whole cluster to be up, every node ``Synced``.
    :returns: A context manager yielding the running :class:`PrivateGalera`.
    :raises RuntimeError: A node did not come up; the message holds the end of its log.
    :raises pytest.skip.Exception: A package is missing (``pytest.fail`` under CI).
    """
    if nodes < 1:
        raise ValueError("a cluster has at least one node")
    _require_binaries()
    account = os_account(ACCOUNT, "a private Galera cluster", "MariaDB", "mariadb-server")
    began = time.monotonic()
    deadline = began + timeout
    directory = Path(tempfile.mkdtemp(prefix="tokenstore-galera-"))
    cluster: PrivateGalera | None = None
    try:
        ports = _free_ports(4 * nodes)
        groups = [ports[4 * n : 4 * n + 4] for n in range(nodes)]
        cluster_address = "gcomm://" + ",".join(f"{HOST}:{group[1]}" for group in groups)
        cluster_name = f"tokenstore-test-{secrets.token_hex(4)}"
        members: list[GaleraNode] = []
        for index, group in enumerate(groups):
            node_directory = directory / f"node{index + 1}"
            node_directory.mkdir()
            if account is not None:
                os.chown(node_directory, account.pw_uid, account.pw_gid)
            node = GaleraNode(index, node_directory, group, cluster_address, cluster_name, account)
            node.write_options()
            members.append(node)
        if account is not None:
            os.chown(directory, account.pw_uid, account.pw_gid)
        cluster = PrivateGalera(directory, members)
        first, others = members[0], members[1:]
        first.install(timeout=deadline - time.monotonic())
        first.start(new_cluster=True)
        first.wait_until_synced(deadline, 1)
        # Empty data directories: each joiner gets a full copy (SST) from a Synced donor,
        # one at a time. A joiner is started once the one before is in the group: two
        # joining at the same moment take seconds longer to agree on the group.
        for size, node in enumerate(others, start=2):
            node.start()
            first.wait_for_cluster_size(deadline, size)
        for node in members:
            node.wait_until_synced(deadline, nodes)
        cluster.started_in = time.monotonic() - began
        yield cluster
    finally:
        try:
            if cluster is not None:
                cluster.shut_down()
        finally:
            shutil.rmtree(directory, ignore_errors=True)

"""Fault injection for the reliability tests: killed sessions and a server that goes away.

- :func:`kill_sessions` ends every session on one database from an admin connection, as
  a DBA, a failover or an idle timeout would (``pg_terminate_backend``, MySQL ``KILL``).
- :class:`TcpProxy` stands between an engine and its server; stopping it drops every
  connection and refuses new ones, as a server restart or an outage does, without
  touching the real server that concurrent test runs share.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import URL, make_url, text

from tokenstore_sql import create_engine


def kill_sessions(admin_url: str | URL, database: str) -> int:
    """End every session connected to ``database`` except the admin's own; return how many."""
    admin = create_engine(make_url(admin_url), isolation_level="AUTOCOMMIT", pool_pre_ping=False)
    try:
        with admin.connect() as connection:
            if admin.dialect.name == "postgresql":
                return len(
                    connection.execute(
                        text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = :db AND pid <> pg_backend_pid()"
                        ),
                        {"db": database},
                    ).all()
                )
            ids = connection.execute(
                text(
                    "SELECT id FROM information_schema.processlist "
                    "WHERE db = :db AND id <> CONNECTION_ID()"
                ),
                {"db": database},
            ).scalars()
            killed = 0
            for session in list(ids):
                with contextlib.suppress(Exception):  # it may have ended meanwhile
                    connection.execute(text(f"KILL {int(session)}"))
                    killed += 1
            return killed
    finally:
        admin.dispose()


def session_id(dbapi_connection: Any) -> int:
    """The server's id of a driver connection (PostgreSQL backend pid, MySQL thread id)."""
    info = getattr(dbapi_connection, "info", None)
    if info is not None and hasattr(info, "backend_pid"):  # psycopg
        return int(info.backend_pid)
    return int(dbapi_connection.thread_id())  # PyMySQL


def kill_session(admin_url: str | URL, session: int) -> None:
    """End one server session from an admin connection, waiting until it has ended."""
    admin = create_engine(make_url(admin_url), isolation_level="AUTOCOMMIT", pool_pre_ping=False)
    try:
        with admin.connect() as connection:
            if admin.dialect.name == "postgresql":
                # pg_terminate_backend only signals; the timeout makes it wait for the exit
                connection.execute(
                    text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": session}
                )
            else:
                connection.execute(text(f"KILL {int(session)}"))
    finally:
        admin.dispose()


class TcpProxy:
    """A TCP forwarder on 127.0.0.1 that can drop everything and refuse, then come back."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port: int = probe.getsockname()[1]
        probe.close()
        self.start()

    def url_for(self, url: URL) -> URL:
        """The same database URL, routed through this proxy."""
        return url.set(host="127.0.0.1", port=self.port)

    def start(self) -> None:
        """Accept connections again (on the same port)."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        """Refuse new connections and cut every open one, as a dead server does."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):  # wakes the thread blocked in accept()
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            doomed, self._sockets = self._sockets, set()
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    @contextlib.contextmanager
    def outage(self, seconds: float) -> Iterator[None]:
        """Go down now and come back ``seconds`` later, in the background."""
        self.stop()
        timer = threading.Timer(seconds, self.start)
        timer.start()
        try:
            yield
        finally:
            timer.join()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed by stop()
                return
            try:
                server = socket.create_connection(self._upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # stopped meanwhile
                    client.close()
                    server.close()
                    return
                self._sockets |= {client, server}
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        with self._lock:
            self._sockets -= {source, target}
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    @contextlib.contextmanager
    def black_hole(self) -> Iterator[None]:
        """Cut every connection, then take new ones but never answer, as a hung host does."""
        self.stop()
        silent = socket.socket()
        silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        silent.bind(("127.0.0.1", self.port))
        silent.listen(64)  # the kernel completes handshakes; nobody ever reads
        try:
            yield
        finally:
            silent.close()


def wait_until(check: Any, timeout: float, interval: float = 0.2) -> bool:
    """Poll ``check()`` until it is true or ``timeout`` seconds pass."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(Exception):
            if check():
                return True
        time.sleep(interval)
    return False

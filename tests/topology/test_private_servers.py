"""The harness of tests/support/private_servers.py: a server of the test's own, and nothing left.

None of these tests touches the shared servers; they need only PostgreSQL 15's binaries.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError

from tests.support import private_servers
from tests.support.private_servers import PrivatePostgres, child_pids, private_postgresql
from tokenstore_sql import create_engine

pytestmark = [pytest.mark.postgresql, pytest.mark.topology]

Identity = tuple[int, int]  # (PID, start time): a PID taken by a later process differs


def _identity(pid: int) -> Identity | None:
    """The process ``pid`` as it exists now (zombies too), or ``None`` if there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # from the third field, "state"
    return pid, int(fields[19])  # the 22nd field: start time


def _server_processes(server: PrivatePostgres) -> set[Identity]:
    """The postmaster and its children, as they are now."""
    found = {_identity(pid) for pid in (server.pid, *child_pids(server.pid))}
    return {identity for identity in found if identity is not None}


def _still_there(processes: set[Identity]) -> set[Identity]:
    return {identity for identity in processes if _identity(identity[0]) == identity}


def _mentioning(directory: Path) -> list[int]:
    """The processes whose command line names ``directory`` (a postmaster's ``-D``)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if os.fsencode(directory) in command:
            found.append(int(entry.name))
    return found


def test_a_private_server_takes_connections_on_a_port_of_its_own() -> None:
    with private_postgresql() as server:
        assert server.port not in (5432, 3306)
        assert server.admin_url == f"postgresql+psycopg://postgres@127.0.0.1:{server.port}/postgres"
        engine = create_engine(server.admin_url)
        try:
            with engine.connect() as connection:
                shown = connection.execute(
                    text(
                        "SELECT current_setting('server_version_num')::int / 10000,"
                        " inet_server_port(), current_setting('listen_addresses'),"
                        " current_setting('data_directory'), current_setting('fsync')"
                    )
                ).one()
        finally:
            engine.dispose()
        assert tuple(shown) == (15, server.port, "127.0.0.1", str(server.data_directory), "off")
        recorded = (server.data_directory / "postmaster.pid").read_text().split("\n")[0]
        assert int(recorded) == server.pid
        assert (server.directory / f".s.PGSQL.{server.port}").is_socket()


def test_server_and_role_settings_are_in_effect() -> None:
    with private_postgresql(statement_timeout="750ms", log_connections=True) as server:
        assert server.execute(
            "SELECT setting, source FROM pg_settings WHERE name = 'statement_timeout'"
        ) == [("750", "command line")]
        assert server.execute("SHOW log_connections") == [("on",)]
        server.execute("CREATE ROLE app LOGIN; ALTER ROLE app SET statement_timeout = '300ms'")
        assert server.execute("SHOW statement_timeout", user="app") == [("300ms",)]

        engine = create_engine(server.url_for("postgres", user="app"))
        try:
            with engine.connect() as connection, pytest.raises(DBAPIError) as caught:
                connection.execute(text("SELECT pg_sleep(2)"))
        finally:
            engine.dispose()
        assert "statement timeout" in str(caught.value)


def test_the_harness_keeps_where_the_server_listens_to_itself() -> None:
    with pytest.raises(ValueError, match="port"), private_postgresql(port=5432):
        pytest.fail("started a server on the shared port")


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_stop_and_start_keep_the_data_and_the_port(mode: private_servers.StopMode) -> None:
    with private_postgresql() as server:
        url = server.create_database("kept")
        server.execute("CREATE TABLE t (x int); INSERT INTO t VALUES (42)", database="kept")
        port, before = server.port, _server_processes(server)

        server.stop(mode)
        running_after_stop = server.running
        assert not running_after_stop
        assert _still_there(before) == set()
        engine = create_engine(url)
        try:
            with pytest.raises(OperationalError):
                engine.connect().close()

            server.start()
            assert server.running
            assert server.port == port
            assert server.pid not in {pid for pid, _ in before}
            with engine.connect() as connection:
                assert connection.execute(text("SELECT x FROM t")).scalars().all() == [42]
        finally:
            engine.dispose()


class _TestFailed(Exception):
    pass


@pytest.mark.parametrize("outcome", ["passed", "failed"])
def test_nothing_is_left_running_after_the_block(outcome: str) -> None:
    expected = pytest.raises(_TestFailed) if outcome == "failed" else contextlib.nullcontext()
    with expected, private_postgresql() as server:
        directory = server.directory
        engine = create_engine(server.admin_url)
        connection = engine.connect()  # a client still connected at the end
        connection.execute(text("SELECT 1"))
        processes = _server_processes(server)
        assert len(processes) > 3  # the postmaster, its helpers, our backend
        if outcome == "failed":
            raise _TestFailed

    assert _still_there(processes) == set()
    assert _mentioning(directory) == []
    assert not directory.exists()
    connection.invalidate()
    engine.dispose()


def test_a_postmaster_that_does_not_stop_is_killed_with_its_children() -> None:
    with private_postgresql() as server:
        processes = _server_processes(server)
        os.kill(server.pid, signal.SIGSTOP)  # deaf to every shutdown request
        started = time.monotonic()

        server.stop("smart", timeout=0.5)

        assert time.monotonic() - started < 10
        assert not server.running
        assert _still_there(processes) == set()


def test_missing_binaries_skip_naming_the_package_but_fail_under_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(private_servers, "BINDIR", tmp_path)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="postgresql-15"), private_postgresql():
        raise AssertionError("started without binaries")

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="postgresql-15"), private_postgresql():
        raise AssertionError("started without binaries")

"""One storage call on a PyMySQL connection: the statement and its ending in one round trip.

tokenstore-sql's engines lend PyMySQL connections in autocommit mode, where a statement
commits itself (see :mod:`tokenstore_sql.transactions`). A caller's own engine
(``sqlalchemy.create_engine``) lends them in transaction mode: there every statement, a
``SELECT`` too, opens a transaction that must end before the connection goes back, or
the next read on it sees the old REPEATABLE READ snapshot. Ended as usual, that costs a
round trip of its own, and the pool's reset-on-return ``ROLLBACK`` another: a get on
such an engine waited twice where one on ours waits once, a store three times.

MariaDB does not flag a transaction that has only read (``SERVER_STATUS_IN_TRANS``
stays clear after a ``SELECT``), so the driver's status cannot tell when the ending may
be skipped; and ``SET autocommit`` for the call and back costs two round trips. So the
ending (``COMMIT`` after a write, ``ROLLBACK`` after a read) is written to the socket
together with the statement, and its answer read after the statement's: the server runs
the two in turn, and the client waits once. The connection then goes back with no
transaction open, and the pool is told so (:func:`tokenstore_sql.direct._check_in`).
What is left is the server's work on the second command: on loopback a call takes about
1.1x its time on our engines; with 0.25 ms of network latency each way, 1.03x (before:
1.74x for a get, 2.32x for a store). See ``benchmarks/caller_engine.py``.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from functools import cache
from typing import Any, Final, TypeVar

from sqlalchemy import Dialect
from sqlalchemy.pool import PoolProxiedConnection

from .direct_drivers import Lent, Params

T = TypeVar("T")

# MySQL protocol constants: the server status flag of an open transaction, the
# COM_QUERY command, and the length field of a packet that more packets continue.
_IN_TRANS: Final = 0x0001
_COM_QUERY: Final = 3
_FULL_PACKET: Final = b"\xff\xff\xff"


def _command(sql: bytes) -> bytes:
    # A command packet: 3-byte length, sequence number 0, command byte, then the text.
    return struct.pack("<iB", len(sql) + 1, _COM_QUERY) + sql


_COMMIT: Final = _command(b"COMMIT")
_ROLLBACK: Final = _command(b"ROLLBACK")


class PyMySQL(Lent):
    """One call on a PyMySQL connection, in autocommit mode or not."""

    def __init__(self, connection: PoolProxiedConnection, dialect: Dialect) -> None:
        super().__init__(connection, dialect)
        self.autocommit = bool(self.driver.get_autocommit())
        # Lent inside a transaction (by a pool that does not reset): run in it, as any
        # other driver does; a write commits it, a read leaves it to the pool.
        self.lent_in_transaction = self._in_transaction()
        self.ended = self.autocommit  # in autocommit mode a statement ends itself

    def _in_transaction(self) -> bool:
        return bool(self.driver.server_status & _IN_TRANS)

    def _pipelines(self) -> bool:
        return not (self.autocommit or self.lent_in_transaction) and _pipelining()

    def fetch(self, sql: str, params: Params) -> list[Sequence[Any]]:
        """Run a query; out of autocommit mode, its ``ROLLBACK`` travels with it."""
        if not self._pipelines():
            return super().fetch(sql, params)
        return self._run_and_end(_ROLLBACK, lambda: Lent.fetch(self, sql, params))

    def write(self, sql: str, batch: Sequence[Any]) -> int:
        """Run a write and commit; out of autocommit mode, the ``COMMIT`` travels with it."""
        if not self._pipelines() or not self._one_statement(sql, batch):
            return super().write(sql, batch)
        return self._run_and_end(_COMMIT, lambda: self._write_uncommitted(sql, batch))

    def commit(self) -> None:
        """Commit, unless in autocommit mode with no transaction open (no round trip then)."""
        if not self.autocommit or self._in_transaction():
            self.driver.commit()
        self.ended = True

    def finish(self) -> bool:
        """Tell whether the call's transaction was ended and none is open."""
        return self.ended and not self._in_transaction()

    def rollback(self) -> None:
        """Roll back, unless in autocommit mode with no transaction open."""
        if not self.autocommit or self._in_transaction():
            self.driver.rollback()
            self.ended = True

    def _one_statement(self, sql: str, batch: Sequence[Any]) -> bool:
        """Tell whether PyMySQL will send ``batch`` as one statement, which a COMMIT may follow.

        ``executemany`` sends an ``INSERT ... VALUES`` as one multi-row statement unless
        it would pass the cursor's ``max_stmt_length`` (1 MB), and anything else once per
        row. Here the statement's length is bounded from above by the values' sizes.
        """
        if len(batch) == 1:
            return True
        pattern = _insert_values()
        if pattern is None or not pattern.match(sql):
            return False
        limit = getattr(self.driver.cursorclass, "max_stmt_length", 0)
        size = len(batch) * (len(sql.encode()) + 1)
        for params in batch:
            for value in params.values() if isinstance(params, dict) else params:
                bound = _literal_bound(value)
                if bound is None:
                    return False
                size += bound
        return size < limit

    def _run_and_end(self, ending: bytes, run: Callable[[], T]) -> T:
        """Run ``run``'s one statement with ``ending`` sent in the same socket write.

        PyMySQL internals, used nowhere else: the connection's ``_write_bytes`` (replaced
        on the instance for the statement's one write), then ``_next_seq_id`` and
        ``_read_ok_packet`` to read the ending's answer as ``Connection.commit`` does.
        The server runs the two commands in turn; an ending after a failed statement
        still runs (a failed MySQL statement has changed nothing), and its answer is read
        before the statement's error is raised, so the connection stays in step.
        """
        driver = self.driver
        hook = driver.__dict__.get("_write_bytes")  # someone else's (a test's): kept
        send = driver._write_bytes
        sent = False

        def send_with_ending(data: bytes) -> None:
            nonlocal sent
            _unhook(driver, send_with_ending, hook)
            if data[:3] == _FULL_PACKET:  # a statement of 16 MiB or more: more follows
                send(data)
            else:
                send(data + ending)
                sent = True

        driver._write_bytes = send_with_ending
        try:
            result = run()
        except BaseException as exc:
            _unhook(driver, send_with_ending, hook)
            if sent:
                if not isinstance(exc, Exception):  # interrupted: the pool replaces it
                    self.usable = False
                else:
                    try:
                        self._read_ending()
                    except Exception:  # out of step with the server: replaced
                        self.usable = False
            raise
        _unhook(driver, send_with_ending, hook)
        if sent:
            self._read_ending()  # a COMMIT that fails (a Galera conflict) fails the call
        elif ending is _COMMIT:
            driver.commit()
        else:
            driver.rollback()
        self.ended = True
        return result

    def _read_ending(self) -> None:
        self.driver._next_seq_id = 1  # the answer to a new command starts at 1
        self.driver._read_ok_packet()


def _literal_bound(value: object) -> int | None:
    """Bound the bytes PyMySQL's literal for ``value`` takes (None: a type not known here)."""
    if value is None or isinstance(value, (int, float, Decimal)):
        return len(str(value)) + 4  # NULL; a float gains "e0"
    if isinstance(value, str):  # quoted; an escaped character is two ASCII bytes
        return 4 * len(value) + 2
    if isinstance(value, (bytes, bytearray)):  # _binary'...'
        return 2 * len(value) + 9
    if isinstance(value, (datetime, date, time)):
        return 32
    return None


def _unhook(driver: Any, mine: object, hook: object) -> None:
    if driver.__dict__.get("_write_bytes") is mine:
        if hook is None:
            del driver._write_bytes
        else:
            driver._write_bytes = hook


# What the pipelined ending needs from PyMySQL's Connection: _execute_command sends a
# statement's first packet with one call of _write_bytes; _read_ok_packet reads an answer
# (after _next_seq_id, an attribute, is set). tests/backends/test_storage.py checks them.
PYMYSQL_INTERNALS: Final = ("_write_bytes", "_read_ok_packet", "_execute_command")


@cache
def _pipelining() -> bool:
    """Tell whether the installed PyMySQL has what :meth:`PyMySQL._run_and_end` uses.

    Without it (a release that renamed them) the ending is a round trip of its own.
    """
    from pymysql.connections import Connection  # type: ignore[import-untyped]

    return all(callable(getattr(Connection, name, None)) for name in PYMYSQL_INTERNALS)


@cache
def _insert_values() -> re.Pattern[str] | None:
    """PyMySQL's pattern of the statements ``executemany`` sends as one (None: not found)."""
    from pymysql import cursors  # type: ignore[import-untyped]

    pattern = getattr(cursors, "RE_INSERT_VALUES", None)
    return pattern if isinstance(pattern, re.Pattern) else None

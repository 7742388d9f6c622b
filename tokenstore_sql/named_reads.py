"""PostgreSQL reads prepared under names of their own: plans reused, and PgBouncer-safe.

Sent unprepared, a ``SELECT`` by key costs PostgreSQL a parse and a plan every time: on
a get, as much as the rest of the round trip. psycopg's prepared statements save that,
but under names numbered per client connection (``_pg3_0``, ``_pg3_1``): behind
PgBouncer's transaction pooling a client's statements run on whichever server session
is free, where ``_pg3_0`` may be another client's statement, run with this client's
parameters (wrong rows, not an error). So tokenstore-sql's engines never let psycopg
prepare.

The storages' reads are prepared with SQL's own ``PREPARE`` instead, under a name made
from the statement's whole text (``tokenstore_sql_`` and 24 hex digits of its SHA-256),
and run as ``EXECUTE name('literal', ...)``: a server session that has a statement of
that name has this very statement, whichever client prepared it there. The name needs
nothing but the text: PostgreSQL parses a prepared statement again when the
``search_path`` or a table it reads has changed since its last use.

Each pooled connection remembers the names it prepared (in its ``info``, which a
reconnect clears). What the server answers decides the next message of the same call:

- 26000, no such statement (PgBouncer gave the client another server session, a
  ``DISCARD ALL``, a restart behind the pooler): ``PREPARE`` and ``EXECUTE`` together,
  one message, so one implicit transaction on one server session;
- 42P05, already prepared (by another client, on that session): ``EXECUTE`` alone;
- 0A000, its result columns changed type (a migration altered the table):
  ``DEALLOCATE``, ``PREPARE`` and ``EXECUTE`` together.

After :data:`ATTEMPTS` such answers in one call, the read is sent unprepared, as is a
read that would make a connection hold more than :data:`MOST_NAMES` statements (batched
gets have one per batch size). Each of those three answers is an ``ERROR`` line in the
server's log, with the statement and its keys: none where clients reach PostgreSQL
directly, about two per server session and statement behind a pooler.

Only reads whose parameters are all text go this way (namespaces and resource servers,
never a token: a statement's text is what the server logs). libpq quotes each value
(``PQescapeLiteral``) for the connection's encoding.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from psycopg.pq.abc import Escaping

# Where a pooled connection keeps the names of the reads it prepared.
PREPARED_INFO: Final = "tokenstore_sql_prepared_reads"
ATTEMPTS: Final = 4  # messages in one call before the read is sent unprepared
# Names one connection prepares at most: batched gets have a statement per batch size.
MOST_NAMES: Final = 32
NAME_PREFIX: Final = "tokenstore_sql_"

_PLACEHOLDER: Final = re.compile(r"%\((\w+)\)s")
_MISSING, _DUPLICATE, _CHANGED = "26000", "42P05", "0A000"


@dataclass(frozen=True)
class NamedRead:
    """A ``SELECT`` in psycopg's ``%(name)s`` style, as a statement prepared by name."""

    name: bytes
    prepare: bytes  # PREPARE name AS the statement with $1, $2 ...
    order: tuple[str, ...]  # the parameters' names, in $n order

    def execute(self, escaping: Escaping, encoding: str, params: Mapping[str, Any]) -> bytes | None:
        """Give the ``EXECUTE`` of these parameters, or None unless each is text in ``encoding``."""
        literals = []
        for key in self.order:
            value = params[key]
            if type(value) is not str:
                return None
            try:
                encoded = value.encode(encoding)
            except UnicodeEncodeError:  # a client encoding such as SQL_ASCII: sent as a parameter
                return None
            literals.append(escaping.escape_literal(encoded))
        return b"EXECUTE " + self.name + b"(" + b", ".join(literals) + b")"


@lru_cache(maxsize=256)
def named_read(sql: str) -> NamedRead | None:
    """Give ``sql`` as a statement prepared by name (None: not a ``SELECT`` to prepare)."""
    if not sql.startswith("SELECT "):
        return None
    numbers: dict[str, int] = {}  # parameter name -> $n, in order of first use

    def numbered(match: re.Match[str]) -> str:
        return f"${numbers.setdefault(match.group(1), len(numbers) + 1)}"

    text = _PLACEHOLDER.sub(numbered, sql)
    if "%" in text or not numbers:  # a literal % (written %%), or nothing to bind
        return None
    name = NAME_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:24]
    return NamedRead(name.encode(), f"PREPARE {name} AS {text}".encode(), tuple(numbers))


class Exchange:
    """One call's messages for a named read: what to send next, after what was answered.

    I/O-free, so that the sync and the async driver follow the same steps: send
    :meth:`message` (with ``prepare=False``) until it gives None (then send the statement
    unprepared); give an error it raised to :meth:`answered`, and raise it unless that
    says another message may mend it; give the cursor of a message that ran to
    :meth:`received`, and fetch the rows from it.
    """

    def __init__(self, read: NamedRead, execute: bytes, prepared: set[bytes]) -> None:
        self.read, self.execute_message, self.prepared = read, execute, prepared
        self.attempts = 0
        self.stale = False
        self.leading = 0  # statements in the message before the EXECUTE

    def message(self) -> bytes | None:
        """Give the next message to send, or None: send the statement unprepared."""
        if self.attempts >= ATTEMPTS:
            return None
        self.attempts += 1
        read = self.read
        if read.name in self.prepared:
            self.leading = 0
            return self.execute_message
        if self.stale:
            self.leading = 2
            return b"DEALLOCATE " + read.name + b"; " + read.prepare + b"; " + self.execute_message
        self.leading = 1
        return read.prepare + b"; " + self.execute_message

    def answered(self, exc: Exception) -> bool:
        """Take an error the last message raised; tell whether another message may mend it."""
        code = getattr(exc, "sqlstate", None)
        name = self.read.name
        if code == _MISSING:
            self.prepared.discard(name)
            self.stale = False
        elif code == _DUPLICATE:
            self.prepared.add(name)
        elif code == _CHANGED:
            self.prepared.discard(name)
            self.stale = True
        else:
            return False
        return True

    def received(self, cursor: Any) -> Any:
        """Note that the last message ran; give its cursor at the ``EXECUTE``'s rows."""
        self.prepared.add(self.read.name)
        for _ in range(self.leading):
            cursor.nextset()
        return cursor


def exchange_for(sql: str, params: Any, connection: Any, info: dict[Any, Any]) -> Exchange | None:
    """Give the exchange of one read on a psycopg connection, or None: send it unprepared.

    :param params: the read's parameters, by name
    :param info: the pooled connection's ``info``, which keeps the names it prepared
    """
    read = named_read(sql)
    if read is None or not isinstance(params, dict):
        return None
    prepared: set[bytes] = info.setdefault(PREPARED_INFO, set())
    if len(prepared) >= MOST_NAMES and read.name not in prepared:
        return None
    from psycopg.pq import Escaping  # psycopg is a driver: installed with its extra

    execute = read.execute(Escaping(connection.pgconn), connection.info.encoding, params)
    if execute is None:
        return None
    return Exchange(read, execute, prepared)

"""What the import and export tests share: names, readers of the token table, a database.

Imports without keys are refused where the token table holds encrypted tokens, which
other modules' tests leave in the run's shared scratch database; so a module that
imports uses a scratch database of its own, by assigning these fixtures::

    module_database = transfer.module_database
    database_url = transfer.database_url
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import URL, Engine, inspect, make_url, select

from tokenstore_sql import SQLAlchemyTokenStorage
from tokenstore_sql.crypto import KeyRing
from tokenstore_sql.models import TokenRow

from .databases import Servers, reachable_admin_url, scratch_database

TRANSFER = "transfer.api.globus.org"
AUTH = "auth.globus.org"
GROUPS = "groups.api.globus.org"
CLIENT_SECRET = "client-secret-NEVER-SHOWN"


def stored(engine: Engine, namespace: str, keys: KeyRing | None = None) -> dict[str, Any]:
    """What a namespace holds, as token dicts with their extras."""
    with SQLAlchemyTokenStorage(engine, namespace=namespace, keys=keys) as storage:
        found = storage.get_token_data_by_resource_server()
    return {rs: data.to_dict(include_extra=True) for rs, data in found.items()}


def snapshot(engine: Engine) -> list[tuple[Any, ...]]:
    """Every row and column of the token table (timestamps too), or [] with no table."""
    if not inspect(engine).has_table(TokenRow.__tablename__):
        return []
    with engine.connect() as connection:
        rows = connection.execute(select(TokenRow.__table__)).all()
    return sorted(tuple(row) for row in rows)


@pytest.fixture(scope="module")
def module_database(servers: Servers) -> Iterator[Callable[[str], URL]]:
    """A scratch database per server for this module alone, made on first use."""
    made: dict[str, URL] = {}
    with contextlib.ExitStack() as stack:

        def url(backend: str) -> URL:
            if backend not in made:
                admin_url = reachable_admin_url(servers, backend)
                made[backend] = stack.enter_context(scratch_database(admin_url))
            return made[backend]

        yield url


@pytest.fixture
def database_url(backend: str, module_database: Callable[[str], URL], tmp_path: Path) -> URL:
    """As conftest's, but a server's database is this module's: no other module's rows."""
    if backend == "sqlite":
        return make_url(f"sqlite:///{tmp_path / 'tokens.db'}")
    return module_database(backend)

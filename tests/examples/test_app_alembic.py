"""An application with an Alembic history of its own runs ours from its ``env.py``.

The test writes a small application (alembic.ini, env.py, one revision creating
``app_users``) following the README's recipe, runs its ``alembic upgrade head`` and its
autogenerate, and checks that each history lands in its own version table and that
autogenerate proposes nothing about our tables.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import URL, Engine, MetaData, inspect, text

import tokenstore_sql
import tokenstore_sql.deploy
from tests.support.databases import BACKENDS
from tests.support.processes import run_python
from tests.support.sdk import make_token_data
from tokenstore_sql import SQLAlchemyTokenStorage, create_engine, schema
from tokenstore_sql.models import TOKENS_TABLE, VERSION_TABLE

APP_REVISION = "a001"
APP_TABLES = {"app_users", "alembic_version"}
OUR_TABLES = {TOKENS_TABLE, VERSION_TABLE}

# The application's models, in its env.py and (for comparison) in the tests' process.
APP_MODELS = """
from sqlalchemy import Column, Integer, MetaData, String, Table

target_metadata = MetaData()
Table(
    "app_users",
    target_metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(255), nullable=False),
)
"""

ENV_PY = (
    '''
"""The application's Alembic environment, with tokenstore-sql's migrations alongside."""

import os

from alembic import context
from sqlalchemy import create_engine

import tokenstore_sql
import tokenstore_sql.deploy

'''
    + APP_MODELS
    + """

def run_migrations_online() -> None:
    engine = create_engine(os.environ["APP_DATABASE_URL"])
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            # autogenerate leaves tokenstore-sql's tables alone
            include_name=tokenstore_sql.deploy.alembic_include_name,
        )
        with context.begin_transaction():
            # tokenstore-sql's history, in its own version table, same transaction
            tokenstore_sql.deploy.upgrade_connection(connection)
            context.run_migrations()
    engine.dispose()


run_migrations_online()
"""
)

REVISION_PY = f'''
"""Create app_users."""

from alembic import op
import sqlalchemy as sa

revision = "{APP_REVISION}"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "app_users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("email", sa.String(255), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("app_users")
'''

SCRIPT_MAKO = '''
"""${message}"""

from alembic import op
import sqlalchemy as sa
${imports if imports else ""}

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
'''


def _app_metadata() -> MetaData:
    """The application's models, as its env.py declares them."""
    models: dict[str, Any] = {}
    exec(APP_MODELS, models)
    metadata: MetaData = models["target_metadata"]
    return metadata


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    """The application's Alembic setup, written to disk."""
    app = tmp_path / "app"
    (app / "migrations" / "versions").mkdir(parents=True)
    (app / "alembic.ini").write_text("[alembic]\nscript_location = %(here)s/migrations\n")
    (app / "migrations" / "env.py").write_text(textwrap.dedent(ENV_PY).lstrip())
    (app / "migrations" / "script.py.mako").write_text(SCRIPT_MAKO.lstrip())
    versions = app / "migrations" / "versions"
    (versions / f"{APP_REVISION}_create_app_users.py").write_text(REVISION_PY.lstrip())
    return app


def _alembic(app: Path, url: URL, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "TOKENSTORE_SQL_URL"}
    env["APP_DATABASE_URL"] = url.render_as_string(hide_password=False)
    result = run_python(
        "-m", "alembic", "-c", str(app / "alembic.ini"), *args, cwd=app, env=env, timeout=120
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


@contextmanager
def _engine(url: URL) -> Iterator[Engine]:
    engine = create_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def _versions(engine: Engine, table: str) -> list[str]:
    with engine.connect() as connection:
        return list(connection.execute(text(f"SELECT version_num FROM {table}")).scalars())


def _proposals(engine: Engine, **options: object) -> list[Any]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts=options)
        return list(compare_metadata(context, _app_metadata()))


def test_the_apps_upgrade_runs_both_histories_each_in_its_own_version_table(
    app_dir: Path, empty_database_url: URL, namespace: str
) -> None:
    result = _alembic(app_dir, empty_database_url, "upgrade", "head")
    assert result.returncode == 0, result.stderr

    with _engine(empty_database_url) as engine:
        with engine.connect() as connection:
            assert set(inspect(connection).get_table_names()) == APP_TABLES | OUR_TABLES
        assert _versions(engine, "alembic_version") == [APP_REVISION]
        assert _versions(engine, VERSION_TABLE) == [schema.head_revision()]
        data = make_token_data("rs")
        with SQLAlchemyTokenStorage(engine, namespace=namespace, create_schema=False) as storage:
            storage.store_token_data_by_resource_server({"rs": data})
            assert storage.get_token_data("rs") is not None

    again = _alembic(app_dir, empty_database_url, "upgrade", "head")
    assert again.returncode == 0, again.stderr


def test_the_apps_upgrade_brings_an_older_tokenstore_schema_to_head(
    app_dir: Path, empty_database_url: URL
) -> None:
    with _engine(empty_database_url) as engine:
        schema.migrate(engine, "0001")

        result = _alembic(app_dir, empty_database_url, "upgrade", "head")

        assert result.returncode == 0, result.stderr
        assert _versions(engine, VERSION_TABLE) == [schema.head_revision()]
        assert _versions(engine, "alembic_version") == [APP_REVISION]


def test_the_apps_autogenerate_proposes_nothing_about_our_tables(
    app_dir: Path, empty_database_url: URL
) -> None:
    assert _alembic(app_dir, empty_database_url, "upgrade", "head").returncode == 0

    checked = _alembic(app_dir, empty_database_url, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "No new upgrade operations detected" in checked.stdout + checked.stderr

    generated = _alembic(app_dir, empty_database_url, "revision", "--autogenerate", "-m", "probe")
    assert generated.returncode == 0, generated.stderr
    (new,) = [
        path
        for path in (app_dir / "migrations" / "versions").glob("*.py")
        if not path.name.startswith(APP_REVISION)
    ]
    source = new.read_text()
    assert "tokenstore_sql" not in source
    assert "op." not in source  # upgrade() and downgrade() are both just `pass`

    # The hook is what keeps autogenerate quiet: without it, both tables would go.
    with _engine(empty_database_url) as engine:
        assert _proposals(engine, include_name=tokenstore_sql.deploy.alembic_include_name) == []
        proposals = _proposals(engine)
        dropped = {diff[1].name for diff in proposals if diff[0] == "remove_table"}
        assert dropped == OUR_TABLES


@pytest.mark.sqlite
@pytest.mark.parametrize(
    ("name", "type_", "included"),
    [
        (TOKENS_TABLE, "table", False),
        (VERSION_TABLE, "table", False),
        ("app_users", "table", True),
        (TOKENS_TABLE, "column", True),  # a column of the app's that happens to share the name
        ("ix_tokenstore_sql_tokens_token_key_id", "index", True),  # its table is left out
    ],
)
def test_include_name_leaves_out_exactly_our_tables(name: str, type_: str, included: bool) -> None:
    assert tokenstore_sql.deploy.alembic_include_name(name, type_, {}) is included


def test_upgrade_connection_commits_when_the_caller_has_no_transaction_open(
    empty_database_url: URL,
) -> None:
    with _engine(empty_database_url) as engine:
        with engine.connect() as connection:
            tokenstore_sql.deploy.upgrade_connection(connection)
            assert not connection.in_transaction()
        # the connection closed without a commit of ours: the schema must stay
        assert _versions(engine, VERSION_TABLE) == [schema.head_revision()]


@pytest.mark.parametrize("backend", [p for p in BACKENDS if p.values[0] != "mysql"])
def test_upgrade_connection_joins_the_callers_transaction(empty_database_url: URL) -> None:
    # MySQL commits DDL implicitly, so only SQLite and PostgreSQL can roll it back.
    with _engine(empty_database_url) as engine:
        with engine.connect() as connection:
            transaction = connection.begin()
            tokenstore_sql.deploy.upgrade_connection(connection)
            assert connection.in_transaction()
            transaction.rollback()
        with engine.connect() as connection:
            assert inspect(connection).get_table_names() == []

"""The one Alembic environment for every entry point.

- tokenstore-sql itself (storage bootstrap, the CLI) passes an open connection in
  ``config.attributes["connection"]`` and owns its transaction and locking.
- ``tokenstore-sql upgrade --sql`` (offline mode) passes a dialect name in
  ``config.attributes["dialect_name"]`` and its options in ``"dialect_opts"``.
- ``alembic upgrade head`` from a checkout takes the URL from ``-x url=...``, else
  ``TOKENSTORE_SQL_URL``, else ``sqlalchemy.url`` in alembic.ini; and the placement from
  ``-x table_prefix=...`` and ``-x schema=...``, else ``TOKENSTORE_SQL_TABLE_PREFIX`` and
  ``TOKENSTORE_SQL_SCHEMA``.

The placement (``config.attributes["placement"]``) names the token table, the version
table and, on PostgreSQL, their schema; the revisions read it from there. The version
table is tokenstore-sql's own, so an application's Alembic history in the same database
is never touched.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, inspect, text

from tokenstore_sql.engines import create_engine
from tokenstore_sql.models import Placement, metadata_for

config = context.config


def _placement() -> Placement:
    given = config.attributes.get("placement")
    if given is not None:
        return given  # type: ignore[no-any-return]
    options = context.get_x_argument(as_dictionary=True)
    return Placement.from_environment(options.get("table_prefix"), options.get("schema"))


placement = config.attributes["placement"] = _placement()


def _configure(connection: Connection) -> None:
    placement.check_dialect(connection.dialect.name)
    context.configure(
        connection=connection,
        target_metadata=metadata_for(placement),
        version_table=placement.version_table,
        version_table_schema=placement.schema,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    # The version table goes in the schema, so the schema must exist before the first
    # revision runs. Looked up first: CREATE SCHEMA needs a privilege even when the
    # schema exists, and an account that may only use an existing schema must pass.
    if placement.schema is not None and not inspect(connection).has_schema(placement.schema):
        connection.execute(text(f"CREATE SCHEMA {placement.schema}"))


def _url() -> str:
    url = (
        context.get_x_argument(as_dictionary=True).get("url")
        or os.environ.get("TOKENSTORE_SQL_URL")
        or config.get_main_option("sqlalchemy.url")
    )
    if not url:
        raise SystemExit("no database URL: pass -x url=..., or set TOKENSTORE_SQL_URL")
    return url


def run_offline() -> None:
    """Write the migration SQL for a dialect instead of running it.

    tokenstore-sql names the dialect in ``config.attributes["dialect_name"]``, with
    options for it in ``"dialect_opts"`` (no database needed); ``alembic upgrade --sql``
    takes it from the URL.
    """
    dialect_name = config.attributes.get("dialect_name")
    context.configure(
        url=f"{dialect_name}://" if dialect_name else _url(),
        dialect_opts=config.attributes.get("dialect_opts"),
        target_metadata=metadata_for(placement),
        version_table=placement.version_table,
        version_table_schema=placement.schema,
        literal_binds=True,
    )
    with context.begin_transaction():
        if placement.schema is not None:
            context.execute(f"CREATE SCHEMA IF NOT EXISTS {placement.schema}")
        context.run_migrations()


def run_online() -> None:
    """Run the migrations on the caller's connection, or on one opened here."""
    shared = config.attributes.get("connection")
    if shared is not None:
        _configure(shared)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(_url())
    try:
        with engine.connect() as connection:
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


# Only the alembic command line configures logging; a library must not reset its host's.
if config.config_file_name is not None and "connection" not in config.attributes:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

if context.is_offline_mode():
    run_offline()
else:
    run_online()

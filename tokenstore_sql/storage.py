"""``SQLAlchemyTokenStorage``: globus-sdk's ``TokenStorage`` on a SQL database.

Each public call is one statement on a connection taken from the engine's pool for
that call alone, so one storage (or one engine shared by many storages) is safe to use
from many threads. Writes are atomic upserts, so several resource servers are stored
all or nothing. The statements run on the driver's own connection, each a transaction
of its own (see :mod:`tokenstore_sql.direct`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from sqlalchemy import URL, Engine, Executable, Select

from ._sdk import TokenStorage, TokenStorageData, default_app_path
from .codec import check_key, rows_for_storage, stamped, token_data_from_row
from .crypto import KeyRing
from .engines import EngineOwner, masked_url, reset_pools_after_fork
from .execution import read_rows, write_rows
from .models import DEFAULT_PLACEMENT, Placement
from .namespaces import globus_app_namespace
from .retries import RetryPolicy
from .schema import ensure_schema, is_checked
from .statements import check_dialect, key_params, statements_for

if TYPE_CHECKING:
    from globus_sdk import GlobusAppConfig

DEFAULT_NAMESPACE = "DEFAULT"
URL_VARIABLE = "TOKENSTORE_SQL_URL"
KEYS_VARIABLE = "TOKENSTORE_SQL_KEYS"
APP_FILE_SUFFIX = ".tokenstore.db"


class SQLAlchemyTokenStorage(EngineOwner, TokenStorage):
    """A token storage that keeps token data in a SQLite, PostgreSQL or MySQL database.

    See globus-sdk's ``TokenStorage`` for the common interface.

    :param url_or_engine: a database URL (``str`` or ``sqlalchemy.URL``), or an existing
        ``Engine``. A storage built from a URL creates its engine and disposes of it on
        :meth:`~tokenstore_sql.engines.EngineOwner.close`; one built from an engine
        leaves that engine to its owner.
    :param namespace: the partition of token data this storage reads and writes
    :param create_schema: create the schema when the database has none (default True)
    :param upgrade_schema: also upgrade a schema at an older revision (default False:
        raise :class:`~tokenstore_sql.errors.SchemaOutOfDateError` instead)
    :param engine_options: keyword arguments for :func:`tokenstore_sql.create_engine`,
        used only when a URL is given
    :param retry: how transient database failures are retried
    :param encryption_keys: keys (from ``tokenstore-sql generate-key``) or a
        :class:`~tokenstore_sql.KeyRing`: access and refresh tokens are then stored
        encrypted with the first key, and read with whichever key sealed them
    :param placement: the tables' name prefix and PostgreSQL schema (default: tables
        ``tokenstore_sql_tokens`` and ``tokenstore_sql_version`` on the search path)
    :raises SchemaOutOfDateError: the database needs ``tokenstore-sql upgrade`` first
    :raises UnsupportedDatabaseError: the database is not SQLite, PostgreSQL or MySQL
    :raises PlacementError: a schema placement on a database other than PostgreSQL
    """

    def __init__(
        self,
        url_or_engine: str | URL | Engine,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        create_schema: bool = True,
        upgrade_schema: bool = False,
        engine_options: Mapping[str, Any] | None = None,
        retry: RetryPolicy | None = None,
        encryption_keys: KeyRing | Iterable[str | bytes] | None = None,
        placement: Placement = DEFAULT_PLACEMENT,
    ) -> None:
        check_key("namespace", namespace)
        engine = self._hold_engine(url_or_engine, engine_options)
        self.retry = retry or RetryPolicy()
        self.keys = KeyRing.coerce(encryption_keys)
        self.placement = placement
        self._statements = statements_for(placement)
        self._schema_options = {"create_schema": create_schema, "upgrade_schema": upgrade_schema}
        if not is_checked(engine, placement):  # else nothing to do: no I/O, no checks
            try:
                check_dialect(engine.dialect)
                placement.check_dialect(engine.dialect.name)
                reset_pools_after_fork(engine)
                self.retry.run(
                    "open the database",
                    engine,
                    lambda: ensure_schema(
                        engine, placement, create=create_schema, upgrade=upgrade_schema
                    ),
                )
            except BaseException:
                self.close()
                raise
        super().__init__(namespace=namespace)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(dialect={self.engine.dialect.name!r}, "
            f"namespace={self.namespace!r}, url={masked_url(self.engine.url)!r}, "
            f"table={str(self.placement)!r})"
        )

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the URL and settings, never the engine or its connections.

        The unpickled storage (in a worker process, say) creates an engine of its own
        from the URL with tokenstore-sql's defaults, and disposes of it on :meth:`close`.
        The pickle holds the URL's password, as the URL itself does.
        """
        return {
            "url": self.engine.url.render_as_string(hide_password=False),
            "namespace": self.namespace,
            "retry": self.retry,
            "keys": self.keys,
            "placement": self.placement,
            "schema_options": self._schema_options,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rebuild the storage from :meth:`__getstate__`'s state, with a new engine."""
        self.__init__(  # type: ignore[misc]  # re-running the constructor is the point
            state["url"],
            namespace=state["namespace"],
            retry=state["retry"],
            encryption_keys=state["keys"],
            placement=state["placement"],
            **state["schema_options"],
        )

    def store_token_data_by_resource_server(
        self, token_data_by_resource_server: Mapping[str, TokenStorageData]
    ) -> None:
        """Store token data for one or more resource servers, all or nothing.

        Existing data for a resource server is replaced.

        :param token_data_by_resource_server: mapping of resource server to token data
        :raises InvalidTokenDataError: (a ``TypeError`` and ``ValueError``) on bad input,
            before anything is written
        """
        rows = rows_for_storage(self.namespace, token_data_by_resource_server, self.keys)
        if not rows:
            return
        statement = self._statements.upsert(self.engine.dialect)
        self._write("store token data", statement, stamped(rows))

    def get_token_data_by_resource_server(self) -> dict[str, TokenStorageData]:
        """Retrieve all token data stored in this namespace, by resource server.

        :raises UnreadableTokenDataError: a stored row cannot be read back
        """
        params = key_params(self.namespace)
        rows = self._read("read token data", self._statements.select_namespace, params)
        return {
            row["resource_server"]: token_data_from_row(self.namespace, row, self.keys)
            for row in rows
        }

    def get_token_data(self, resource_server: str) -> TokenStorageData | None:
        """Retrieve token data for one resource server in this namespace (None if absent).

        :raises UnreadableTokenDataError: the stored row cannot be read back
        """
        check_key("resource server", resource_server)
        params = key_params(self.namespace, resource_server)
        rows = self._read("read token data", self._statements.select_one, params)
        return token_data_from_row(self.namespace, rows[0], self.keys) if rows else None

    def remove_token_data(self, resource_server: str) -> bool:
        """Remove token data for one resource server in this namespace.

        :returns: True if token data was deleted, False if there was none
        """
        check_key("resource server", resource_server)
        params = key_params(self.namespace, resource_server)
        return self._write("remove token data", self._statements.delete_one, [params]) > 0

    def remove_namespace(self) -> int:
        """Remove all token data of this namespace (logout, offboarding) in one transaction.

        :returns: how many resource servers' token data were removed
        """
        params = key_params(self.namespace)
        return self._write("remove a namespace", self._statements.delete_namespace, [params])

    @classmethod
    def for_globus_app(
        cls,
        client_id: UUID | str,
        app_name: str,
        config: GlobusAppConfig,
        namespace: str,
    ) -> SQLAlchemyTokenStorage:
        """Create the storage of a ``GlobusApp`` (globus-sdk's ``TokenStorageProvider``).

        ``GlobusAppConfig(token_storage=SQLAlchemyTokenStorage)`` keeps the app's tokens
        in the database named by ``TOKENSTORE_SQL_URL``, or else in an embedded SQLite
        file beside globus-sdk's own token files
        (``~/.globus/app/{client_id}/{app_name}/tokens.tokenstore.db``). Each app keeps
        its tokens in a namespace of its own, :func:`~tokenstore_sql.globus_app_namespace`
        of its client ID, name, environment and ``namespace``, so apps sharing one
        database never see each other's tokens. Encryption keys come from
        ``TOKENSTORE_SQL_KEYS`` when it is set, the placement from
        ``TOKENSTORE_SQL_TABLE_PREFIX`` and ``TOKENSTORE_SQL_SCHEMA``.
        """
        environment = config.environment
        url = os.environ.get(URL_VARIABLE)
        if not url:
            path = Path(default_app_path(client_id, app_name, environment) + APP_FILE_SUFFIX)
            path.parent.mkdir(parents=True, exist_ok=True)  # as globus-sdk's own storages do
            url = f"sqlite:///{path}"
        keys = os.environ.get(KEYS_VARIABLE)
        return cls(
            url,
            namespace=globus_app_namespace(
                client_id, app_name, environment=environment, namespace=namespace
            ),
            encryption_keys=KeyRing.from_text(keys) if keys else None,
            placement=Placement.from_environment(),
        )

    def iter_namespaces(self) -> Iterator[str]:
        """Iterate over every namespace that holds token data in this database, in order."""
        rows = self._read("list namespaces", self._statements.select_namespaces(), {})
        return (row["namespace"] for row in rows)

    def _read(
        self, operation: str, statement: Select[Any], params: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        return read_rows(self.engine, operation, statement, params, self.retry)

    def _write(
        self, operation: str, statement: Executable, rows: Sequence[Mapping[str, Any]]
    ) -> int:
        return write_rows(self.engine, operation, statement, rows, self.retry)

"""``SQLAlchemyTokenStorage``: globus-sdk's ``TokenStorage`` on a SQL database.

Each public call is one statement on a connection taken from the engine's pool for
that call alone, so one storage (or one engine shared by many storages) is safe to use
from many threads. Writes are atomic upserts, so several resource servers are stored
all or nothing. The statements run on the driver's own connection, each a transaction
of its own (see :mod:`tokenstore_sql.direct`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from sqlalchemy import Engine

from ._sdk import TokenStorage, TokenStorageData, default_app_path
from .codec import check_key, rows_for_storage, stamped, token_data_from_values
from .crypto import KeyRing
from .engines import EngineOwner
from .execution import Execution
from .models import Placement
from .namespaces import globus_app_namespace
from .schema import open_schema
from .settings import StoreSettings
from .statements import key_params
from .storage_common import StorageCommon

if TYPE_CHECKING:
    from globus_sdk import GlobusAppConfig

URL_VARIABLE = "TOKENSTORE_SQL_URL"
KEYS_VARIABLE = "TOKENSTORE_SQL_KEYS"
APP_FILE_SUFFIX = ".tokenstore.db"


class SQLAlchemyTokenStorage(StorageCommon[Engine], EngineOwner, TokenStorage):
    """A token storage that keeps token data in a SQLite, PostgreSQL or MySQL database.

    See globus-sdk's ``TokenStorage`` for the common interface.

    :param url_or_engine: a database URL (``str`` or ``sqlalchemy.URL``), or an existing
        ``Engine``. A storage built from a URL creates its engine and disposes of it on
        :meth:`~tokenstore_sql.engines.EngineOwner.close`; one built from an engine
        leaves that engine to its owner.
    :param namespace: the partition of token data this storage reads and writes
    :param settings: placement, encryption keys, retry policy, schema policy and engine
        options (see :class:`~tokenstore_sql.settings.StoreSettings`), shared with other
        storages and stores on the same database
    :param options: any field of :class:`~tokenstore_sql.settings.StoreSettings` by name
        (``placement``, ``keys``, ``retry``, ``create_schema``, ``upgrade_schema``,
        ``engine_options``), replacing that field of ``settings``
    :raises SchemaOutOfDateError: the database needs ``tokenstore-sql upgrade`` first
    :raises UnsupportedDatabaseError: the database is not SQLite, PostgreSQL or MySQL
    :raises PlacementError: a schema placement on a database other than PostgreSQL
    """

    def _opened(self, engine: Engine, settings: StoreSettings, namespace: str) -> None:
        try:
            open_schema(engine, settings)  # no I/O once this engine has been checked
        except BaseException:
            self.close()
            raise
        TokenStorage.__init__(self, namespace=namespace)
        self._execution = Execution(engine, settings.retry)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the URL and settings, never the engine or its connections.

        The unpickled storage (in a worker process, say) creates an engine of its own
        from the URL with tokenstore-sql's defaults, and disposes of it on :meth:`close`.
        The pickle holds the URL's password, as the URL itself does.
        """
        return {
            "url": self.engine.url.render_as_string(hide_password=False),
            "namespace": self.namespace,
            # the engine options may hold what does not pickle (a creator function, say)
            "settings": self.settings.replace(engine_options={}),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rebuild the storage from :meth:`__getstate__`'s state, with a new engine."""
        self.__init__(  # type: ignore[misc]  # re-running the constructor is the point
            state["url"],
            namespace=state["namespace"],
            settings=state["settings"],
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
        statement, batch = self._statements.upsert_of(self.engine.dialect, stamped(rows))
        self._execution.write_rows("store token data", statement, batch)

    def get_token_data_by_resource_server(self) -> dict[str, TokenStorageData]:
        """Retrieve all token data stored in this namespace, by resource server.

        :raises UnreadableTokenDataError: a stored row cannot be read back
        """
        params = key_params(self.namespace)
        rows = self._execution.read_rows(
            "read token data", self._statements.select_namespace, params
        )
        return self._by_resource_server(rows)

    def get_token_data(self, resource_server: str) -> TokenStorageData | None:
        """Retrieve token data for one resource server in this namespace (None if absent).

        :raises UnreadableTokenDataError: the stored row cannot be read back
        """
        check_key("resource server", resource_server)
        values = self._execution.read_row(
            "read token data", self._statements, self.namespace, resource_server
        )
        return None if values is None else token_data_from_values(self.namespace, values, self.keys)

    def remove_token_data(self, resource_server: str) -> bool:
        """Remove token data for one resource server in this namespace.

        :returns: True if token data was deleted, False if there was none
        """
        check_key("resource server", resource_server)
        params = key_params(self.namespace, resource_server)
        statement = self._statements.delete_one
        return self._execution.write_rows("remove token data", statement, [params]) > 0

    def remove_namespace(self) -> int:
        """Remove all token data of this namespace (logout, offboarding) in one transaction.

        :returns: how many resource servers' token data were removed
        """
        params = key_params(self.namespace)
        return self._execution.write_rows(
            "remove a namespace", self._statements.delete_namespace, [params]
        )

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
            keys=KeyRing.from_text(keys) if keys else None,
            placement=Placement.from_environment(),
        )

    def iter_namespaces(self) -> Iterator[str]:
        """Iterate over every namespace that holds token data in this database, in order."""
        rows = self._execution.read_rows(
            "list namespaces", self._statements.select_namespaces(), {}
        )
        return (row["namespace"] for row in rows)

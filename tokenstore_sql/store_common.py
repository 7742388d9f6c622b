"""What :class:`~tokenstore_sql.TokenStore` and its async twin share, whatever their engine.

The constructor (a URL or an engine, the app label put in every namespace, the settings
taken once for every storage handed out), a repr that names the database without its
password, a user's storage, and a user's token data with a fresh access token.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Generic, TypeVar

from globus_sdk import AuthLoginClient
from sqlalchemy import URL, Engine

from .engines import EngineOwnership, masked_url
from .namespaces import check_app_label, user_namespace
from .refresh_request import RefreshOptions
from .settings import SettingsOptions, StoreSettings, UsesSettings

if TYPE_CHECKING:  # the sync store must not load SQLAlchemy's asyncio extension
    from sqlalchemy.ext.asyncio import AsyncEngine
    from typing_extensions import Unpack

E = TypeVar("E", Engine, "AsyncEngine")
_Storage = TypeVar("_Storage")  # the storage a store hands out
_Fresh = TypeVar("_Fresh")  # token data, or (async) an awaitable of it


class AppStore(UsesSettings, EngineOwnership[E], Generic[E, _Storage, _Fresh]):
    """A store's app label and settings; the engine is held by the store's engine owner.

    The store's class docstring documents the constructor's parameters.
    """

    app: str | None

    def __init__(
        self,
        url_or_engine: str | URL | E,
        *,
        app: str | None = None,
        settings: StoreSettings | None = None,
        **options: Unpack[SettingsOptions],
    ) -> None:
        if app is not None:
            check_app_label(app)
        self.app = app
        chosen = self._take_settings(settings, options)
        self._hold_engine(url_or_engine, chosen.engine_options)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(dialect={self.engine.dialect.name!r}, app={self.app!r}, "
            f"url={masked_url(self.engine.url)!r})"
        )

    def namespace_for(self, identity_id: str | uuid.UUID) -> str:
        """Return a user's namespace in this store (see :func:`~tokenstore_sql.user_namespace`)."""
        return user_namespace(identity_id, app=self.app)

    def for_namespace(self, namespace: str) -> _Storage:
        """Return a storage over the shared engine for any namespace."""
        raise NotImplementedError

    def for_user(self, identity_id: str | uuid.UUID) -> _Storage:
        """Return the storage of one user's token data (see :meth:`for_namespace`).

        The storage shares the store's engine: closing it leaves the engine open.
        """
        return self.for_namespace(self.namespace_for(identity_id))

    def fresh_token_data(
        self,
        identity_id: str | uuid.UUID,
        resource_server: str,
        auth_client: AuthLoginClient,
        **options: Unpack[RefreshOptions],
    ) -> _Fresh:
        """Return a user's token data for a resource server with a fresh access token.

        An expired (or refused) access token is refreshed at most once across every
        worker (and task) that shares the database (see
        :func:`~tokenstore_sql.refresh.refresh_once`). The async store's is awaited, and
        runs Auth's HTTP call in a worker thread.

        :param options: those of :func:`~tokenstore_sql.refresh.refresh_once`:
            ``rejected_access_token`` (a token a service refused, HTTP 401), ``on_refresh``
            (called with Auth's response when this call refreshed), ...
        :raises MissingTokenDataError: no token data or no refresh token: log in again
        :raises globus_sdk.AuthAPIError: Auth refused the refresh token
        """
        return self._refresh_once(self.for_user(identity_id), resource_server, auth_client, options)

    def _refresh_once(
        self,
        storage: _Storage,
        resource_server: str,
        auth_client: AuthLoginClient,
        options: RefreshOptions,
    ) -> _Fresh:
        raise NotImplementedError

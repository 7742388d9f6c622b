"""``TokenStore``: one engine for a multi-user backend, and a storage per user from it.

A web backend creates one ``TokenStore`` per process at start-up and asks it for a
user's storage (or refreshing authorizer) in each request. Handing out a storage costs
no I/O: the schema is checked once, when the store is created.

Namespaces follow the package's convention (see :mod:`tokenstore_sql.namespaces`):
``user:{identity_id}``, or ``{app}:user:{identity_id}`` when several apps share a database.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from globus_sdk import AuthLoginClient
from sqlalchemy import URL, Engine

from ._sdk import TokenStorageData
from .crypto import KeyRing
from .engines import EngineOwner, masked_url
from .models import DEFAULT_PLACEMENT, Placement
from .namespaces import check_app_label, user_namespace
from .refresh import LockingRefreshTokenAuthorizer, OnRefresh, refresh_once
from .retries import RetryPolicy
from .storage import SQLAlchemyTokenStorage


class TokenStore(EngineOwner):
    """The token data of many users in one database, over one shared engine.

    :param url_or_engine: a database URL, or an ``Engine`` (which the store then never
        disposes of)
    :param app: the app or environment label put in every namespace (see
        :func:`user_namespace`); None for none
    :param options: ``create_schema``, ``upgrade_schema``, ``retry``, ``engine_options``,
        ``encryption_keys``, ``placement``, as for :class:`~tokenstore_sql.SQLAlchemyTokenStorage`
    """

    def __init__(
        self,
        url_or_engine: str | URL | Engine,
        *,
        app: str | None = None,
        create_schema: bool = True,
        upgrade_schema: bool = False,
        engine_options: Mapping[str, Any] | None = None,
        retry: RetryPolicy | None = None,
        encryption_keys: KeyRing | Iterable[str | bytes] | None = None,
        placement: Placement = DEFAULT_PLACEMENT,
    ) -> None:
        if app is not None:
            check_app_label(app)
        self.app = app
        self._hold_engine(url_or_engine, engine_options)
        try:
            # the first storage checks (and creates) the schema; later ones cost no I/O
            first = SQLAlchemyTokenStorage(
                self.engine,
                create_schema=create_schema,
                upgrade_schema=upgrade_schema,
                retry=retry,
                encryption_keys=encryption_keys,
                placement=placement,
            )
        except BaseException:
            self.close()
            raise
        self.retry = first.retry
        self.keys = first.keys
        self.placement = placement

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(dialect={self.engine.dialect.name!r}, app={self.app!r}, "
            f"url={masked_url(self.engine.url)!r})"
        )

    def namespace_for(self, identity_id: str | uuid.UUID) -> str:
        """Return a user's namespace in this store (see :func:`user_namespace`)."""
        return user_namespace(identity_id, app=self.app)

    def for_namespace(self, namespace: str) -> SQLAlchemyTokenStorage:
        """Return a storage over the shared engine for any namespace; no I/O."""
        return SQLAlchemyTokenStorage(
            self.engine,
            namespace=namespace,
            retry=self.retry,
            encryption_keys=self.keys,
            placement=self.placement,
        )

    def for_user(self, identity_id: str | uuid.UUID) -> SQLAlchemyTokenStorage:
        """Return the storage of one user's token data; no I/O.

        The storage shares the store's engine: closing it leaves the engine open.
        """
        return self.for_namespace(self.namespace_for(identity_id))

    def authorizer(
        self,
        identity_id: str | uuid.UUID,
        resource_server: str,
        auth_client: AuthLoginClient,
        *,
        on_refresh: OnRefresh | None = None,
    ) -> LockingRefreshTokenAuthorizer:
        """Return an authorizer for a user's calls to a resource server.

        It refreshes an expired access token at most once across every worker that
        shares the database (see :class:`~tokenstore_sql.refresh.LockingRefreshTokenAuthorizer`).

        :raises MissingTokenDataError: the user has no token data (or no refresh token)
            for that resource server: send them to log in
        """
        return LockingRefreshTokenAuthorizer(
            self.for_user(identity_id), resource_server, auth_client, on_refresh=on_refresh
        )

    def fresh_token_data(
        self,
        identity_id: str | uuid.UUID,
        resource_server: str,
        auth_client: AuthLoginClient,
        *,
        rejected_access_token: str | None = None,
        on_refresh: OnRefresh | None = None,
    ) -> TokenStorageData:
        """Return a user's token data for a resource server with a fresh access token.

        An expired (or refused) access token is refreshed at most once across every
        worker that shares the database (see :func:`~tokenstore_sql.refresh.refresh_once`).

        :raises MissingTokenDataError: no token data or no refresh token: log in again
        :raises globus_sdk.AuthAPIError: Auth refused the refresh token
        """
        return refresh_once(
            self.for_user(identity_id),
            resource_server,
            auth_client,
            rejected_access_token=rejected_access_token,
            on_refresh=on_refresh,
        )

    def remove_user(self, identity_id: str | uuid.UUID) -> int:
        """Remove every token of one user (logout, offboarding) in one transaction.

        :returns: how many resource servers' token data were removed
        """
        return self.for_user(identity_id).remove_namespace()

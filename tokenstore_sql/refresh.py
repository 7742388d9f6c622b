"""Refreshing a stored access token once, however many workers find it expired at once.

Two workers of a web backend that both see a user's access token expired would both
spend the refresh token; where refresh tokens rotate, the second refresh fails (or the
second worker stores a token that is already spent) and the user is logged out. Here,
"re-read, refresh only if still expired, store" runs under a database lock per
namespace and resource server (see :mod:`tokenstore_sql.locks`), so the first worker
refreshes and the others find its fresh token when the lock is theirs.

:class:`LockingRefreshTokenAuthorizer` packages that as a globus-sdk authorizer; any
SDK client takes it (``TransferClient(authorizer=...)``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

from globus_sdk import AuthLoginClient, OAuthRefreshTokenResponse, RefreshTokenAuthorizer
from sqlalchemy import Connection

from ._sdk import TokenStorageData
from .codec import check_key, rows_for_storage, stamped, token_data_from_row
from .errors import InvalidTokenDataError, MissingTokenDataError
from .locks import DEFAULT_LOCK_TIMEOUT_SECONDS, lock_name, locked_transaction
from .statements import key_params, statements_for
from .storage import SQLAlchemyTokenStorage

# As globus-sdk's RenewingAuthorizer: a token this close to its expiry counts as expired.
EXPIRY_MARGIN_SECONDS: Final = 60

OnRefresh = Callable[[OAuthRefreshTokenResponse], Any]


def is_fresh(data: TokenStorageData, *, now: float | None = None) -> bool:
    """Tell whether an access token is good for at least another minute."""
    now = time.time() if now is None else now
    return now <= data.expires_at_seconds - EXPIRY_MARGIN_SECONDS


def refresh_once(
    storage: SQLAlchemyTokenStorage,
    resource_server: str,
    auth_client: AuthLoginClient,
    *,
    rejected_access_token: str | None = None,
    on_refresh: OnRefresh | None = None,
    lock_timeout: int = DEFAULT_LOCK_TIMEOUT_SECONDS,
) -> TokenStorageData:
    """Return a fresh access token for one resource server, refreshing it only if needed.

    Under the lock for (namespace, resource server): read the stored row; if its access
    token is fresh (and is not ``rejected_access_token``), return it; else spend the
    refresh token with ``auth_client``, store the result in the same transaction, and
    return it. The identity, ``extra`` and, where Auth does not rotate it, the refresh
    token are kept from the stored row.

    :param rejected_access_token: a token a service refused (HTTP 401): refresh even if
        the stored token is this one and not yet expired
    :param on_refresh: called with Auth's response, after it is stored, by the worker
        that refreshed (never by those that found a fresh token)
    :raises MissingTokenDataError: nothing is stored, or there is no refresh token
    :raises globus_sdk.AuthAPIError: Auth refused the refresh token (the stored row is
        left as it was)
    """
    check_key("resource server", resource_server)
    namespace = storage.namespace
    name = lock_name("refresh", namespace, resource_server)
    # A response whose storing failed is stored by the retry instead of refreshing again.
    obtained: dict[str, OAuthRefreshTokenResponse] = {}

    def attempt() -> tuple[TokenStorageData, OAuthRefreshTokenResponse | None]:
        with locked_transaction(storage.engine, name, timeout=lock_timeout) as connection:
            current = _read(connection, storage, resource_server)
            if is_fresh(current) and current.access_token != rejected_access_token:
                return current, None
            spent = current.refresh_token
            if spent is None:
                raise MissingTokenDataError(
                    namespace, resource_server, "the stored token data has no refresh token"
                )
            response = obtained.get(spent) or auth_client.oauth2_refresh_token(spent)
            obtained[spent] = response
            renewed = _renewed(current, response)
            _write(connection, storage, renewed)
            return renewed, response

    data, response = storage.retry.run("refresh a token", storage.engine, attempt)
    if response is not None and on_refresh is not None:
        on_refresh(response)
    return data


class LockingRefreshTokenAuthorizer(RefreshTokenAuthorizer):
    """A ``RefreshTokenAuthorizer`` over a storage row that workers refresh only once.

    It starts from the stored token data. When the access token has expired (or a
    service answered 401), it calls :func:`refresh_once`: of several workers doing so at
    once, one refreshes and stores, the others read what it stored. Use one per request
    or per worker; it is as thread-safe as globus-sdk's own authorizers (not at all).

    :param storage: the user's storage (its namespace is the lock's scope)
    :param resource_server: the resource server whose token this authorizes
    :param auth_client: the confidential or native client that owns the refresh token
    :param on_refresh: called with Auth's response after a refresh this worker made
    :param lock_timeout: seconds to wait for another worker's refresh
    :raises MissingTokenDataError: no token data, or no refresh token, is stored
    """

    def __init__(
        self,
        storage: SQLAlchemyTokenStorage,
        resource_server: str,
        auth_client: AuthLoginClient,
        *,
        on_refresh: OnRefresh | None = None,
        lock_timeout: int = DEFAULT_LOCK_TIMEOUT_SECONDS,
    ) -> None:
        data = storage.get_token_data(resource_server)
        if data is None:
            raise MissingTokenDataError(storage.namespace, resource_server, "no token data")
        if data.refresh_token is None:
            raise MissingTokenDataError(
                storage.namespace, resource_server, "the stored token data has no refresh token"
            )
        self.storage = storage
        self.resource_server = resource_server
        self.lock_timeout = lock_timeout
        super().__init__(
            data.refresh_token,
            auth_client,
            access_token=data.access_token,
            expires_at=data.expires_at_seconds,
            on_refresh=on_refresh,
        )

    def ensure_valid_token(self) -> None:
        """Refresh through :func:`refresh_once` when the token is expired or was refused."""
        expires_at = self.expires_at
        fresh = expires_at is not None and time.time() <= expires_at - EXPIRY_MARGIN_SECONDS
        if self.access_token is not None and fresh:
            return
        # handle_missing_authorization() (a 401) clears expires_at: that token was refused
        rejected = self.access_token if expires_at is None else None
        data = refresh_once(
            self.storage,
            self.resource_server,
            self.auth_client,
            rejected_access_token=rejected,
            on_refresh=self.on_refresh,
            lock_timeout=self.lock_timeout,
        )
        self.access_token = data.access_token
        self.expires_at = data.expires_at_seconds
        if data.refresh_token is not None:
            self.refresh_token = data.refresh_token


def _read(
    connection: Connection, storage: SQLAlchemyTokenStorage, resource_server: str
) -> TokenStorageData:
    # FOR UPDATE reads the newest committed row even where the transaction's snapshot
    # (MySQL's REPEATABLE READ) predates the lock; SQLite has no such clause, nor needs it.
    statement = statements_for(storage.placement).select_one.with_for_update()
    params = key_params(storage.namespace, resource_server)
    row = connection.execute(statement, params).mappings().first()
    if row is None:
        raise MissingTokenDataError(storage.namespace, resource_server, "no token data")
    return token_data_from_row(storage.namespace, row, storage.keys)


def _renewed(current: TokenStorageData, response: OAuthRefreshTokenResponse) -> TokenStorageData:
    tokens = response.by_resource_server.get(current.resource_server)
    if tokens is None:
        raise InvalidTokenDataError(
            f"the refresh response holds no token for resource server {current.resource_server!r}"
        )
    return TokenStorageData(
        resource_server=current.resource_server,
        identity_id=current.identity_id,  # refresh responses carry no id_token
        scope=tokens.get("scope") or current.scope,
        access_token=tokens["access_token"],
        refresh_token=tokens.get("refresh_token") or current.refresh_token,
        expires_at_seconds=tokens["expires_at_seconds"],
        token_type=tokens.get("token_type") or current.token_type,
        extra=current.extra,
    )


def _write(connection: Connection, storage: SQLAlchemyTokenStorage, data: TokenStorageData) -> None:
    rows = stamped(rows_for_storage(storage.namespace, {data.resource_server: data}, storage.keys))
    connection.execute(statements_for(storage.placement).upsert(connection.dialect), rows)

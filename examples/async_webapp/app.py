"""A Starlette (ASGI) application that logs users in with Globus and keeps their tokens in SQL.

The async twin of ``examples/webapp``, with the same pages, settings
(``examples/settings.py``) and namespaces (the two can share a database and a Globus
client registration):

- ``/login`` and ``/callback``: Globus Auth's authorization code flow, with refresh
  tokens; the tokens land in the user's own namespace of one shared database.
- ``/profile``: calls Globus Auth's userinfo with the user's stored token, refreshed
  first if it has expired.
- ``/logout``: revokes the user's tokens and removes them from the database.

Token storage calls are awaited on the event loop (``AsyncSQLAlchemyTokenStorage``, one
per request, over one async engine). globus-sdk is synchronous, so each of its network
calls (code exchange, id_token check, userinfo, refresh, revoke) runs in a worker thread
(``run_in_threadpool``): a slow Globus Auth holds up only the request that waits for it.

Requests of one user that find an expired access token at once refresh it once: an
asyncio lock per user and resource server, within this process. Several worker
processes do not share that lock; where Globus Auth rotates refresh tokens, run the
sync ``tokenstore_sql.refresh_once`` (a database lock) in a thread instead, as the Flask
example's authorizer does.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
import weakref
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import parse_qsl

import globus_sdk
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from tokenstore_sql import (
    AsyncSQLAlchemyTokenStorage,
    MissingTokenDataError,
    TokenStorageData,
    create_async_engine,
    user_namespace,
)

from ..settings import (
    AUTH,
    MISSING_CREDENTIALS,
    SCOPES,
    callback_url,
    complete_settings,
    has_credentials,
    login_client,
)
from .pages import page

# As globus-sdk's authorizers: a token this close to its expiry counts as expired.
EXPIRY_MARGIN_SECONDS = 60


def _same(expected: str, given: str) -> bool:
    # compare_digest refuses non-ASCII str; a forged value may hold anything
    return secrets.compare_digest(expected.encode(), given.encode())


def _is_fresh(data: TokenStorageData) -> bool:
    return time.time() <= data.expires_at_seconds - EXPIRY_MARGIN_SECONDS


def create_app(settings: Mapping[str, Any] | None = None) -> Starlette:
    """Build the Starlette app over one async engine, disposed of at shutdown."""
    config = complete_settings(settings)
    engine = create_async_engine(config["TOKENSTORE_SQL_URL"])
    redirect_uri = callback_url(config["BASE_URL"])
    missing = MISSING_CREDENTIALS.format(redirect_uri=redirect_uri)
    # One refresh at a time per user and resource server (see the module docstring).
    refresh_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def storage_for(identity_id: str) -> AsyncSQLAlchemyTokenStorage:
        """Return a user's storage over the shared engine; no I/O."""
        namespace = user_namespace(identity_id, app=config["TOKENSTORE_APP"])
        return AsyncSQLAlchemyTokenStorage(engine, namespace=namespace)

    async def fresh_token(storage: AsyncSQLAlchemyTokenStorage, rs: str) -> TokenStorageData:
        """Return a resource server's token data, refreshed first if it has expired."""
        data = await storage.get_token_data(rs)
        if data is not None and _is_fresh(data):
            return data
        lock = refresh_locks.setdefault(f"{storage.namespace} {rs}", asyncio.Lock())
        async with lock:
            # a request that held the lock before this one may have refreshed already
            data = await storage.get_token_data(rs)
            if data is None or data.refresh_token is None:
                raise MissingTokenDataError(storage.namespace, rs, "no refresh token")
            if _is_fresh(data):
                return data
            client = login_client(config)
            response = await run_in_threadpool(client.oauth2_refresh_token, data.refresh_token)
            tokens = response.by_resource_server[rs]
            renewed = TokenStorageData(
                resource_server=rs,
                identity_id=data.identity_id,  # refresh responses carry no id_token
                scope=tokens["scope"],
                access_token=tokens["access_token"],
                refresh_token=tokens.get("refresh_token") or data.refresh_token,
                expires_at_seconds=tokens["expires_at_seconds"],
                token_type=tokens.get("token_type"),
                extra=data.extra,
            )
            await storage.store_token_data_by_resource_server({rs: renewed})
            return renewed

    async def index(request: Request) -> Response:
        return page(request, problem=None if has_credentials(config) else missing)

    async def login(request: Request) -> Response:
        if not has_credentials(config):
            return page(request, problem=missing, status_code=503)
        state = secrets.token_urlsafe(24)
        request.session["oauth_state"] = state
        client = login_client(config)  # starting the flow and its URL need no network
        client.oauth2_start_flow(redirect_uri, SCOPES, refresh_tokens=True, state=state)
        return RedirectResponse(client.oauth2_get_authorize_url(), status_code=302)

    async def callback(request: Request) -> Response:
        query = request.query_params
        if "error" in query:
            return page(
                request, problem=f"Login was not completed: {query['error']}", status_code=400
            )
        expected = request.session.pop("oauth_state", None)
        if not expected or not _same(expected, query.get("state", "")):
            problem = "This login link is stale or forged; please log in again."
            return page(request, problem=problem, status_code=400)
        client = login_client(config)
        client.oauth2_start_flow(redirect_uri, SCOPES, refresh_tokens=True, state=expected)
        tokens = await run_in_threadpool(
            client.oauth2_exchange_code_for_tokens, query.get("code", "")
        )
        claims = await run_in_threadpool(tokens.decode_id_token)
        await storage_for(claims["sub"]).store_token_response(tokens)
        request.session.clear()
        request.session.update(
            identity_id=claims["sub"],
            name=claims.get("preferred_username") or claims["sub"],
            csrf=secrets.token_urlsafe(24),
        )
        return RedirectResponse("/", status_code=302)

    async def profile(request: Request) -> Response:
        identity_id = request.session.get("identity_id")
        if identity_id is None:
            return RedirectResponse("/login", status_code=302)
        storage = storage_for(identity_id)
        try:
            data = await fresh_token(storage, AUTH)
            authorizer = globus_sdk.AccessTokenAuthorizer(data.access_token)
            userinfo = await run_in_threadpool(
                globus_sdk.AuthClient(authorizer=authorizer).userinfo
            )
        except (MissingTokenDataError, globus_sdk.AuthAPIError):
            # Nothing stored, or Auth refused the token or the refresh: log in again.
            request.session.clear()
            return RedirectResponse("/login", status_code=302)
        stored = await storage.get_token_data_by_resource_server()
        return page(request, userinfo=userinfo.data, tokens=stored)

    async def logout(request: Request) -> Response:
        identity_id, csrf = request.session.get("identity_id"), request.session.get("csrf")
        if identity_id is None or not csrf:
            return RedirectResponse("/", status_code=303)
        # a urlencoded form of one field: parsed here rather than with python-multipart
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        if not _same(csrf, form.get("csrf", "")):
            return PlainTextResponse("Bad Request", status_code=400)
        storage = storage_for(identity_id)
        stored = await storage.get_token_data_by_resource_server()
        tokens = [t for d in stored.values() for t in (d.access_token, d.refresh_token) if t]
        await run_in_threadpool(_revoke, login_client(config), tokens)
        await storage.remove_namespace()
        request.session.clear()
        return RedirectResponse("/", status_code=303)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Check (or create) the schema at start-up rather than in a user's first request.
        await AsyncSQLAlchemyTokenStorage(engine).check_schema()
        yield
        await engine.dispose()

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/login", login),
            Route("/callback", callback),
            Route("/profile", profile),
            Route("/logout", logout, methods=["POST"]),
        ],
        middleware=[
            Middleware(
                SessionMiddleware,
                secret_key=config["SECRET_KEY"],
                same_site="lax",
                https_only=config["BASE_URL"].startswith("https:"),
            )
        ],
        lifespan=lifespan,
    )
    app.state.engine = engine
    app.state.storage_for = storage_for
    return app


def _revoke(client: globus_sdk.ConfidentialAppAuthClient, tokens: list[str]) -> None:
    """Revoke tokens at Globus Auth; removing them from the database matters more."""
    for token in tokens:
        with contextlib.suppress(globus_sdk.GlobusAPIError):
            client.oauth2_revoke_token(token)

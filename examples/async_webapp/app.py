"""A Starlette (ASGI) application that logs users in with Globus and keeps their tokens in SQL.

The async twin of ``examples/webapp``, with the same pages, settings
(``examples/settings.py``) and namespaces (the two can share a database and a Globus
client registration):

- ``/login`` and ``/callback``: Globus Auth's authorization code flow, with refresh
  tokens; the tokens land in the user's own namespace of one shared database.
- ``/profile``: calls Globus Auth's userinfo with the user's stored token, refreshed
  first if it has expired.
- ``/logout``: revokes the user's tokens and removes them from the database.

Token storage calls are awaited on the event loop: one ``AsyncTokenStore`` (one async
engine), made in the app's lifespan, serves every request of a worker process.
globus-sdk is synchronous, so each of its network calls (code exchange, id_token check,
userinfo, refresh, revoke) runs in a worker thread: a slow Globus Auth holds up only the
request that waits for it.

``AsyncTokenStore.fresh_token_data`` refreshes an expired token once, however many
requests need it: refreshes are coordinated across every worker process through the database.
"""

from __future__ import annotations

import contextlib
import secrets
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

from tokenstore_sql import AsyncTokenStore, MissingTokenDataError

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


def _same(expected: str, given: str) -> bool:
    # compare_digest refuses non-ASCII str; a forged value may hold anything
    return secrets.compare_digest(expected.encode(), given.encode())


def create_app(settings: Mapping[str, Any] | None = None) -> Starlette:
    """Build the Starlette app; its lifespan holds the ``AsyncTokenStore`` (one engine)."""
    config = complete_settings(settings)
    redirect_uri = callback_url(config["BASE_URL"])
    missing = MISSING_CREDENTIALS.format(redirect_uri=redirect_uri)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # One store per worker process, for every user; its engine is disposed of at shutdown.
        url, label = config["TOKENSTORE_SQL_URL"], config["TOKENSTORE_APP"]
        async with AsyncTokenStore(url, app=label) as store:
            # Check (or create) the schema at start-up rather than in a user's first request.
            await store.check_schema()
            app.state.store = store
            yield

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
        store: AsyncTokenStore = request.app.state.store
        client = login_client(config)
        client.oauth2_start_flow(redirect_uri, SCOPES, refresh_tokens=True, state=expected)
        tokens = await run_in_threadpool(
            client.oauth2_exchange_code_for_tokens, query.get("code", "")
        )
        claims = await run_in_threadpool(tokens.decode_id_token)
        await store.for_user(claims["sub"]).store_token_response(tokens)
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
        store: AsyncTokenStore = request.app.state.store
        try:
            data = await store.fresh_token_data(identity_id, AUTH, login_client(config))
            authorizer = globus_sdk.AccessTokenAuthorizer(data.access_token)
            userinfo = await run_in_threadpool(
                globus_sdk.AuthClient(authorizer=authorizer).userinfo
            )
        except (MissingTokenDataError, globus_sdk.AuthAPIError):
            # Nothing stored, or Auth refused the token or the refresh: log in again.
            request.session.clear()
            return RedirectResponse("/login", status_code=302)
        stored = await store.for_user(identity_id).get_token_data_by_resource_server()
        return page(request, userinfo=userinfo.data, tokens=stored)

    async def logout(request: Request) -> Response:
        identity_id, csrf = request.session.get("identity_id"), request.session.get("csrf")
        if identity_id is None or not csrf:
            return RedirectResponse("/", status_code=303)
        # a urlencoded form of one field: parsed here rather than with python-multipart
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        if not _same(csrf, form.get("csrf", "")):
            return PlainTextResponse("Bad Request", status_code=400)
        store: AsyncTokenStore = request.app.state.store
        stored = await store.for_user(identity_id).get_token_data_by_resource_server()
        tokens = [t for d in stored.values() for t in (d.access_token, d.refresh_token) if t]
        await run_in_threadpool(_revoke, login_client(config), tokens)
        await store.remove_user(identity_id)
        request.session.clear()
        return RedirectResponse("/", status_code=303)

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
    return app


def _revoke(client: globus_sdk.ConfidentialAppAuthClient, tokens: list[str]) -> None:
    """Revoke tokens at Globus Auth; removing them from the database matters more."""
    for token in tokens:
        with contextlib.suppress(globus_sdk.GlobusAPIError):
            client.oauth2_revoke_token(token)

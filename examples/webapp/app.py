"""A Flask web application that logs users in with Globus and keeps their tokens in SQL.

- ``/login`` and ``/callback``: Globus Auth's authorization code flow, with refresh
  tokens; the tokens land in the user's own namespace of one shared database.
- ``/profile``: calls Globus Auth's userinfo with the user's stored token. An expired
  access token is refreshed through the SDK, once across every worker process.
- ``/logout``: revokes the user's tokens and removes them from the database.

Configuration comes from the environment (see ``settings_from_environment``) or from
the mapping given to :func:`create_app` (as the tests do).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import globus_sdk
from flask import Flask, abort, redirect, render_template_string, request, session, url_for
from werkzeug.wrappers.response import Response

from tokenstore_sql import MissingTokenDataError, TokenStore

AUTH = "auth.globus.org"
SCOPES = "openid profile email"
DEFAULT_URL = "sqlite:///webapp-tokens.db"
DEFAULT_BASE_URL = "http://localhost:5000"
MISSING_CREDENTIALS = (
    "GLOBUS_CLIENT_ID and GLOBUS_CLIENT_SECRET are not set. Register a confidential client "
    "(a portal or science gateway) at https://app.globus.org/settings/developers with the "
    "redirect URL {redirect_uri}, then start the app again with both variables set."
)

PAGE = """<!doctype html>
<title>tokenstore-sql example</title>
<h1>tokenstore-sql example</h1>
{% if problem %}<p><strong>{{ problem }}</strong></p>{% endif %}
{% if name %}
  <p>Signed in as {{ name }}.</p>
  <p><a href="{{ url_for('profile') }}">Your Globus profile and stored tokens</a></p>
  <form method="post" action="{{ url_for('logout') }}">
    <input type="hidden" name="csrf" value="{{ csrf }}">
    <button>Log out</button>
  </form>
{% elif not problem %}
  <p><a href="{{ url_for('login') }}">Log in with Globus</a></p>
{% endif %}
{% if userinfo %}
  <h2>Globus Auth says</h2>
  <p>{{ userinfo.get('name') }} ({{ userinfo.get('preferred_username') }}),
     identity {{ userinfo.get('sub') }}</p>
  <h2>Stored for you</h2>
  <table>
    <tr><th>resource server</th><th>scope</th><th>access token expires</th></tr>
    {% for t in tokens %}
    <tr><td>{{ t.resource_server }}</td><td>{{ t.scope }}</td><td>{{ t.expires }}</td></tr>
    {% endfor %}
  </table>
{% endif %}
"""


def settings_from_environment() -> dict[str, Any]:
    """Read the app's settings from environment variables."""
    return {
        "GLOBUS_CLIENT_ID": os.environ.get("GLOBUS_CLIENT_ID", ""),
        "GLOBUS_CLIENT_SECRET": os.environ.get("GLOBUS_CLIENT_SECRET", ""),
        "TOKENSTORE_SQL_URL": os.environ.get("TOKENSTORE_SQL_URL") or DEFAULT_URL,
        "TOKENSTORE_APP": os.environ.get("TOKENSTORE_APP") or None,
        "BASE_URL": os.environ.get("WEBAPP_BASE_URL")
        or f"http://localhost:{os.environ.get('WEBAPP_PORT') or 5000}",
        # Signs the session cookie; without one, sessions end when the process restarts.
        "SECRET_KEY": os.environ.get("WEBAPP_SECRET_KEY") or secrets.token_hex(32),
    }


def create_app(settings: Mapping[str, Any] | None = None) -> Flask:
    """Build the Flask app and its ``TokenStore`` (one engine for every user)."""
    app = Flask(__name__)
    app.config.update(settings_from_environment() if settings is None else settings)
    app.config.setdefault("BASE_URL", DEFAULT_BASE_URL)
    app.config.setdefault("TOKENSTORE_APP", None)
    store = TokenStore(app.config["TOKENSTORE_SQL_URL"], app=app.config["TOKENSTORE_APP"])
    app.extensions["token_store"] = store
    redirect_uri = app.config["BASE_URL"].rstrip("/") + "/callback"

    def configured() -> bool:
        return bool(app.config.get("GLOBUS_CLIENT_ID") and app.config.get("GLOBUS_CLIENT_SECRET"))

    def login_client() -> globus_sdk.ConfidentialAppAuthClient:
        # One per request: the client holds the state of the flow it starts.
        return globus_sdk.ConfidentialAppAuthClient(
            app.config["GLOBUS_CLIENT_ID"], app.config["GLOBUS_CLIENT_SECRET"]
        )

    def page(**values: Any) -> str:
        return render_template_string(
            PAGE, name=session.get("name"), csrf=session.get("csrf"), **values
        )

    def forget_user(identity_id: str) -> None:
        """Revoke the user's tokens at Globus Auth, then remove them from the database."""
        client = login_client()
        for data in store.for_user(identity_id).get_token_data_by_resource_server().values():
            for token in (data.access_token, data.refresh_token):
                # removing the tokens below is what matters to this app, revoked or not
                with contextlib.suppress(globus_sdk.GlobusAPIError):
                    if token:
                        client.oauth2_revoke_token(token)
        store.remove_user(identity_id)

    @app.get("/")
    def index() -> str:
        problem = None if configured() else MISSING_CREDENTIALS.format(redirect_uri=redirect_uri)
        return page(problem=problem)

    @app.get("/login")
    def login() -> Response | tuple[str, int]:
        if not configured():
            return page(problem=MISSING_CREDENTIALS.format(redirect_uri=redirect_uri)), 503
        state = secrets.token_urlsafe(24)
        session["oauth_state"] = state
        client = login_client()
        client.oauth2_start_flow(redirect_uri, SCOPES, refresh_tokens=True, state=state)
        return redirect(client.oauth2_get_authorize_url())

    @app.get("/callback")
    def callback() -> Response | tuple[str, int]:
        if "error" in request.args:
            return page(problem=f"Login was not completed: {request.args['error']}"), 400
        expected = session.pop("oauth_state", None)
        if not expected or not secrets.compare_digest(expected, request.args.get("state", "")):
            return page(problem="This login link is stale or forged; please log in again."), 400
        client = login_client()
        client.oauth2_start_flow(redirect_uri, SCOPES, refresh_tokens=True, state=expected)
        tokens = client.oauth2_exchange_code_for_tokens(request.args.get("code", ""))
        claims = tokens.decode_id_token()
        identity_id = claims["sub"]
        store.for_user(identity_id).store_token_response(tokens)
        session.clear()
        session.update(
            identity_id=identity_id,
            name=claims.get("preferred_username") or identity_id,
            csrf=secrets.token_urlsafe(24),
        )
        return redirect(url_for("index"))

    @app.get("/profile")
    def profile() -> Response | str:
        identity_id = session.get("identity_id")
        if identity_id is None:
            return redirect(url_for("login"))
        try:
            authorizer = store.authorizer(identity_id, AUTH, login_client())
            userinfo = globus_sdk.AuthClient(authorizer=authorizer).userinfo()
        except (MissingTokenDataError, globus_sdk.AuthAPIError):
            # Nothing stored, or Auth refused the refresh token: a new login is needed.
            session.clear()
            return redirect(url_for("login"))
        stored = store.for_user(identity_id).get_token_data_by_resource_server()
        tokens = [
            {
                "resource_server": data.resource_server,
                "scope": data.scope,
                "expires": datetime.fromtimestamp(data.expires_at_seconds, timezone.utc),
            }
            for data in stored.values()
        ]
        return page(userinfo=userinfo.data, tokens=tokens)

    @app.post("/logout")
    def logout() -> Response:
        identity_id = session.get("identity_id")
        csrf = session.get("csrf")
        if identity_id is None or not csrf:
            return redirect(url_for("index"))
        if not secrets.compare_digest(csrf, request.form.get("csrf", "")):
            abort(400)
        forget_user(identity_id)
        session.clear()
        return redirect(url_for("index"))

    return app


def explain_missing_settings(settings: Mapping[str, Any], stream: Any = sys.stderr) -> None:
    """Say at start-up what is missing for a real login, without stopping the app."""
    if not (settings.get("GLOBUS_CLIENT_ID") and settings.get("GLOBUS_CLIENT_SECRET")):
        redirect_uri = str(settings.get("BASE_URL", DEFAULT_BASE_URL)).rstrip("/") + "/callback"
        print(MISSING_CREDENTIALS.format(redirect_uri=redirect_uri), file=stream)

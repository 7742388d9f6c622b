"""A Flask web application that logs users in with Globus and keeps their tokens in SQL.

- ``/login`` and ``/callback``: Globus Auth's authorization code flow, with refresh
  tokens; the tokens land in the user's own namespace of one shared database.
- ``/profile``: calls Globus Auth's userinfo with the user's stored token. An expired
  access token is refreshed through the SDK, once across every worker process.
- ``/logout``: revokes the user's tokens and removes them from the database.

Configuration comes from the environment (see ``settings_from_environment`` in
``examples/settings.py``, shared with ``examples/async_webapp``) or from the mapping
given to :func:`create_app` (as the tests do).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import globus_sdk
from flask import Flask, abort, redirect, render_template_string, request, session, url_for
from werkzeug.wrappers.response import Response

from tokenstore_sql import MissingTokenDataError, TokenStore

from ..settings import (
    AUTH,
    MISSING_CREDENTIALS,
    SCOPES,
    callback_url,
    complete_settings,
    has_credentials,
    login_client,
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


def create_app(settings: Mapping[str, Any] | None = None) -> Flask:
    """Build the Flask app and its ``TokenStore`` (one engine for every user)."""
    app = Flask(__name__)
    app.config.update(complete_settings(settings))
    store = TokenStore(app.config["TOKENSTORE_SQL_URL"], app=app.config["TOKENSTORE_APP"])
    store.check_schema()  # at start-up, not in the first request: fail early
    app.extensions["token_store"] = store
    redirect_uri = callback_url(app.config["BASE_URL"])
    missing = MISSING_CREDENTIALS.format(redirect_uri=redirect_uri)

    def page(**values: Any) -> str:
        return render_template_string(
            PAGE, name=session.get("name"), csrf=session.get("csrf"), **values
        )

    def forget_user(identity_id: str) -> None:
        """Revoke the user's tokens at Globus Auth, then remove them from the database."""
        client = login_client(app.config)
        for data in store.for_user(identity_id).get_token_data_by_resource_server().values():
            for token in (data.access_token, data.refresh_token):
                # removing the tokens below is what matters to this app, revoked or not
                with contextlib.suppress(globus_sdk.GlobusAPIError):
                    if token:
                        client.oauth2_revoke_token(token)
        store.remove_user(identity_id)

    @app.get("/")
    def index() -> str:
        return page(problem=None if has_credentials(app.config) else missing)

    @app.get("/login")
    def login() -> Response | tuple[str, int]:
        if not has_credentials(app.config):
            return page(problem=missing), 503
        state = secrets.token_urlsafe(24)
        session["oauth_state"] = state
        client = login_client(app.config)
        client.oauth2_start_flow(redirect_uri, SCOPES, refresh_tokens=True, state=state)
        return redirect(client.oauth2_get_authorize_url())

    @app.get("/callback")
    def callback() -> Response | tuple[str, int]:
        if "error" in request.args:
            return page(problem=f"Login was not completed: {request.args['error']}"), 400
        expected = session.pop("oauth_state", None)
        if not expected or not secrets.compare_digest(expected, request.args.get("state", "")):
            return page(problem="This login link is stale or forged; please log in again."), 400
        client = login_client(app.config)
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
            authorizer = store.authorizer(identity_id, AUTH, login_client(app.config))
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

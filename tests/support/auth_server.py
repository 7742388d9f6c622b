"""Globus Auth over real HTTP on 127.0.0.1, for a real browser and an unmodified SDK.

:class:`~tests.fake_auth.FakeAuth` answers the token, revoke, userinfo and OpenID
endpoints; this module adds what only a browser meets: the authorize page, where one
button signs in the identity the test chose and sends the browser back to the app's
callback with a code. Point globus-sdk at it with ``GLOBUS_SDK_SERVICE_URL_AUTH``.
"""

from __future__ import annotations

import base64
import html
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlparse

from .fake_auth import FakeAuth

AUTHORIZE = "/v2/oauth2/authorize"
APPROVE = "/v2/oauth2/authorize/approve"

_PAGE = """<!doctype html>
<title>Globus Auth (local stand-in)</title>
<h1>Globus Auth (local stand-in)</h1>
<p>{client} asks to sign you in.</p>
<form method="get" action="{approve}">
  <input type="hidden" name="redirect_uri" value="{redirect_uri}">
  <input type="hidden" name="state" value="{state}">
  <button id="approve">Sign in as {name}</button>
</form>
"""


@dataclass
class AuthServer:
    """The identity that signs in on the authorize page, and what the browser asked."""

    auth: FakeAuth
    identity_id: str
    name: str
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    refused_clients: int = 0  # token or revoke calls without this client's credentials
    base_url: str = ""  # set once serving

    def client_is_ours(self, authorization: str) -> bool:
        """Tell whether a Basic ``Authorization`` header names the fake's client."""
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            client_id, _, _secret = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            return False
        return client_id == self.auth.client_id

    def authorize_page(self, query: dict[str, str]) -> tuple[int, str]:
        """Answer GET /v2/oauth2/authorize: the page with the sign-in button."""
        self.authorize_requests.append(query)
        if query.get("client_id") != self.auth.client_id or query.get("response_type") != "code":
            return 400, "<!doctype html><title>error</title><p>unknown client or flow</p>"
        return 200, _PAGE.format(
            client=html.escape(query["client_id"]),
            approve=APPROVE,
            redirect_uri=html.escape(query.get("redirect_uri", "")),
            state=html.escape(query.get("state", "")),
            name=html.escape(self.name),
        )

    def approve(self, query: dict[str, str]) -> str:
        """Answer the button: the app's callback URL, with a fresh code and the state."""
        code = self.auth.login_code(self.identity_id, self.name)
        back = urlencode({"code": code, "state": query.get("state", "")})
        return f"{query['redirect_uri']}?{back}"


def _handler(server: AuthServer) -> type[BaseHTTPRequestHandler]:
    auth = server.auth

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = dict(parse_qsl(url.query))
            if url.path == AUTHORIZE:
                status, page = server.authorize_page(query)
                self._send(status, page.encode(), "text/html; charset=utf-8")
            elif url.path == APPROVE:
                self.send_response(302)
                self.send_header("Location", server.approve(query))
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif url.path == "/v2/oauth2/userinfo":
                self._json(auth.userinfo(self.headers.get("Authorization", "")))
            elif url.path == "/.well-known/openid-configuration":
                # the keys are fetched from here too, not from auth.globus.org
                configuration = auth.openid_configuration()
                configuration["jwks_uri"] = f"{server.base_url}jwk.json"
                self._json((200, configuration))
            elif url.path == "/jwk.json":
                self._json((200, auth.jwks()))
            else:
                self._json((404, {"error": "not_found"}))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = dict(parse_qsl(self.rfile.read(length).decode()))
            path = urlparse(self.path).path
            if path not in ("/v2/oauth2/token", "/v2/oauth2/token/revoke"):
                self._json((404, {"error": "not_found"}))
            elif not server.client_is_ours(self.headers.get("Authorization", "")):
                server.refused_clients += 1
                self._json((401, {"error": "invalid_client"}))
            elif path == "/v2/oauth2/token":
                self._json(auth.token(form))
            else:
                self._json(auth.revoke(form))

        def _json(self, result: tuple[int, dict[str, Any]]) -> None:
            status, body = result
            self._send(status, json.dumps(body).encode(), "application/json")

        def _send(self, status: int, data: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the tests assert on what was asked, not on a log

    return Handler


@contextmanager
def serving_auth(server: AuthServer) -> Iterator[str]:
    """Serve Globus Auth on 127.0.0.1 and yield its base URL (ends with a slash)."""
    http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
    server.base_url = f"http://127.0.0.1:{http.server_address[1]}/"
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.base_url
    finally:
        http.shutdown()
        http.server_close()
        thread.join(timeout=5)

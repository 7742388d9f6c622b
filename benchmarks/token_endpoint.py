"""A stand-in for Globus Auth's token endpoint, served over HTTP on 127.0.0.1.

It answers ``POST /v2/oauth2/token`` with ``grant_type=refresh_token`` as Auth does for
a client whose refresh tokens rotate: a live refresh token buys a new access token and a
new refresh token, and is spent; a spent or unknown one gets HTTP 400
``{"error": "invalid_grant"}``. Each answer comes after a configurable delay, and the
endpoint counts the refresh calls and the ``invalid_grant`` answers. Worker processes
reach it by setting ``GLOBUS_SDK_SERVICE_URL_AUTH`` to the URL :func:`serving` yields.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import parse_qsl

AUTH_URL_VARIABLE: Final = "GLOBUS_SDK_SERVICE_URL_AUTH"
TOKEN_PATH: Final = "/v2/oauth2/token"
LIFETIME_SECONDS: Final = 172_800  # what Auth gives an access token: 48 hours


class TokenEndpoint:
    """Rotating refresh tokens for one resource server, and counters of what was asked.

    :param resource_server: the resource server every token is for
    :param scope: the scope every token carries
    :param delay: seconds each refresh takes before it is answered
    """

    def __init__(self, resource_server: str, scope: str, delay: float = 0.0) -> None:
        self.resource_server = resource_server
        self.scope = scope
        self.delay = delay
        self.refresh_calls = 0
        self.invalid_grants = 0
        self.other_requests = 0
        self._live: set[str] = set()
        self._lock = threading.Lock()

    def issue(self) -> dict[str, Any]:
        """Issue a new access and refresh token, as a login (or a refresh) does."""
        refresh_token = f"storm-refresh-{secrets.token_hex(16)}"
        with self._lock:
            self._live.add(refresh_token)
        return {
            "access_token": f"storm-access-{secrets.token_hex(16)}",
            "refresh_token": refresh_token,
            "expires_in": LIFETIME_SECONDS,
            "scope": self.scope,
            "token_type": "Bearer",
            "resource_server": self.resource_server,
            "other_tokens": [],
        }

    def counts(self) -> dict[str, int]:
        """Give the counters: ``refresh_calls``, ``invalid_grants``, ``other_requests``."""
        with self._lock:
            return {
                "refresh_calls": self.refresh_calls,
                "invalid_grants": self.invalid_grants,
                "other_requests": self.other_requests,
            }

    def is_live(self, refresh_token: str | None) -> bool:
        """Tell whether a refresh token would still be accepted."""
        with self._lock:
            return refresh_token in self._live

    def refresh(self, refresh_token: str) -> tuple[int, dict[str, Any]]:
        """Spend ``refresh_token`` after the delay; give the HTTP status and body."""
        with self._lock:
            self.refresh_calls += 1
        time.sleep(self.delay)
        with self._lock:
            if refresh_token not in self._live:
                self.invalid_grants += 1
                return 400, {"error": "invalid_grant"}
            self._live.discard(refresh_token)
        return 200, self.issue()

    def answer(self, path: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """Answer one POST request."""
        if path.rstrip("/") == TOKEN_PATH and form.get("grant_type") == "refresh_token":
            return self.refresh(form.get("refresh_token", ""))
        with self._lock:
            self.other_requests += 1
        return 400, {"error": "unsupported_grant_type"}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # every worker thread of every process may connect at once


@contextmanager
def serving(endpoint: TokenEndpoint) -> Iterator[str]:
    """Serve ``endpoint`` on 127.0.0.1 and yield its base URL, for AUTH_URL_VARIABLE."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = dict(parse_qsl(self.rfile.read(length).decode()))
            status, body = endpoint.answer(self.path, form)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="token-endpoint", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

"""A small Globus Auth, offline: authorization codes, rotating refresh tokens, userinfo.

The same fake answers through ``responses`` (in-process tests) and through a real HTTP
server on 127.0.0.1 (tests whose workers run in other processes). It signs real
id_tokens with a key made for the test, rotates refresh tokens, and refuses a refresh
token that was already spent, as Auth does for rotating clients.
"""

from __future__ import annotations

import json
import secrets
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import jwt
import responses
from cryptography.hazmat.primitives.asymmetric import rsa

AUTH = "https://auth.globus.org"
AUTH_RS = "auth.globus.org"
TRANSFER = "transfer.api.globus.org"
TRANSFER_SCOPE = "urn:globus:auth:scope:transfer.api.globus.org:all"
SCOPES = {AUTH_RS: "openid profile email", TRANSFER: TRANSFER_SCOPE}
LIFETIME = 172800


@dataclass
class _Grant:
    identity_id: str
    resource_server: str


@dataclass
class FakeAuth:
    """Globus Auth's token, revoke and userinfo endpoints for one client."""

    client_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    refresh_delay: float = 0.0
    refresh_delays: list[float] = field(default_factory=list)  # per call, before refresh_delay
    names: dict[str, str] = field(default_factory=dict)  # identity -> preferred_username
    full_names: dict[str, str] = field(default_factory=dict)  # userinfo's name, if not that
    refresh_calls: int = 0
    rejected_refreshes: int = 0
    abandoned_refreshes: int = 0  # the caller hung up before Auth answered: nothing spent
    successors: dict[str, str] = field(default_factory=dict)  # spent refresh token -> new one
    refresh_started: threading.Event = field(default_factory=threading.Event)
    code_exchanges: int = 0
    revoked: list[str] = field(default_factory=list)
    userinfo_tokens: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._codes: dict[str, str] = {}
        self._refresh: dict[str, _Grant] = {}
        self._spent: set[str] = set()
        self._access: dict[str, _Grant] = {}
        self._lock = threading.Lock()

    def login_code(self, identity_id: str, name: str | None = None) -> str:
        """Make the code Auth would hand the user's browser after a login."""
        code = f"code-{secrets.token_hex(8)}"
        with self._lock:
            self._codes[code] = identity_id
            self.names[identity_id] = name or f"user-{identity_id[:8]}"
        return code

    def access_owner(self, access_token: str) -> str | None:
        """Tell whose identity an access token was issued to (None: not ours)."""
        grant = self._access.get(access_token)
        return None if grant is None else grant.identity_id

    def grant(self, identity_id: str, resource_server: str) -> dict[str, Any]:
        """Issue tokens as a past login did, without going through a login."""
        with self._lock:
            return self._issue(_Grant(identity_id, resource_server))

    def is_live_refresh_token(self, refresh_token: str | None) -> bool:
        """Tell whether Auth would still accept a refresh token."""
        return refresh_token in self._refresh

    def _issue(self, grant: _Grant) -> dict[str, Any]:
        access = f"{grant.resource_server}-access-{secrets.token_hex(8)}"
        refresh = f"{grant.resource_server}-refresh-{secrets.token_hex(8)}"
        self._access[access] = grant
        self._refresh[refresh] = grant
        return {
            "access_token": access,
            "refresh_token": refresh,
            "scope": SCOPES[grant.resource_server],
            "expires_in": LIFETIME,
            "token_type": "Bearer",
            "resource_server": grant.resource_server,
        }

    def id_token(self, identity_id: str) -> str:
        """A signed id_token for an identity, as the SDK verifies it."""
        now = int(time.time())
        claims = {"sub": identity_id, "aud": self.client_id, "iss": AUTH, "iat": now}
        claims["exp"] = now + 600
        claims["preferred_username"] = self.names.get(identity_id, identity_id)
        return jwt.encode(claims, self._key, algorithm="RS512")

    def token(
        self, form: Mapping[str, str], still_wanted: Callable[[], bool] = lambda: True
    ) -> tuple[int, dict[str, Any]]:
        """Answer POST /v2/oauth2/token.

        ``still_wanted`` tells, after a slow refresh's delay, whether the caller is still
        there: a caller that hung up (killed) spends nothing.
        """
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            return self._exchange_code(form.get("code", ""))
        if grant_type == "refresh_token":
            return self._refresh_token(form.get("refresh_token", ""), still_wanted)
        return 400, {"error": "unsupported_grant_type"}

    def chain(self, refresh_token: str) -> list[str]:
        """Follow a refresh token through its rotations; the last one is the live one."""
        chain = [refresh_token]
        while chain[-1] in self.successors:
            chain.append(self.successors[chain[-1]])
        return chain

    def _exchange_code(self, code: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            identity_id = self._codes.pop(code, None)
            if identity_id is None:
                return 400, {"error": "invalid_grant"}
            self.code_exchanges += 1
            body = self._issue(_Grant(identity_id, AUTH_RS))
            body["id_token"] = self.id_token(identity_id)
            body["other_tokens"] = [self._issue(_Grant(identity_id, TRANSFER))]
        return 200, body

    def _refresh_token(
        self, refresh_token: str, still_wanted: Callable[[], bool]
    ) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.refresh_calls += 1
            delay = self.refresh_delays.pop(0) if self.refresh_delays else self.refresh_delay
        self.refresh_started.set()
        time.sleep(delay)  # a slow Auth widens the window for a race
        with self._lock:
            if not still_wanted():
                self.abandoned_refreshes += 1
                return 499, {"error": "client_closed_request"}
            grant = self._refresh.pop(refresh_token, None)
            if grant is None or refresh_token in self._spent:
                self.rejected_refreshes += 1
                return 400, {"error": "invalid_grant"}
            self._spent.add(refresh_token)
            body = self._issue(grant)
            self.successors[refresh_token] = body["refresh_token"]
            return 200, {**body, "other_tokens": []}

    def revoke(self, form: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        """Answer POST /v2/oauth2/token/revoke."""
        with self._lock:
            self.revoked.append(form.get("token", ""))
            self._access.pop(form.get("token", ""), None)
            self._refresh.pop(form.get("token", ""), None)
        return 200, {"active": False}

    def userinfo(self, authorization: str) -> tuple[int, dict[str, Any]]:
        """Answer GET /v2/oauth2/userinfo for the bearer of an auth.globus.org token."""
        token = authorization.removeprefix("Bearer ")
        grant = self._access.get(token)
        if grant is None or grant.resource_server != AUTH_RS:
            return 401, {"errors": [{"code": "UNAUTHORIZED"}]}
        self.userinfo_tokens.append(token)
        username = self.names[grant.identity_id]
        name = self.full_names.get(grant.identity_id, username)
        return 200, {"sub": grant.identity_id, "preferred_username": username, "name": name}

    def openid_configuration(self) -> dict[str, Any]:
        """Answer GET /.well-known/openid-configuration."""
        return {
            "issuer": AUTH,
            "jwks_uri": f"{AUTH}/jwk.json",
            "id_token_signing_alg_values_supported": ["RS512"],
        }

    def jwks(self) -> dict[str, Any]:
        """Answer GET /jwk.json."""
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key()))
        return {"keys": [public]}

    def install(self, mock: responses.RequestsMock) -> None:
        """Answer Auth's endpoints at auth.globus.org through ``responses``."""

        def form_of(request: Any) -> dict[str, str]:
            body = request.body or ""
            return dict(parse_qsl(body if isinstance(body, str) else body.decode()))

        def reply(result: tuple[int, dict[str, Any]]) -> tuple[int, dict[str, str], str]:
            status, body = result
            return status, {"Content-Type": "application/json"}, json.dumps(body)

        mock.add_callback(
            "POST", f"{AUTH}/v2/oauth2/token/revoke", lambda r: reply(self.revoke(form_of(r)))
        )
        mock.add_callback(
            "POST", f"{AUTH}/v2/oauth2/token", lambda r: reply(self.token(form_of(r)))
        )
        mock.add_callback(
            "GET",
            f"{AUTH}/v2/oauth2/userinfo",
            lambda r: reply(self.userinfo(r.headers.get("Authorization", ""))),
        )
        mock.get(f"{AUTH}/.well-known/openid-configuration", json=self.openid_configuration())
        mock.get(f"{AUTH}/jwk.json", json=self.jwks())


@contextmanager
def mocked(auth: FakeAuth) -> Iterator[responses.RequestsMock]:
    """Answer Auth in this process; any other HTTP request fails the test."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        auth.install(mock)
        yield mock


def _still_connected(connection: socket.socket) -> bool:
    """Tell whether the client of a request is still there (it sent nothing more)."""
    readable, _, _ = select.select([connection], [], [], 0)
    if not readable:
        return True
    try:
        return connection.recv(1, socket.MSG_PEEK) != b""
    except OSError:
        return False


@contextmanager
def serving(auth: FakeAuth) -> Iterator[str]:
    """Serve the token endpoint on 127.0.0.1 and yield the base URL for the SDK."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = dict(parse_qsl(self.rfile.read(length).decode()))
            status, body = auth.token(form, lambda: _still_connected(self.connection))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

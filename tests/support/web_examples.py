"""What the tests of the two example web apps (Flask and Starlette) share.

Neither Flask nor Starlette is imported here: the Flask app's tests must not need
Starlette, nor the Starlette app's tests Flask.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from sqlalchemy import URL

from . import REPO_ROOT
from .fake_auth import FakeAuth


def app_settings(auth: FakeAuth, database_url: URL) -> dict[str, Any]:
    """Settings for either app: the fake Auth's client, and the test's database."""
    return {
        "GLOBUS_CLIENT_ID": auth.client_id,
        "GLOBUS_CLIENT_SECRET": "client-secret",
        "TOKENSTORE_SQL_URL": database_url.render_as_string(hide_password=False),
        # an app label of this test's own keeps it apart in a shared database
        "TOKENSTORE_APP": f"test-{uuid.uuid4().hex[:8]}",
        "SECRET_KEY": "test-secret-key",
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ExampleServer:
    """An example app started by its command, and what it served and printed."""

    port: int
    index: str = ""  # its first answer to GET /; empty if none came in time
    stderr: str = ""  # all it printed there, once it has stopped

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextmanager
def serve_example(module: str, cwd: Path) -> Iterator[ExampleServer]:
    """Run ``python -m <module>`` in ``cwd`` as the README says, and stop it on leaving.

    The app gets a free port and neither Globus credentials nor ``TOKENSTORE_SQL_URL``,
    so it starts on its default SQLite file in ``cwd``. It is yielded once it has
    answered ``/``, or after 15 seconds without an answer.
    """
    server = ExampleServer(port=free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLOBUS_CLIENT")}
    env.update(WEBAPP_PORT=str(server.port), PYTHONPATH=str(REPO_ROOT))
    env.pop("TOKENSTORE_SQL_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", module],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not server.index:
            try:
                with urllib.request.urlopen(server.url("/"), timeout=2) as reply:
                    server.index = reply.read().decode()
            except OSError:
                assert process.poll() is None, process.communicate()[1]
                time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        _, server.stderr = process.communicate(timeout=10)


def login_callback(auth: FakeAuth, login: Any, identity_id: str, name: str) -> dict[str, str]:
    """The callback's query for a user who logs in at Auth, from the app's ``/login`` answer.

    Checks that ``/login`` sent the browser to Globus Auth asking for refresh tokens.
    """
    assert login.status_code == 302
    authorize = urlparse(login.headers["location"])
    assert authorize.netloc == "auth.globus.org"
    query = parse_qs(authorize.query)
    assert query["access_type"] == ["offline"]  # refresh tokens were asked for
    return {"code": auth.login_code(identity_id, name), "state": query["state"][0]}

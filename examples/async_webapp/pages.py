"""The example's one HTML page, every value escaped (no token is ever shown)."""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse

from tokenstore_sql import TokenStorageData


def page(
    request: Request,
    *,
    problem: str | None = None,
    userinfo: Mapping[str, Any] | None = None,
    tokens: Mapping[str, TokenStorageData] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """Render the one page: sign-in state, a problem, the profile and stored tokens."""
    e, name = html.escape, request.session.get("name")
    out = ["<!doctype html><title>tokenstore-sql example</title><h1>tokenstore-sql example</h1>"]
    if problem:
        out.append(f"<p><strong>{e(problem)}</strong></p>")
    if name:
        out.append(
            f'<p>Signed in as {e(name)}.</p><p><a href="/profile">Your Globus profile and '
            'stored tokens</a></p><form method="post" action="/logout">'
            f'<input type="hidden" name="csrf" value="{e(request.session.get("csrf", ""))}">'
            "<button>Log out</button></form>"
        )
    elif not problem:
        out.append('<p><a href="/login">Log in with Globus</a></p>')
    if userinfo is not None:
        out.append(
            f"<h2>Globus Auth says</h2><p>{e(str(userinfo.get('name')))} "
            f"({e(str(userinfo.get('preferred_username')))}), identity "
            f"{e(str(userinfo.get('sub')))}</p><h2>Stored for you</h2><table><tr>"
            "<th>resource server</th><th>scope</th><th>access token expires</th></tr>"
        )
        for data in (tokens or {}).values():
            expires = datetime.fromtimestamp(data.expires_at_seconds, timezone.utc)
            out.append(
                f"<tr><td>{e(data.resource_server)}</td><td>{e(data.scope or '')}</td>"
                f"<td>{expires}</td></tr>"
            )
        out.append("</table>")
    return HTMLResponse("\n".join(out), status_code=status_code)

"""Run the example on http://localhost:5000 (``python -m examples.async_webapp``).

The settings are those of ``examples/webapp`` (see ``settings_from_environment`` in
``examples/settings.py``): the same Globus client, with the redirect URL
http://localhost:5000/callback, serves both.
This runs one uvicorn worker; any ASGI server can serve ``create_app()``, with as many
worker processes as you like.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import uvicorn
from sqlalchemy import make_url

from tokenstore_sql import AsyncTokenStore, TokenStoreError

from ..settings import explain_missing_settings, settings_from_environment
from .app import create_app


async def check_database(settings: dict[str, Any]) -> None:
    """Open the app's database once, creating the schema if it is new."""
    async with AsyncTokenStore(settings["TOKENSTORE_SQL_URL"]) as store:
        await store.check_schema()


def main() -> None:
    settings = settings_from_environment()
    explain_missing_settings(settings)
    try:  # the app opens its store in its lifespan: say what is wrong before serving
        asyncio.run(check_database(settings))
    except TokenStoreError as exc:  # down, unreachable, a driver missing: one line
        raise SystemExit(f"error: {exc}") from None
    app = create_app(settings)
    url = make_url(settings["TOKENSTORE_SQL_URL"]).render_as_string(hide_password=True)
    print(f"tokens are kept in {url}")
    port = int(os.environ.get("WEBAPP_PORT", "5000"))
    uvicorn.run(app, host="127.0.0.1", port=port)


if __name__ == "__main__":
    main()

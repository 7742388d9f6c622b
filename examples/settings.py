"""What the two example web apps share: their settings, and the Globus client they name.

``examples/webapp`` (Flask) and ``examples/async_webapp`` (Starlette) read the same
environment variables and ask Globus Auth for the same scopes, so one client
registration and one database serve both. This module imports only the standard
library and globus-sdk: neither app needs the other's framework installed.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Mapping
from typing import Any

import globus_sdk

AUTH = "auth.globus.org"
SCOPES = "openid profile email"
DEFAULT_URL = "sqlite:///webapp-tokens.db"
DEFAULT_BASE_URL = "http://localhost:5000"
MISSING_CREDENTIALS = (
    "GLOBUS_CLIENT_ID and GLOBUS_CLIENT_SECRET are not set. Register a confidential client "
    "(a portal or science gateway) at https://app.globus.org/settings/developers with the "
    "redirect URL {redirect_uri}, then start the app again with both variables set."
)


def settings_from_environment() -> dict[str, Any]:
    """Read the apps' settings from environment variables."""
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


def complete_settings(settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return the given settings (by default the environment's) over the defaults."""
    given = settings_from_environment() if settings is None else settings
    return {"BASE_URL": DEFAULT_BASE_URL, "TOKENSTORE_APP": None, **given}


def has_credentials(settings: Mapping[str, Any]) -> bool:
    """Tell whether the settings name a Globus client, as a real login needs."""
    return bool(settings.get("GLOBUS_CLIENT_ID") and settings.get("GLOBUS_CLIENT_SECRET"))


def callback_url(base_url: str) -> str:
    """Return the redirect URL under ``base_url`` that Globus Auth sends users back to."""
    return base_url.rstrip("/") + "/callback"


def login_client(settings: Mapping[str, Any]) -> globus_sdk.ConfidentialAppAuthClient:
    """Return a new client for the settings' Globus client registration."""
    # One per request: the client holds the state of the flow it starts.
    return globus_sdk.ConfidentialAppAuthClient(
        settings["GLOBUS_CLIENT_ID"], settings["GLOBUS_CLIENT_SECRET"]
    )


def explain_missing_settings(settings: Mapping[str, Any], stream: Any = sys.stderr) -> None:
    """Say at start-up what is missing for a real login, without stopping the app."""
    if not has_credentials(settings):
        redirect_uri = callback_url(str(settings.get("BASE_URL", DEFAULT_BASE_URL)))
        print(MISSING_CREDENTIALS.format(redirect_uri=redirect_uri), file=stream)

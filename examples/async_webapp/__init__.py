"""An example Starlette (ASGI) application: Globus login, per-user async token storage."""

from __future__ import annotations

from ..settings import settings_from_environment
from .app import create_app

__all__ = ["create_app", "settings_from_environment"]

"""An example Flask application: Globus login, per-user token storage in one database."""

from __future__ import annotations

from ..settings import settings_from_environment
from .app import create_app

__all__ = ["create_app", "settings_from_environment"]

"""What :class:`~tokenstore_sql.TokenStore` and its async twin share, whatever their engine.

The constructor (a URL or an engine, the app label put in every namespace, the settings
taken once for every storage handed out) and a repr that names the database without its
password.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import URL, Engine

from .engines import EngineOwnership, masked_url
from .namespaces import check_app_label, user_namespace
from .settings import SettingsOptions, StoreSettings, UsesSettings

if TYPE_CHECKING:  # the sync store must not load SQLAlchemy's asyncio extension
    from sqlalchemy.ext.asyncio import AsyncEngine
    from typing_extensions import Unpack

E = TypeVar("E", Engine, "AsyncEngine")


class AppStore(UsesSettings, EngineOwnership[E]):
    """A store's app label and settings; the engine is held by the store's engine owner.

    The store's class docstring documents the constructor's parameters.
    """

    app: str | None

    def __init__(
        self,
        url_or_engine: str | URL | E,
        *,
        app: str | None = None,
        settings: StoreSettings | None = None,
        **options: Unpack[SettingsOptions],
    ) -> None:
        if app is not None:
            check_app_label(app)
        self.app = app
        chosen = self._take_settings(settings, options)
        self._hold_engine(url_or_engine, chosen.engine_options)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(dialect={self.engine.dialect.name!r}, app={self.app!r}, "
            f"url={masked_url(self.engine.url)!r})"
        )

    def namespace_for(self, identity_id: str | uuid.UUID) -> str:
        """Return a user's namespace in this store (see :func:`~tokenstore_sql.user_namespace`)."""
        return user_namespace(identity_id, app=self.app)

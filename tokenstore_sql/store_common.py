"""What :class:`~tokenstore_sql.TokenStore` and its async twin share, whatever their engine.

The app label put in every namespace, the settings taken once for every storage handed
out, and a repr that names the database without its password.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Generic, TypeVar

from sqlalchemy import Engine

from .engines import masked_url
from .namespaces import check_app_label, user_namespace
from .settings import SettingsOptions, StoreSettings, UsesSettings

if TYPE_CHECKING:  # the sync store must not load SQLAlchemy's asyncio extension
    from sqlalchemy.ext.asyncio import AsyncEngine

E = TypeVar("E", Engine, "AsyncEngine")


class AppStore(UsesSettings, Generic[E]):
    """A store's app label and settings; the engine is held by the store's engine owner."""

    app: str | None
    engine: E

    def _take_app(
        self, app: str | None, settings: StoreSettings | None, options: SettingsOptions
    ) -> StoreSettings:
        """Check and keep ``app``, then the settings (see :meth:`UsesSettings._take_settings`)."""
        if app is not None:
            check_app_label(app)
        self.app = app
        return self._take_settings(settings, options)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(dialect={self.engine.dialect.name!r}, app={self.app!r}, "
            f"url={masked_url(self.engine.url)!r})"
        )

    def namespace_for(self, identity_id: str | uuid.UUID) -> str:
        """Return a user's namespace in this store (see :func:`~tokenstore_sql.user_namespace`)."""
        return user_namespace(identity_id, app=self.app)

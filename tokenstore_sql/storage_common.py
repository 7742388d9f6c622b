"""What :class:`~tokenstore_sql.SQLAlchemyTokenStorage` and its async twin share.

The constructor (a URL or an engine, the namespace, the settings) and a repr that names
the database without its password. What each does once its engine is held differs: the
sync storage checks the schema at once, the async one at its first call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import URL

from ._sdk import TokenStorageData
from .codec import check_key, token_data_from_row
from .engines import EngineOwnership, masked_url
from .settings import SettingsOptions, StoreSettings, UsesSettings
from .statements import TokenStatements, statements_for
from .store_common import E

if TYPE_CHECKING:
    from typing_extensions import Unpack

DEFAULT_NAMESPACE = "DEFAULT"


class StorageCommon(UsesSettings, EngineOwnership[E]):
    """A storage's namespace, settings and statements; its engine owner holds the engine.

    The storage's class docstring documents the constructor's parameters.
    """

    namespace: str

    def __init__(
        self,
        url_or_engine: str | URL | E,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        settings: StoreSettings | None = None,
        **options: Unpack[SettingsOptions],
    ) -> None:
        check_key("namespace", namespace)
        chosen = self._take_settings(settings, options)
        engine = self._hold_engine(url_or_engine, chosen.engine_options)
        self._statements: TokenStatements = statements_for(chosen.placement)
        self._opened(engine, chosen, namespace)

    def _opened(self, engine: E, settings: StoreSettings, namespace: str) -> None:
        """Finish constructing, the engine held: each storage's own steps."""
        raise NotImplementedError

    def _by_resource_server(self, rows: Iterable[Mapping[str, Any]]) -> dict[str, TokenStorageData]:
        """Give the token data of rows read from this namespace, by resource server."""
        return {
            row["resource_server"]: token_data_from_row(self.namespace, row, self.keys)
            for row in rows
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(dialect={self.engine.dialect.name!r}, "
            f"namespace={self.namespace!r}, url={masked_url(self.engine.url)!r}, "
            f"table={str(self.placement)!r})"
        )

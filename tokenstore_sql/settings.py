"""``StoreSettings``: the namespace-independent choices a storage, a store and an admin job share.

Where the tables are, the encryption keys, the retry policy, what may happen to the
schema, and the options of an engine made from a URL: decided once, checked once, and
handed as one frozen object to :class:`~tokenstore_sql.SQLAlchemyTokenStorage`,
:class:`~tokenstore_sql.TokenStore`, their async twins and the admin operations
(:mod:`~tokenstore_sql.maintenance`, :mod:`~tokenstore_sql.rotation`,
:mod:`~tokenstore_sql.transfer`). Each field is also a keyword of those constructors,
under the same name, which replaces that field of ``settings=``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypedDict

from .crypto import KeyRing
from .errors import ConfigurationError
from .models import DEFAULT_PLACEMENT, Placement
from .retries import RetryPolicy

if TYPE_CHECKING:
    from typing_extensions import Unpack

# What may be passed as ``keys``: a ring, keys to build one from (one key bare), or None.
KeysInput = KeyRing | Iterable[str | bytes] | None
"""What ``keys=`` takes: a key ring, keys as text or bytes (newest first), or None."""


class SettingsOptions(TypedDict, total=False):
    """The fields of :class:`StoreSettings`, as keywords of a storage or store constructor."""

    placement: Placement
    keys: KeysInput
    retry: RetryPolicy
    create_schema: bool
    upgrade_schema: bool
    engine_options: Mapping[str, Any]


@dataclass(frozen=True)
class StoreSettings:
    """The settings every storage, store and admin operation on one database shares.

    :param placement: the tables' name prefix and PostgreSQL schema (default: tables
        ``tokenstore_sql_tokens`` and ``tokenstore_sql_version`` on the search path)
    :param keys: encryption keys (from ``tokenstore-sql generate-key``), newest first, or
        a :class:`~tokenstore_sql.crypto.KeyRing`: tokens are then stored encrypted with the
        first key and read with whichever key sealed them; None stores them in clear
    :param retry: how transient database failures are retried
    :param create_schema: create the schema when the database has none
    :param upgrade_schema: also upgrade a schema at an older revision (default: raise
        :class:`~tokenstore_sql.SchemaOutOfDateError` instead)
    :param engine_options: keyword arguments for :func:`tokenstore_sql.create_engine`
        (or :func:`~tokenstore_sql.create_async_engine`), used only when a URL is given
    :raises ConfigurationError: a field of the wrong kind, named in the message
    :raises EncryptionKeyError: ``keys`` holds no key, or a malformed one
    """

    placement: Placement = DEFAULT_PLACEMENT
    keys: KeyRing | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    create_schema: bool = True
    upgrade_schema: bool = False
    engine_options: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )

    def __init__(
        self,
        *,
        placement: Placement = DEFAULT_PLACEMENT,
        keys: KeysInput = None,
        retry: RetryPolicy | None = None,
        create_schema: bool = True,
        upgrade_schema: bool = False,
        engine_options: Mapping[str, Any] | None = None,
    ) -> None:
        _check_type("placement", placement, Placement)
        _check_type("retry", retry, RetryPolicy, optional=True)
        _check_type("create_schema", create_schema, bool)
        _check_type("upgrade_schema", upgrade_schema, bool)
        _check_type("engine_options", engine_options, Mapping, optional=True)
        if not isinstance(keys, KeyRing) and (
            isinstance(keys, Mapping) or (keys is not None and not isinstance(keys, Iterable))
        ):
            raise ConfigurationError(
                f"keys must be a KeyRing or a list of keys (got {type(keys).__name__})"
            )
        options = dict(engine_options or {})
        for name in options:
            if not isinstance(name, str):
                raise ConfigurationError(
                    f"engine_options must be keyed by option names (got {type(name).__name__})"
                )
        assign = object.__setattr__  # the dataclass is frozen; this is its constructor
        assign(self, "placement", placement)
        assign(self, "keys", KeyRing.coerce(keys))
        assign(self, "retry", retry or RetryPolicy())
        assign(self, "create_schema", create_schema)
        assign(self, "upgrade_schema", upgrade_schema)
        assign(self, "engine_options", MappingProxyType(options))

    @classmethod
    def of(
        cls, settings: StoreSettings | None, **options: Unpack[SettingsOptions]
    ) -> StoreSettings:
        """Return ``settings`` (default: the defaults), the fields in ``options`` replaced.

        :raises TypeError: an option that is not a field (say, a misspelt one)
        """
        if settings is not None and not isinstance(settings, StoreSettings):
            raise ConfigurationError(
                f"settings must be a StoreSettings (got {type(settings).__name__})"
            )
        if not options:  # the common case, on every construction: nothing to build
            # The defaults are frozen, their retry policy too: shared, not built anew.
            return DEFAULT_SETTINGS if settings is None else settings
        unknown = sorted(set(options) - set(_FIELDS))
        if unknown:
            raise TypeError(
                f"unknown setting {unknown[0]!r}; the settings are {', '.join(_FIELDS)}"
            )
        if settings is None:
            return cls(**options)
        merged = settings.as_options()
        merged.update(options)
        return cls(**merged)

    def as_options(self) -> SettingsOptions:
        """Give the fields as keywords, for :meth:`of` or a constructor."""
        return {
            "placement": self.placement,
            "keys": self.keys,
            "retry": self.retry,
            "create_schema": self.create_schema,
            "upgrade_schema": self.upgrade_schema,
            "engine_options": self.engine_options,
        }

    def replace(self, **options: Unpack[SettingsOptions]) -> StoreSettings:
        """Return a copy with the fields named in ``options`` replaced (checked again)."""
        return StoreSettings.of(self, **options)

    def __repr__(self) -> str:
        # KeyRing's repr names key ids only; engine options may hold a password, so only
        # their names are shown.
        return (
            f"StoreSettings(placement={self.placement!r}, keys={self.keys!r}, "
            f"retry={self.retry!r}, create_schema={self.create_schema!r}, "
            f"upgrade_schema={self.upgrade_schema!r}, "
            f"engine_options={sorted(self.engine_options)!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # The read-only mapping does not pickle; a plain copy of it does.
        options = {**self.as_options(), "engine_options": dict(self.engine_options)}
        return (_rebuild, (options,))


class UsesSettings:
    """What a storage or store keeps of its settings: the object, and the fields most used."""

    settings: StoreSettings

    @property
    def retry(self) -> RetryPolicy:
        """How transient database failures are retried (``settings.retry``)."""
        return self.settings.retry

    @property
    def keys(self) -> KeyRing | None:
        """The encryption keys, newest first, or None (``settings.keys``)."""
        return self.settings.keys

    @property
    def placement(self) -> Placement:
        """Where the tables are (``settings.placement``)."""
        return self.settings.placement

    def _take_settings(
        self, settings: StoreSettings | None, options: SettingsOptions
    ) -> StoreSettings:
        """Keep ``settings`` with ``options`` replacing fields (see :meth:`StoreSettings.of`).

        They are fixed from then on: pass another field at construction to change one.
        """
        self.settings = chosen = StoreSettings.of(settings, **options)
        return chosen


def _rebuild(options: SettingsOptions) -> StoreSettings:
    return StoreSettings(**options)


_FIELDS = tuple(f.name for f in dataclasses.fields(StoreSettings))


def _check_type(name: str, value: object, expected: type, *, optional: bool = False) -> None:
    if (optional and value is None) or isinstance(value, expected):
        return
    raise ConfigurationError(f"{name} must be a {expected.__name__} (got {type(value).__name__})")


DEFAULT_SETTINGS = StoreSettings()
"""The settings of a storage or store given none: every field at its default."""

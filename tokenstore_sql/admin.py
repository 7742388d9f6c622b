"""The admin operations a :class:`~tokenstore_sql.TokenStore` owns, with its settings.

Schema upgrade, downgrade, status and check; prune and statistics; key rotation; import
and export. Each is the function of its own module (:mod:`~tokenstore_sql.schema`,
:mod:`~tokenstore_sql.maintenance`, :mod:`~tokenstore_sql.rotation`,
:mod:`~tokenstore_sql.transfer`, :mod:`~tokenstore_sql.exporting`) given the store's
engine and settings, so a deploy script and the command line work alike.

The schema operations (:meth:`~StoreAdmin.upgrade`, :meth:`~StoreAdmin.check`,
:meth:`~StoreAdmin.status`, :meth:`~StoreAdmin.downgrade`) work on a database whose schema
is behind, or absent: that is what they are for. The others first bring the schema to
head as the settings allow (an import always creates it, unless a dry run).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from contextlib import suppress
from typing import TYPE_CHECKING, TextIO

from sqlalchemy import Engine

from . import exporting, maintenance, rotation, schema, transfer
from .errors import SchemaOutOfDateError
from .execution import transaction
from .settings import StoreSettings
from .storage import SQLAlchemyTokenStorage

if TYPE_CHECKING:
    from typing_extensions import Unpack


class StoreAdmin:
    """Admin operations on the database of an engine, with one settings object."""

    engine: Engine
    settings: StoreSettings

    def check_schema(self) -> None:
        """Bring the schema to head as the settings allow, once per engine in a process.

        What the first storage handed out does anyway; call it at start-up to fail early.

        :raises SchemaOutOfDateError: the database needs :meth:`upgrade` first
        """
        schema.open_schema(self.engine, self.settings)

    def upgrade(self, revision: str = "head") -> str | None:
        """Create or upgrade the schema to ``revision``, under the schema lock, once.

        Whatever ``upgrade_schema`` says: this is the explicit request.

        :returns: the revision the database is at afterwards
        """
        schema.migrate(self.engine, revision, self.settings.placement)
        return self._revision()

    def downgrade(self, revision: str) -> str | None:
        """Downgrade the schema to ``revision`` (a revision id, ``-1`` or ``base``).

        ``base`` drops the token table and every token in it.

        :returns: the revision the database is at afterwards (None: no schema)
        """
        schema.downgrade(self.engine, revision, self.settings.placement)
        return self._revision()

    def status(self) -> schema.SchemaStatus:
        """Tell where the schema stands against this package's head; changes nothing.

        :raises SchemaNotManagedError: token tables exist without a version record
        """
        placement = self.settings.placement
        with transaction(self.engine, writes=False) as connection:
            found = schema.status(connection, placement)
            if found.current is None:  # no schema (reported), or one not ours (raises)
                with suppress(SchemaOutOfDateError):
                    schema.require_head(connection, placement)
        return found

    def check(self) -> schema.SchemaStatus:
        """Check, changing nothing, that the database is at this package's head.

        :raises SchemaOutOfDateError: the schema is older, or absent: :meth:`upgrade`
        :raises SchemaTooNewError: a revision this package does not know: upgrade it
        :raises SchemaNotManagedError: token tables exist without a version record
        """
        with transaction(self.engine, writes=False) as connection:
            return schema.require_head(connection, self.settings.placement)

    def namespaces(self) -> list[str]:
        """List every namespace that holds token data, in order."""
        return list(SQLAlchemyTokenStorage(self.engine, settings=self.settings).iter_namespaces())

    def prune(self, *, dry_run: bool = False, now: int | None = None) -> int:
        """Remove every row that can never be used again (see :func:`maintenance.prune`).

        :returns: how many rows were removed (or would be, with ``dry_run``)
        """
        self._ready()
        return maintenance.prune(self.engine, self.settings, dry_run=dry_run, now=now)

    def stats(self, *, now: int | None = None) -> maintenance.TokenStats:
        """Count rows by namespace and by resource server (see :func:`maintenance.stats`)."""
        self._ready()
        return maintenance.stats(self.engine, self.settings, now=now)

    def rotate_keys(
        self, *, decrypt: bool = False, batch_size: int = rotation.DEFAULT_BATCH_SIZE
    ) -> rotation.RotationReport:
        """Bring every row under the first of the settings' keys, or into clear text.

        See :func:`~tokenstore_sql.rotation.rotate_keys`.
        """
        self._ready()
        return rotation.rotate_keys(
            self.engine, self.settings, decrypt=decrypt, batch_size=batch_size
        )

    def import_files(
        self, paths: Iterable[str | os.PathLike[str]], **options: Unpack[transfer.ImportOptions]
    ) -> transfer.ImportReport:
        """Import globus-sdk token files in one transaction.

        See :func:`~tokenstore_sql.transfer.import_token_files` for the parameters, and
        :class:`~tokenstore_sql.transfer.ImportOptions` for the options.
        """
        return transfer.import_token_files(self.engine, paths, self.settings, **options)

    def export_file(
        self,
        path: str | os.PathLike[str],
        *,
        namespaces: Sequence[str] | None = None,
        overwrite: bool = False,
    ) -> dict[str, int]:
        """Write token data to a JSON file globus-sdk's ``JSONTokenStorage`` reads.

        See :func:`~tokenstore_sql.exporting.export_token_file`.

        :returns: the number of tokens written, by namespace
        """
        return exporting.export_token_file(
            self.engine, path, self.settings, namespaces=namespaces, overwrite=overwrite
        )

    def export_stream(
        self, stream: TextIO, *, namespaces: Sequence[str] | None = None
    ) -> dict[str, int]:
        """Write the JSON of :meth:`export_file` to an open text stream (stdout, say)."""
        return exporting.export_token_stream(
            self.engine, stream, self.settings, namespaces=namespaces
        )

    def _revision(self) -> str | None:
        with transaction(self.engine, writes=False) as connection:
            return schema.current_revision(connection, self.settings.placement)

    def _ready(self) -> None:
        # As the free functions do, without retry: a command reports the first failure.
        schema.ensure_schema(
            self.engine,
            self.settings.placement,
            create=self.settings.create_schema,
            upgrade=self.settings.upgrade_schema,
        )

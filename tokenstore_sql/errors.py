"""The exception hierarchy of tokenstore-sql.

Every message is composed here from facts that are safe to show (namespace, resource
server, revision, dialect, field name), in the words of :mod:`tokenstore_sql.messages`
(the one module this one imports). No token value, bound parameter or database error
text ever goes into a message.

Every error tokenstore-sql raises is a :class:`TokenStoreError`; a wrong argument or
option is also a ``ValueError`` (:class:`ConfigurationError` and its kin). Numeric
options are checked by :func:`tokenstore_sql.checks.checked_number`.
"""

from __future__ import annotations

from .messages import describe_key, failure_detail


class TokenStoreError(Exception):
    """Base class of every error raised by tokenstore-sql."""


class InvalidTokenDataError(TokenStoreError, ValueError):
    """Token data given to a storage cannot be stored as it is; nothing was stored."""


class EncryptionKeyError(TokenStoreError, ValueError):
    """An encryption key is missing or malformed; the message never shows a key."""


class PlacementError(TokenStoreError, ValueError):
    """A table prefix or schema that cannot name tokenstore-sql's tables on this database."""


class UnreadableTokenDataError(TokenStoreError):
    """A stored row cannot be turned back into token data (for example, it was hand-edited).

    :ivar namespace: the namespace of the row
    :ivar resource_server: the resource server of the row
    :ivar problem: what is wrong with it, naming a field and never its value
    """

    def __init__(self, namespace: str, resource_server: str, problem: str) -> None:
        self.namespace = namespace
        self.resource_server = resource_server
        self.problem = problem
        where = describe_key(namespace, resource_server)
        super().__init__(f"stored token data for {where} cannot be read: {problem}")


class UnsupportedDatabaseError(TokenStoreError):
    """The database is not one that tokenstore-sql supports.

    :ivar dialect: the SQLAlchemy dialect name of the database
    """

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        super().__init__(
            f"tokenstore-sql does not support the {dialect!r} database; "
            "use SQLite, PostgreSQL or MySQL/MariaDB"
        )


class ConfigurationError(TokenStoreError, ValueError):
    """A database URL, engine option or argument is wrong in a way no retry can fix."""


class MissingDriverError(TokenStoreError, ImportError):
    """The URL names a database driver (or dialect) that is not installed.

    Also an ``ImportError``, which is what SQLAlchemy raises for it. The message says
    which URL scheme or package would work.
    """


class SchemaError(TokenStoreError):
    """The database schema is missing, foreign, or at a revision this package cannot use."""


class SchemaOutOfDateError(SchemaError):
    """The database schema is at an older revision than this package needs.

    :ivar current: the database's revision (None where the database is empty)
    :ivar head: the revision this package needs
    """

    _message = (
        "the database {found}, but this version of tokenstore-sql needs revision {head}; "
        "back up the database, then run `tokenstore-sql upgrade`"
    )

    def __init__(self, current: str | None, head: str) -> None:
        self.current = current
        self.head = head
        found = "has no tokenstore-sql schema" if current is None else f"is at revision {current}"
        super().__init__(self._message.format(found=found, current=current, head=head))


class SchemaTooNewError(SchemaOutOfDateError):
    """The database is at a revision this package does not know: the package is the older.

    A kind of :class:`SchemaOutOfDateError` (database and package are out of step), so
    code that catches that also catches this; the remedy differs, and the message says so.

    :ivar current: the database's revision
    :ivar head: the newest revision this package knows
    """

    _message = (
        "the database is at revision {current}, which this version of tokenstore-sql "
        "does not know (its newest is {head}): upgrade the tokenstore-sql package; "
        "`tokenstore-sql upgrade` cannot help here"
    )


class SchemaNotManagedError(SchemaError):
    """Token tables exist but carry no tokenstore-sql version record.

    :ivar table: the token table found
    """

    def __init__(self, table: str) -> None:
        self.table = table
        super().__init__(
            f"the table {table!r} exists but the database has no tokenstore-sql version "
            "record, so its schema is not managed by tokenstore-sql; refusing to guess"
        )


class SchemaPrivilegeError(SchemaError):
    """The database account may not create or change tables, so the schema cannot be set up.

    Raised where the schema is missing or older and this account would have to change it;
    the database is left as it was. An account that only reads and writes rows works
    once the schema exists.

    :ivar account: the database user name (None where the URL names none)
    :ivar database: the database, as ``dialect://host/name`` without credentials
    :ivar target: the revision the schema was to be brought to
    :ivar code: the SQLSTATE or driver error number
    :ivar condition: what the code means (``insufficient_privilege``), where known
    """

    def __init__(
        self,
        account: str | None,
        database: str,
        target: str,
        code: str | None,
        condition: str | None = None,
    ) -> None:
        self.account = account
        self.database = database
        self.target = target
        self.code = code
        self.condition = condition
        who = f"the database account {account!r}" if account else "this database account"
        super().__init__(
            f"{who} may not create or change tables in {database}"
            f"{failure_detail(code, condition)}, so the "
            f"tokenstore-sql schema cannot be brought to revision {target}; run "
            "`tokenstore-sql upgrade` with an account that may, or grant this one CREATE "
            "(and ALTER, INDEX on MySQL)"
        )


class DatabaseError(TokenStoreError):
    """The database failed or refused; ``.operation``, ``.database``, ``.code``, ``.condition``.

    The base of :class:`StorageUnavailableError` (worth trying again later) and
    :class:`DatabaseOperationError` (retrying will not help): catch this for both. The
    message and attributes hold safe facts only, never the driver's text.

    :ivar operation: what the storage was doing
    :ivar database: where, as ``dialect://host/name`` without credentials
    :ivar code: the driver's error code or SQLSTATE, where known
    :ivar condition: what the code means (``query_canceled``, ``read-only database``),
        or the cause of a failure to connect (``connection refused``), where known
    """

    _message = "{operation} failed on {database}"

    def __init__(
        self, operation: str, database: str, code: str | None = None, condition: str | None = None
    ) -> None:
        self.operation = operation
        self.database = database
        self.code = code
        self.condition = condition
        message = self._message.format(operation=operation, database=database)
        super().__init__(message + failure_detail(code, condition))


class StorageUnavailableError(DatabaseError):
    """The database could not be reached or kept failing after the bounded retries."""

    _message = "could not {operation} on {database}"


class DatabaseOperationError(DatabaseError):
    """The database refused an operation for a reason that retrying will not fix.

    The driver's text is left out on purpose (it can quote row values); ``code`` keeps
    the SQLSTATE or driver error number for diagnosis.
    """

    _message = "the database refused to {operation} on {database}"


class TokenFileError(TokenStoreError):
    """A token file cannot be read or written as asked; the database was left as it was.

    :ivar path: the file
    :ivar problem: what is wrong, naming keys and fields but never a token or config value
    """

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class ImportFormatError(TokenFileError):
    """A file given to import is unreadable, corrupt or not a globus-sdk token file."""


class MissingTokenDataError(TokenStoreError, LookupError):
    """No usable token data is stored where it was needed: the user must log in (again).

    :ivar namespace: the namespace that was looked in
    :ivar resource_server: the resource server whose token data is missing
    :ivar problem: what is missing (no row, or no refresh token)
    """

    def __init__(self, namespace: str, resource_server: str, problem: str) -> None:
        self.namespace = namespace
        self.resource_server = resource_server
        self.problem = problem
        super().__init__(
            f"{describe_key(namespace, resource_server)}: {problem}; a new login is needed"
        )

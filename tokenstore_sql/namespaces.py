"""The package's namespace conventions: a user's in a multi-user store, a GlobusApp's.

Namespaces follow one convention, so that operators can read them in SQL and in
``tokenstore-sql stats``:

- ``user:{identity_id}`` for a Globus identity (a UUID, in canonical lower case);
- ``{app}:user:{identity_id}`` when several apps or environments share a database,
  e.g. ``portal-prod:user:...``; ``app`` is 1 to 64 letters, digits, ``.``, ``_``, ``-``;
- ``globus-app:{environment}:{client_id}:{app_name}:{namespace}`` for a ``GlobusApp``'s
  storage, so that apps sharing one database never see each other's tokens, as
  globus-sdk's own file storages keep them apart by path. The free-form parts are
  percent-encoded (``:`` as ``%3A``, ``%`` as ``%25``), so two different apps can never
  produce the same namespace.
"""

from __future__ import annotations

import re
import uuid
from typing import Final

from .errors import InvalidTokenDataError

_APP_LABEL: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")


def user_namespace(identity_id: str | uuid.UUID, *, app: str | None = None) -> str:
    """Return the namespace of a user's token data, by the package's convention.

    :param identity_id: the user's Globus identity id (the id_token's ``sub``)
    :param app: an app or environment label, when several share one database
    :raises InvalidTokenDataError: (a ``ValueError``) if the id is not a UUID or the app
        label has characters other than letters, digits, ``.``, ``_`` and ``-``
    """
    try:
        canonical = str(uuid.UUID(str(identity_id)))
    except ValueError:
        raise InvalidTokenDataError("a user's identity id must be a UUID") from None
    if app is None:
        return f"user:{canonical}"
    check_app_label(app)
    return f"{app}:user:{canonical}"


def check_app_label(app: str) -> str:
    """Check an app or environment label for :func:`~tokenstore_sql.user_namespace`.

    :raises InvalidTokenDataError: if the label is not 1 to 64 letters, digits, ``.``,
        ``_`` or ``-``
    """
    if not isinstance(app, str) or not _APP_LABEL.fullmatch(app):
        raise InvalidTokenDataError(
            "an app label is 1 to 64 letters, digits, '.', '_' or '-' characters"
        )
    return app


def globus_app_namespace(
    client_id: uuid.UUID | str,
    app_name: str,
    *,
    environment: str = "production",
    namespace: str = "DEFAULT",
) -> str:
    """Return the namespace a ``GlobusApp``'s storage keeps its tokens in.

    ``SQLAlchemyTokenStorage.for_globus_app`` uses it, so that every app (client ID and
    app name) and every Globus environment has its own rows, also in a shared database.

    :param client_id: the app's client ID
    :param app_name: the app's name, as given to ``UserApp`` or ``ClientApp``
    :param environment: the Globus environment (``GlobusAppConfig.environment``)
    :param namespace: the namespace globus-sdk asks for (``DEFAULT`` today)
    """
    parts = (environment, str(client_id), app_name, namespace)
    return "globus-app:" + ":".join(_escape(part) for part in parts)


def _escape(part: str) -> str:
    """Percent-encode ``%`` and ``:`` only, so the parts stay readable and unambiguous."""
    return part.replace("%", "%25").replace(":", "%3A")

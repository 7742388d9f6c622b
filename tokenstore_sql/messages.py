"""How messages name what they are about: the key of some token data, a database failure.

Phrases that the errors (:mod:`tokenstore_sql.errors`), the token-file readers and the
command line put in their messages, so that each thing is named one way everywhere.
Like the errors, they show only facts that are safe to show. Imports nothing from the
package, so that every module, the errors first, may use it.
"""

from __future__ import annotations


def describe_key(namespace: object, resource_server: object) -> str:
    """Name where token data is kept, for messages: ``namespace 'a', resource server 'b'``."""
    return f"namespace {namespace!r}, resource server {resource_server!r}"


def failure_detail(code: str | None, condition: str | None) -> str:
    """Give the end of a message about a database failure: ``" (code 57014 query_canceled)"``.

    A code always comes with its name where one is known (see
    ``tokenstore_sql.conditions``); a cause without a code stands alone
    (``" (connection refused)"``); with neither, the empty string.
    """
    if code:
        return f" (code {code} {condition})" if condition else f" (code {code})"
    return f" ({condition})" if condition else ""

"""Store token data for a user and read it back through SQLAlchemyTokenStorage.

Runs on an embedded SQLite file in the current directory by default; set
TOKENSTORE_SQL_URL to use PostgreSQL or MySQL instead. Token values are never printed,
only their length.
"""

from __future__ import annotations

import os
import time

from tokenstore_sql import SQLAlchemyTokenStorage, TokenStorageData

DEFAULT_URL = "sqlite:///tokenstore-quickstart.db"


def demo_token_data(resource_server: str, scope: str) -> TokenStorageData:
    """Token data shaped like what Globus Auth issues (the values are made up)."""
    return TokenStorageData(
        resource_server=resource_server,
        identity_id="ae341a98-d274-11e5-b888-dbae3a8ba545",
        scope=scope,
        access_token=os.urandom(32).hex(),
        refresh_token=os.urandom(32).hex(),
        expires_at_seconds=int(time.time()) + 48 * 3600,
        token_type="Bearer",
        extra={"source": "quickstart"},
    )


def main() -> None:
    url = os.environ.get("TOKENSTORE_SQL_URL", DEFAULT_URL)
    with SQLAlchemyTokenStorage(url, namespace="user:quickstart") as storage:
        print(f"storage: {storage!r}")
        storage.store_token_data_by_resource_server(
            {
                "auth.globus.org": demo_token_data("auth.globus.org", "openid profile email"),
                "transfer.api.globus.org": demo_token_data(
                    "transfer.api.globus.org", "urn:globus:auth:scope:transfer.api.globus.org:all"
                ),
            }
        )
        print("stored 2 resource servers; reading them back:")
        for resource_server, data in sorted(storage.get_token_data_by_resource_server().items()):
            expires = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(data.expires_at_seconds))
            print(
                f"  {resource_server}: scope={data.scope!r} identity={data.identity_id} "
                f"expires={expires} access_token=<{len(data.access_token)} chars, hidden>"
            )
        print(f"namespaces in the database: {', '.join(storage.iter_namespaces())}")
        removed = storage.remove_token_data("transfer.api.globus.org")
        left = sorted(storage.get_token_data_by_resource_server())
        print(f"removed transfer.api.globus.org: {removed}; left: {left}")


if __name__ == "__main__":
    main()

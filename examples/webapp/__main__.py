"""Run the example on http://localhost:5000 (``python -m examples.webapp``).

Environment: GLOBUS_CLIENT_ID and GLOBUS_CLIENT_SECRET (a confidential client whose
redirect URL is http://localhost:5000/callback); optionally TOKENSTORE_SQL_URL (default:
an SQLite file, webapp-tokens.db), WEBAPP_SECRET_KEY, WEBAPP_BASE_URL, WEBAPP_PORT
(see ``examples/settings.py``).
This is Flask's development server: for production, serve ``create_app()`` with a WSGI
server such as gunicorn, with as many worker processes as you like.
"""

from __future__ import annotations

import os

from tokenstore_sql import TokenStoreError

from ..settings import explain_missing_settings, settings_from_environment
from .app import create_app


def main() -> None:
    settings = settings_from_environment()
    explain_missing_settings(settings)
    try:
        app = create_app(settings)  # opens the database, creating the schema if it is new
    except TokenStoreError as exc:  # down, unreachable, a driver missing: one line
        raise SystemExit(f"error: {exc}") from None
    port = int(os.environ.get("WEBAPP_PORT", "5000"))
    print(f"tokens are kept in {app.extensions['token_store']!r}")
    app.run(host="127.0.0.1", port=port)


if __name__ == "__main__":
    main()

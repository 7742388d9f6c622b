"""Run the example on http://localhost:5000 (``python -m examples.async_webapp``).

The settings are those of ``examples/webapp`` (see ``settings_from_environment``): the
same Globus client, with the redirect URL http://localhost:5000/callback, serves both.
This runs one uvicorn worker; any ASGI server can serve ``create_app()``.
"""

from __future__ import annotations

import os
import sys

import uvicorn

from .app import MISSING_CREDENTIALS, create_app, settings_from_environment


def main() -> None:
    settings = settings_from_environment()
    if not (settings["GLOBUS_CLIENT_ID"] and settings["GLOBUS_CLIENT_SECRET"]):
        redirect_uri = settings["BASE_URL"].rstrip("/") + "/callback"
        print(MISSING_CREDENTIALS.format(redirect_uri=redirect_uri), file=sys.stderr)
    app = create_app(settings)
    print(f"tokens are kept in {app.state.engine.url.render_as_string(hide_password=True)}")
    port = int(os.environ.get("WEBAPP_PORT", "5000"))
    uvicorn.run(app, host="127.0.0.1", port=port)


if __name__ == "__main__":
    main()

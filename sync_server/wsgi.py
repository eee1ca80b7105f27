"""The collector's web app for a production WSGI server (gunicorn).

    gunicorn --preload --workers 4 --bind 127.0.0.1:8000 sync_server.wsgi:app

The same app factory as `hcp collector serve` (`sync_server.create_app`),
configured from the environment:

- ``HCP_DATABASE_URL``: SQLAlchemy URL (default: SQLite in the instance folder);
- ``HCP_INSTANCE_PATH``: the instance folder (the secret key file, compiled
  catalogs, the default SQLite database); default Flask's ``instance/``;
- ``HCP_SECRET_KEY``: signs sessions; default the key kept in the instance
  folder (every worker reads the same file);
- ``HCP_PLAIN_HTTP=1``: session cookie without Secure, for plain HTTP on a
  trusted network only (behind a TLS proxy, leave it unset).

The MQTT ingest is not part of the web app: run it as its own process
(``hcp collector serve`` on one machine, or the ingest of each collector).

With ``--preload`` the app (migrations, the seed) is made once in the master
process; its database connections are closed below, so every worker opens
its own after the fork (a connection must never be shared across processes).
"""

from __future__ import annotations

import os

from sync_server import create_app


def config_from_environment(environ=os.environ) -> dict:
    config = {}
    if environ.get("HCP_DATABASE_URL"):
        config["DATABASE_URL"] = environ["HCP_DATABASE_URL"]
    if environ.get("HCP_SECRET_KEY"):
        config["SECRET_KEY"] = environ["HCP_SECRET_KEY"]
    if environ.get("HCP_PLAIN_HTTP") == "1":
        config["SESSION_COOKIE_SECURE"] = False
    return config


app = create_app(
    config_from_environment() or None, instance_path=os.environ.get("HCP_INSTANCE_PATH") or None
)
app.extensions["hcp_engine"].dispose()

"""The collector's web application: admin UI and JSON API over the evaluation store.

`create_app()` builds one Flask app with its own database engine; the MQTT
ingest (`sync_server.ingest`) writes into the same database and the app only
reads it, apart from the user table.

Config keys (all may be given in `test_config`):

- ``DATABASE_URL``: SQLAlchemy URL; default ``sqlite:///<instance>/hcp.db``.
- ``SECRET_KEY``: signs sessions; default a random key kept in
  ``<instance>/secret_key`` (created on first start, mode 0600).
- ``BABEL_DEFAULT_LOCALE``: ``zh_CN``; ``?lang=en`` switches a session to English.
- ``HCP_TIMEZONE``: time zone the pages show times in; default ``Asia/Shanghai``.
- ``HCP_DASHBOARD_POLL_MS``: how often the dashboard refreshes; default 2000.
- ``HCP_DASHBOARD_LATEST``: rows in the dashboard's latest table; default 10.
- ``SESSION_COOKIE_SECURE``: the session cookie only over HTTPS; default True
  (False for a plain-HTTP demo). HttpOnly and SameSite=Lax always.
- ``HCP_LOGIN_MAX_FAILURES`` / ``HCP_LOGIN_MAX_FAILURES_PER_ADDRESS`` /
  ``HCP_LOGIN_WINDOW_S``: failed logins allowed per account / per address
  within the window before logins are refused; default 5 / 20 / 900 s.
- ``MAX_CONTENT_LENGTH``: the largest request body (uploads); default 8 MiB.
- ``HCP_GOOD_RATE_STARS``: the levels 好评率 counts over valid ratings;
  default (5, 4, 3), i.e. (非常满意+满意+基本满意)/valid.
"""

from __future__ import annotations

import io
import os
import secrets
from pathlib import Path

from flask import Flask, current_app, request, session
from flask.json.provider import DefaultJSONProvider
from flask_babel import Babel
from flask_wtf.csrf import CSRFProtect

from sync_server import db

LOCALES = ("zh_CN", "en")
PACKAGE_DIR = Path(__file__).resolve().parent
CATALOG_DIR = PACKAGE_DIR / "translations"

csrf = CSRFProtect()


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON, in UTF-8 as written, and a body nested too deeply to
    decode (``[[[[...]]]]``) is invalid JSON like any other: a clear 400 (or
    None for ``get_json(silent=True)``), never a RecursionError and a 500."""

    ensure_ascii = False

    def loads(self, s, **kwargs):
        try:
            return super().loads(s, **kwargs)
        except RecursionError as exc:
            raise ValueError("JSON nested too deeply") from exc


def create_app(test_config: dict | None = None, instance_path: str | None = None) -> Flask:
    app = Flask(__name__, instance_path=instance_path, instance_relative_config=True)
    app.json = JSONProvider(app)
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.from_mapping(
        DATABASE_URL="sqlite:///" + os.path.join(app.instance_path, "hcp.db"),
        BABEL_DEFAULT_LOCALE="zh_CN",
        HCP_TIMEZONE="Asia/Shanghai",
        HCP_DASHBOARD_POLL_MS=2000,
        HCP_DASHBOARD_LATEST=10,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_HTTPONLY=True,
        # Secure: browsers send the session cookie over HTTPS only; set False
        # only for a plain-HTTP demo on this machine (hcp demo does)
        SESSION_COOKIE_SECURE=True,
        HCP_LOGIN_MAX_FAILURES=5,
        HCP_LOGIN_MAX_FAILURES_PER_ADDRESS=20,
        HCP_LOGIN_WINDOW_S=900,
        MAX_CONTENT_LENGTH=8 * 1024 * 1024,
        HCP_GOOD_RATE_STARS=(5, 4, 3),
        JSON_AS_ASCII=False,
    )
    load_settings_file(app, (test_config or {}).get("HCP_SETTINGS"))
    if test_config:
        app.config.from_mapping(test_config)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _instance_secret(app.instance_path)

    compiled = compile_catalogs(CATALOG_DIR, Path(app.instance_path) / "translations")
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(compiled)
    Babel(app, locale_selector=select_locale)
    csrf.init_app(app)

    engine = db.make_engine(app.config["DATABASE_URL"])
    db.init(engine)
    app.extensions["hcp_engine"] = engine

    from sync_server import org, tags

    org.seed(engine)
    tags.seed(engine)

    from sync_server import admin_pages, analytics, api, auth, openapi, org_pages, pf_pages, web

    auth.init_app(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(web.bp)
    app.register_blueprint(pf_pages.bp)
    app.register_blueprint(org_pages.bp)
    app.register_blueprint(admin_pages.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(analytics.bp)
    web.init_app(app)
    org_pages.init_app(app)
    from sync_server import features

    features.init_app(app)
    return app


class SettingsError(ValueError):
    """A settings file that cannot be used; the message names the file and the key."""


def load_settings_file(app: Flask, path: str | None = None) -> Path | None:
    """The operator's settings, a TOML file of config keys (docs/operator-guide.md,
    "Collector settings"): `path`, else the file named by the environment
    variable HCP_SETTINGS, else `<instance folder>/settings.toml` when there is
    one. Keys must be upper case (Flask ignores the others, so a lower-case
    key would be silently lost); a missing named file or bad TOML is refused.
    Returns the file read, or None."""
    import tomllib

    named = path or os.environ.get("HCP_SETTINGS")
    file = Path(named) if named else Path(app.instance_path) / "settings.toml"
    if not file.exists():
        if named:
            raise SettingsError(f"{file}: no such settings file")
        return None
    try:
        with file.open("rb") as handle:
            values = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{file}: not valid TOML ({exc})") from None
    lower = sorted(key for key in values if not key.isupper())
    if lower:
        raise SettingsError(f"{file}: keys must be upper case, got {', '.join(lower)}")
    app.config.from_mapping(values)
    return file


def select_locale() -> str:
    """`?lang=` picks the language and the session remembers it; else zh_CN."""
    wanted = request.args.get("lang")
    if wanted in LOCALES:
        session["lang"] = wanted
    chosen = session.get("lang")
    return chosen if chosen in LOCALES else current_app.config["BABEL_DEFAULT_LOCALE"]


def _instance_secret(instance_path: str) -> str:
    return instance_file(instance_path, "secret_key", 32)


def instance_file(instance_path: str, name: str, size: int) -> str:
    """The secret kept in `<instance>/<name>` (hex text), made with `size`
    random bytes (mode 0600) on first use. Two processes starting at once
    agree on one value (O_EXCL). An empty file is an error."""
    path = Path(instance_path) / name
    if not path.exists():
        # a fresh checkout has no instance folder until something needs it
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # O_EXCL: two processes starting at once must not write two different keys
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(size) + "\n")
    key = path.read_text().strip()
    if not key:
        raise RuntimeError(f"{path} is empty: delete it to have a new key made")
    return key


def compile_catalogs(source: Path, target: Path) -> Path:
    """Compile the catalogs under `source` into `target` when stale.

    Each feature keeps its messages in its own <locale>/LC_MESSAGES/<name>.po;
    all the .po files of a locale are merged into one messages.mo (a msgid
    given twice must have one translation: tests/test_web.py checks). A .mo
    is rewritten when it is missing or older than one of its .po files, so a
    fresh checkout needs no manual compile step. Returns `target`.
    """
    from babel import Locale
    from babel.messages.mofile import write_mo

    for folder in sorted(source.glob("*/LC_MESSAGES")):
        po_paths = sorted(folder.glob("*.po"))
        if not po_paths:
            continue
        locale = folder.parent.name
        # Babel names zh_CN "zh_Hans_CN" when it looks catalogs up: write both
        names = dict.fromkeys([locale, str(Locale.parse(locale))])
        mo_paths = [target / name / "LC_MESSAGES" / "messages.mo" for name in names]
        if all(_fresh(mo_path, po) for mo_path in mo_paths for po in po_paths):
            continue
        signature = (
            locale,
            tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in po_paths),
        )
        data = _COMPILED.get(signature)
        if data is None:
            compiled = io.BytesIO()
            write_mo(compiled, read_catalogs(po_paths, locale))
            data = _COMPILED[signature] = compiled.getvalue()
        for mo_path in mo_paths:
            mo_path.parent.mkdir(parents=True, exist_ok=True)
            # write aside and rename, so a concurrent start never reads half a file
            partial = mo_path.with_name(f"{mo_path.name}.{os.getpid()}.tmp")
            partial.write_bytes(data)
            os.replace(partial, mo_path)
    return target


# what this process compiled, by locale and (path, mtime, size) of its .po files:
# an app made again with the same catalogs (tests make hundreds) reuses the bytes
_COMPILED: dict[tuple, bytes] = {}


def read_catalogs(po_paths, locale: str):
    """The .po files of one locale as one catalog (later files add to it)."""
    from babel.messages.pofile import read_po

    merged = None
    for po_path in po_paths:
        with open(po_path, "rb") as po_file:
            catalog = read_po(po_file, locale=locale)
        if merged is None:
            merged = catalog
            continue
        for message in catalog:
            if message.id and message.id not in merged:
                merged[message.id] = message
    return merged


def _fresh(mo_path: Path, po_path: Path) -> bool:
    return mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime

"""Users, login, roles and what each role may do.

Users live in the `users` table with werkzeug password hashes. Roles
(`ROLES`) and what each may do (`CAPABILITIES`):

- ``admin``: runs the collector: users, API tokens, the organisation and its
  files, content tags, the pf table, devices (with their per-level counts),
  quarantine, the audit log, every unit's ratings. Never a rater's contact.
- ``supervisor`` (督查): every unit's ratings and devices, the organisation and
  tags read-only, the audit log; may reveal a rater's contact (audited).
- ``unit_manager``: the ratings of their own unit's subtree only; edits the
  organisation inside it; may reveal a contact of a rating in it (audited).
- ``technician``: devices (without per-level counts) and quarantine (payloads
  redacted), the organisation and tags read-only; never ratings or raters.
- ``clerk`` (data entry): the ratings of their unit's subtree and its
  organisation, read-only.

Unit managers and clerks have a unit (`users.unit_id`): `scope()` is the set
of units below it, which every query of ratings and of the organisation is
limited to. Everyone else's scope is None (all).

Logins are limited per account and per address (`HCP_LOGIN_MAX_FAILURES`,
`HCP_LOGIN_MAX_FAILURES_PER_ADDRESS` within `HCP_LOGIN_WINDOW_S`). The JSON
API answers 401/403 with a JSON error; pages redirect to the login form
instead. API tokens (sync_server/tokens.py) log a machine client in as a
`User` of the token's role and unit for one request.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired

from sync_server import db

ROLES = ("admin", "supervisor", "unit_manager", "technician", "clerk")
SCOPED_ROLES = ("unit_manager", "clerk")
CAPABILITIES = {
    "admin": {
        "ratings", "devices", "device_counts", "quarantine", "org_read", "org_write",
        "org_files", "tags_read", "tags_write", "pf_read", "pf_write", "audit", "users",
        "tokens", "cases", "cases_work", "cases_review", "loop_settings", "rankings",
        "service_events", "paper_entry", "qr_sheets", "fleet", "firmware", "outbox",
        "outbox_read", "gaming",
    },
    "supervisor": {
        "ratings", "devices", "org_read", "tags_read", "pf_read", "audit", "contact",
        "cases", "cases_review", "rankings", "outbox_read", "gaming",
    },
    "unit_manager": {
        "ratings", "org_read", "org_write", "contact", "cases", "cases_work", "rankings",
    },
    "technician": {
        "devices", "quarantine", "org_read", "tags_read", "pf_read", "qr_sheets", "fleet",
    },
    "clerk": {"ratings", "org_read", "service_events", "paper_entry"},
}  # fmt: skip
# What the capabilities of the later features mean:
# cases: read the 差评 cases in scope; cases_work: act on them (verify, classify,
# rectify, feed back, return visit, appeal); cases_review: decide appeals and
# reopen closed cases; loop_settings: deadline and assignment rules, duty
# contacts; rankings: rankings and 通报; service_events: register service
# events (the business system's token has the clerk role); paper_entry: type
# in paper cards; qr_sheets: print window QR sheets; fleet: device configuration
# and commands; firmware: firmware bundles and rollouts; outbox / outbox_read:
# the report to the province (act / read); gaming: evidence of gaming.
MIN_PASSWORD = 8
USERNAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")

bp = Blueprint("auth", __name__)
login_manager = LoginManager()


class User(UserMixin):
    def __init__(self, user_id, username: str, role: str, unit_id=None, token_id=None):
        self.id = user_id
        self.username = username
        self.role = role
        self.unit_id = unit_id
        self.token_id = token_id  # set when a machine client came with an API token

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def actor(self) -> str:
        """Who the audit log names: the username, or token:<id> for a token."""
        return f"token:{self.token_id}" if self.token_id is not None else self.username

    def can(self, capability: str) -> bool:
        return capability in CAPABILITIES.get(self.role, ())

    def scope(self) -> set[str] | None:
        """The units this user's data is limited to; None for all units."""
        if self.role not in SCOPED_ROLES:
            return None
        cached = g.get("hcp_scope")
        if cached is None or cached[0] != self.unit_id:
            from sync_server import org

            with db.get_engine().connect() as conn:
                units = org.subtree_ids(conn, self.unit_id) if self.unit_id else set()
            g.hcp_scope = cached = (self.unit_id, units)
        return cached[1]

    def sees_unit(self, unit_id) -> bool:
        scope = self.scope()
        return scope is None or unit_id in scope


def check_role_and_unit(conn, role, unit_id) -> None:
    if role not in ROLES:
        raise ValueError("role: must be one of " + ", ".join(ROLES))
    if role in SCOPED_ROLES:
        if not unit_id:
            raise ValueError(f"unit: required for the role {role}")
        found = conn.execute(
            select(db.org_units.c.id).where(
                db.org_units.c.id == unit_id, db.org_units.c.retired_at.is_(None)
            )
        ).first()
        if found is None:
            raise ValueError(f"unit: unknown unit {unit_id!r}")
    elif unit_id:
        raise ValueError(f"unit: only for the roles {', '.join(SCOPED_ROLES)}")


def create_user(engine, username: str, password: str, role: str, unit_id=None) -> int:
    """Add a user and return its id; ValueError names the field and the problem."""
    if not isinstance(username, str) or not USERNAME_PATTERN.fullmatch(username):
        raise ValueError("username: must be 1..64 characters of A-Z a-z 0-9 . _ -")
    if role not in ROLES:
        raise ValueError("role: must be one of " + ", ".join(ROLES))
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise ValueError(f"password: must be at least {MIN_PASSWORD} characters")
    if password.strip() != password or password.lower() == username.lower():
        raise ValueError("password: must not be the username or start/end with spaces")
    with engine.connect() as conn:
        check_role_and_unit(conn, role, unit_id)
        taken = conn.execute(select(db.users.c.id).where(db.users.c.username == username)).first()
    if taken is not None:
        raise ValueError(f"username: {username!r} already exists")
    try:
        with engine.begin() as conn:
            result = conn.execute(
                db.users.insert().values(
                    username=username,
                    password_hash=generate_password_hash(password),
                    role=role,
                    unit_id=unit_id or None,
                    created_at=db.utc_now(),
                )
            )
            return result.inserted_primary_key[0]
    except IntegrityError:  # someone else took the name in between
        raise ValueError(f"username: {username!r} already exists") from None


def _user(row) -> User | None:
    if row is None or row.disabled_at:
        return None
    return User(row.id, row.username, row.role, row.unit_id)


def check_login(engine, username: str, password: str) -> User | None:
    with engine.connect() as conn:
        row = conn.execute(select(db.users).where(db.users.c.username == username)).first()
    if row is None or not check_password_hash(row.password_hash, password):
        return None
    return _user(row)


# --- login limits -------------------------------------------------------------------


def _window_start(seconds: int) -> str:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)
    return start.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def login_blocked(engine, username: str, address: str) -> bool:
    """Too many failures for this account, or from this address, lately."""
    config = current_app.config
    since = _window_start(config["HCP_LOGIN_WINDOW_S"])
    f = db.login_failures.c
    with engine.connect() as conn:
        by_user = conn.execute(
            select(func.count()).where(f.username == username, f.at >= since)
        ).scalar()
        by_address = conn.execute(
            select(func.count()).where(f.address == address, f.at >= since)
        ).scalar()
    return (
        by_user >= config["HCP_LOGIN_MAX_FAILURES"]
        or by_address >= config["HCP_LOGIN_MAX_FAILURES_PER_ADDRESS"]
    )


def _note_failure(engine, username: str, address: str) -> None:
    f = db.login_failures.c
    with engine.begin() as conn:
        conn.execute(
            db.login_failures.insert().values(
                username=username[:64], address=address[:64], at=db.utc_now()
            )
        )
        # a day is far longer than any window: older rows only take space
        conn.execute(delete(db.login_failures).where(f.at < _window_start(86400)))


def _clear_failures(engine, username: str) -> None:
    with engine.begin() as conn:
        conn.execute(delete(db.login_failures).where(db.login_failures.c.username == username))


# --- Flask-Login --------------------------------------------------------------------


@login_manager.user_loader
def _load_user(user_id: str) -> User | None:
    try:
        wanted = int(user_id)
    except ValueError:
        return None
    with db.get_engine().connect() as conn:
        row = conn.execute(select(db.users).where(db.users.c.id == wanted)).first()
    return _user(row)


@login_manager.request_loader
def _load_token(req) -> User | None:
    from sync_server import tokens

    return tokens.user_from_request(req)


def wants_json() -> bool:
    return request.path.startswith("/api/")


@login_manager.unauthorized_handler
def _unauthorized():
    if wants_json():
        return jsonify(error=g.get("hcp_token_error") or "login required"), 401
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def init_app(app) -> None:
    login_manager.init_app(app)


def forbidden(capability: str):
    """A 403: JSON for the API, the error page otherwise."""
    if wants_json():
        only_admin = all(capability not in caps for r, caps in CAPABILITIES.items() if r != "admin")
        error = "admin only" if only_admin else f"not allowed for the role {current_user.role}"
        return jsonify(error=error), 403
    abort(403)


def requires(capability: str):
    """Like login_required, and the user's role must have `capability` (403 otherwise)."""

    def decorator(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            if not current_user.is_authenticated:
                return current_app.login_manager.unauthorized()
            if not current_user.can(capability):
                return forbidden(capability)
            return view(*args, **kwargs)

        return wrapped

    return decorator


def admin_required(view):
    """Like login_required, and the user must be an admin (403 otherwise)."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if not current_user.is_authenticated:
            return current_app.login_manager.unauthorized()
        if not current_user.is_admin:
            if wants_json():
                return jsonify(error="admin only"), 403
            abort(403)
        return view(*args, **kwargs)

    return wrapped


class LoginForm(FlaskForm):
    username = StringField(_l("Username"), validators=[DataRequired()])
    password = PasswordField(_l("Password"), validators=[DataRequired()])


def _safe_next(target: str | None) -> str:
    """Only local paths: a login link must not send the user to another site."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/"):
            if not target.startswith("//") and "\\" not in target:
                return target
    return url_for("web.dashboard")


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    error = None
    status = 401
    if form.validate_on_submit():
        engine = db.get_engine()
        username, address = form.username.data, request.remote_addr or ""
        if login_blocked(engine, username, address):
            minutes = -(-current_app.config["HCP_LOGIN_WINDOW_S"] // 60)
            error = _("Too many failed logins. Try again in %(minutes)s minutes.", minutes=minutes)
            status = 429
        else:
            user = check_login(engine, username, form.password.data)
            if user is not None:
                _clear_failures(engine, username)
                login_user(user)
                return redirect(_safe_next(request.args.get("next")))
            _note_failure(engine, username, address)
            error = _("Wrong username or password.")
    elif request.method == "POST":
        error = _("Please enter your username and password.")
    return render_template("login.html", form=form, error=error), (status if error else 200)


@bp.route("/logout", methods=["POST"])
def logout():
    logout_user()
    return redirect(url_for("auth.login"))

"""Users, login and roles.

Users live in the `users` table with werkzeug password hashes. Two roles:
`admin` sees everything, including quarantined messages; `viewer` sees the
evaluations, summaries and devices. The JSON API answers 401/403 with a JSON
error; pages redirect to the login form instead.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
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
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired

from sync_server import db

ROLES = ("admin", "viewer")
MIN_PASSWORD = 8
USERNAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")

bp = Blueprint("auth", __name__)
login_manager = LoginManager()


class User(UserMixin):
    def __init__(self, user_id: int, username: str, role: str):
        self.id = user_id
        self.username = username
        self.role = role

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def create_user(engine, username: str, password: str, role: str) -> int:
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
                    created_at=db.utc_now(),
                )
            )
            return result.inserted_primary_key[0]
    except IntegrityError:  # someone else took the name in between
        raise ValueError(f"username: {username!r} already exists") from None


def check_login(engine, username: str, password: str) -> User | None:
    with engine.connect() as conn:
        row = conn.execute(select(db.users).where(db.users.c.username == username)).first()
    if row is None or not check_password_hash(row.password_hash, password):
        return None
    return User(row.id, row.username, row.role)


@login_manager.user_loader
def _load_user(user_id: str) -> User | None:
    try:
        wanted = int(user_id)
    except ValueError:
        return None
    with db.get_engine().connect() as conn:
        row = conn.execute(select(db.users).where(db.users.c.id == wanted)).first()
    return User(row.id, row.username, row.role) if row else None


def wants_json() -> bool:
    return request.path.startswith("/api/")


@login_manager.unauthorized_handler
def _unauthorized():
    if wants_json():
        return jsonify(error="login required"), 401
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def init_app(app) -> None:
    login_manager.init_app(app)


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
    if form.validate_on_submit():
        user = check_login(db.get_engine(), form.username.data, form.password.data)
        if user is not None:
            login_user(user)
            return redirect(_safe_next(request.args.get("next")))
        error = _("Wrong username or password.")
    elif request.method == "POST":
        error = _("Please enter your username and password.")
    status = 401 if error else 200
    return render_template("login.html", form=form, error=error), status


@bp.route("/logout", methods=["POST"])
def logout():
    logout_user()
    return redirect(url_for("auth.login"))

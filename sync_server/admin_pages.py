"""Admin pages and their API: content tags, users, API tokens, the audit log.

- ``GET /tags``: the tag versions, the one in force, the tags of one version;
  admins import a file, put a version in force and edit tags (``POST /tags/...``).
- ``GET /users``: users and API tokens; admins add users and create or revoke
  tokens (a new token is shown once, on the page that created it).
- ``GET /audit``: the audit log (admins and supervisors).
- ``GET /api/v1/tags``: the version in force and its tags as a device gets them.
- ``GET /api/v1/audit``: the audit log as JSON.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select, update

from protocols.record import valid_utc_time
from sync_server import api, audit, db, org, tags, tokens
from sync_server.auth import ROLES, create_user, requires
from sync_server.db import get_engine
from sync_server.org_pages import FORMATS

bp = Blueprint("admin_pages", __name__)


# --- content tags -------------------------------------------------------------------


def _tags_page(error=None, status=200):
    engine = get_engine()
    with engine.connect() as conn:
        versions = tags.versions(conn)
        current = tags.in_force(conn)
        shown = request.args.get("version") or current
        rows = tags.tags_of(conn, shown) if shown else []
    return render_template(
        "tags.html",
        versions=versions,
        current=current,
        shown=shown,
        rows=rows,
        MODES=tags.MODES,
        error=error,
    ), status


@bp.get("/tags", endpoint="tags")
@requires("tags_read")
def tags_page():
    return _tags_page()


@bp.post("/tags/import")
@requires("tags_write")
def tags_import():
    upload = request.files.get("file")
    in_force_from = request.form.get("in_force_from", "").strip() or None
    engine = get_engine()
    try:
        if upload is None or not upload.filename:
            raise org.OrgError(_("file: choose a file"))
        if in_force_from is not None and not valid_utc_time(in_force_from):
            raise org.OrgError(_("in_force_from: must be YYYY-MM-DDTHH:MM:SSZ (UTC)"))
        rows = org.read_file(upload.read(), upload.filename)
        with engine.begin() as conn:
            added = tags.import_rows(
                conn, rows, current_user.actor, in_force_from, label=upload.filename
            )
            audit.record(conn, "tags.import", upload.filename, None, {"versions": added})
    except org.OrgError as exc:
        return _tags_page(str(exc), 400)
    return redirect(url_for("admin_pages.tags", version=added[0]))


@bp.post("/tags/in-force")
@requires("tags_write")
def tags_in_force():
    version = request.form.get("version", "")
    at = request.form.get("in_force_from", "").strip() or None
    engine = get_engine()
    try:
        if at is not None and not valid_utc_time(at):
            raise org.OrgError(_("in_force_from: must be YYYY-MM-DDTHH:MM:SSZ (UTC)"))
        with engine.begin() as conn:
            before = _version(conn, version)
            tags.set_in_force(conn, version, at or org.moment(), current_user.actor)
            audit.record(conn, "tags.in_force", f"tags:{version}", before, _version(conn, version))
    except org.OrgError as exc:
        return _tags_page(str(exc), 400)
    return redirect(url_for("admin_pages.tags", version=version))


def _version(conn, version):
    row = conn.execute(select(db.tag_versions).where(db.tag_versions.c.version == version)).first()
    return dict(row._mapping) if row else None


@bp.post("/tags/save")
@requires("tags_write")
def tags_save():
    form = request.form
    version, code = form.get("version", ""), form.get("code", "").strip()
    engine = get_engine()
    try:
        with engine.begin() as conn:
            before = _tag(conn, version, code)
            tags.save_tag(
                conn,
                version,
                form.get("level", ""),
                code,
                form.get("text", "").strip(),
                form.get("mode", ""),
                current_user.actor,
            )
            audit.record(
                conn, "tags.save", f"tags:{version}:{code}", before, _tag(conn, version, code)
            )
    except org.OrgError as exc:
        return _tags_page(str(exc), 400)
    return redirect(url_for("admin_pages.tags", version=version))


@bp.post("/tags/delete")
@requires("tags_write")
def tags_delete():
    version, code = request.form.get("version", ""), request.form.get("code", "")
    with get_engine().begin() as conn:
        before = _tag(conn, version, code)
        if before is None:
            abort(404)
        tags.delete_tag(conn, version, code)
        audit.record(conn, "tags.delete", f"tags:{version}:{code}", before, None)
    return redirect(url_for("admin_pages.tags", version=version))


def _tag(conn, version, code):
    c = db.content_tags.c
    row = conn.execute(select(db.content_tags).where(c.version == version, c.code == code)).first()
    return dict(row._mapping) if row else None


@bp.get("/tags/export")
@requires("tags_read")
def tags_export():
    version, fmt = request.args.get("version", ""), request.args.get("format", "csv")
    if fmt not in FORMATS:
        abort(404)
    with get_engine().connect() as conn:
        version = version or tags.in_force(conn) or ""
        if _version(conn, version) is None:
            abort(404)
        rows = tags.export_rows(conn, version)
    data = org.to_csv(rows) if fmt == "csv" else org.to_xlsx(rows, "tags")
    return Response(
        data,
        mimetype=FORMATS[fmt],
        headers={"Content-Disposition": f"attachment; filename=hcp-tags-{version}.{fmt}"},
    )


@bp.get("/api/v1/tags")
@requires("tags_read")
def api_tags():
    mode = request.args.get("mode", "offline")
    if mode not in tags.MODES:
        return jsonify(error="mode: must be online or offline"), 400
    with get_engine().connect() as conn:
        return jsonify(tags.device_tags(conn, mode))


# --- users and tokens ---------------------------------------------------------------


def _users_page(error=None, status=200, new_token=None):
    with get_engine().connect() as conn:
        users = [
            {k: v for k, v in row._mapping.items() if k != "password_hash"}
            for row in conn.execute(select(db.users).order_by(db.users.c.username))
        ]
        token_rows = tokens.listing(conn)
        units = org.units(conn)
    return render_template(
        "users.html",
        users=users,
        tokens=token_rows,
        units=units,
        ROLES=ROLES,
        error=error,
        new_token=new_token,
    ), status


@bp.get("/users")
@requires("users")
def users():
    return _users_page()


@bp.post("/users")
@requires("users")
def add_user():
    form = request.form
    engine = get_engine()
    try:
        user_id = create_user(
            engine,
            form.get("username", "").strip(),
            form.get("password", ""),
            form.get("role", ""),
            form.get("unit", "").strip() or None,
        )
    except ValueError as exc:
        return _users_page(str(exc), 400)
    with engine.begin() as conn:
        row = conn.execute(select(db.users).where(db.users.c.id == user_id)).one()
        after = {k: v for k, v in row._mapping.items() if k != "password_hash"}
        audit.record(conn, "user.add", f"user:{row.username}", None, after)
    return redirect(url_for("admin_pages.users"))


@bp.post("/users/disable")
@requires("users")
def disable_user():
    username = request.form.get("username", "")
    if username == current_user.username:
        return _users_page(_("username: you cannot disable yourself"), 400)
    with get_engine().begin() as conn:
        u = db.users.c
        row = conn.execute(select(db.users).where(u.username == username)).first()
        if row is None:
            abort(404)
        conn.execute(update(db.users).where(u.id == row.id).values(disabled_at=db.utc_now()))
        audit.record(
            conn,
            "user.disable",
            f"user:{username}",
            {"disabled_at": row.disabled_at},
            {"disabled_at": "now"},
        )
    return redirect(url_for("admin_pages.users"))


@bp.post("/tokens")
@requires("tokens")
def add_token():
    form = request.form
    try:
        with get_engine().begin() as conn:
            _token_id, token = tokens.create(
                conn,
                form.get("name", ""),
                form.get("role", ""),
                form.get("unit", "").strip() or None,
                current_user.actor,
            )
    except ValueError as exc:
        return _users_page(str(exc), 400)
    # shown this once; only its hash is kept
    response = _users_page(new_token=token)
    return response[0], 201, {"Cache-Control": "no-store"}


@bp.post("/tokens/revoke")
@requires("tokens")
def revoke_token():
    try:
        token_id = int(request.form.get("id", ""))
        with get_engine().begin() as conn:
            tokens.revoke(conn, token_id)
    except ValueError as exc:
        return _users_page(str(exc), 400)
    return redirect(url_for("admin_pages.users"))


# --- audit log ----------------------------------------------------------------------


def _audit_query():
    api._check_known(request.args, ("page", "per_page", "action", "target"))
    page, per_page = api.parse_paging(request.args)
    action = api.text_param(request.args, "action")
    target = request.args.get("target", "").strip()[:200] or None
    return audit.entries(get_engine(), page, per_page, action, target), per_page


@bp.get("/audit")
@requires("audit")
def audit_log():
    try:
        result, per_page = _audit_query()
    except api.ParamError as exc:
        return render_template("audit.html", error=str(exc), result=None), 400
    pages = max(1, -(-result["total"] // per_page))
    return render_template("audit.html", error=None, result=result, pages=pages)


@bp.get("/api/v1/audit")
@requires("audit")
def api_audit():
    try:
        result, _per_page = _audit_query()
    except api.ParamError as exc:
        return jsonify(error=str(exc)), 400
    return jsonify(result)

"""The content tag table (评价内容): versioned, level-dependent tags.

The province supplies the official table, which is not public (DOMAIN §3):
it is never hard-coded here. An admin imports it from a file in the
province's shape (`COLUMNS`: version, level, code, text, online/offline; CSV
or Excel, refused whole with the row and column named) or edits it; until
then the collector has `DEFAULT_VERSION`, our own demo set, labelled as such.

A version is in force from its `in_force_from` time; the one in force now is
the latest such time not in the future (`in_force`). `device_tags` gives the
`content_version` and the `tags` rows a device config carries
(docs/protocol.md §3.4); publishing configs is not done here.
"""

from __future__ import annotations

import re

from flask_babel import gettext as _
from sqlalchemy import delete, func, select, update

from protocols.levels import STARS
from protocols.record import text_problem, valid_tag
from sync_server import db
from sync_server.org import FileProblem, OrgError, moment

COLUMNS = ("version", "level", "code", "text", "mode")
MODES = ("online", "offline")
# the province's column names and Chinese headers are taken too
HEADER_ALIASES = {
    "online/offline": "mode",
    "版本": "version",
    "版本号": "version",
    "等级": "level",
    "满意度": "level",
    "编码": "code",
    "代码": "code",
    "内容": "text",
    "评价内容": "text",
    "线上线下": "mode",
}
MODE_ALIASES = {"线上": "online", "线下": "offline", "1": "online", "2": "offline"}
VERSION_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,32}")
MAX_TEXT = 64  # a config's tag text (docs/protocol.md §3.4)
MAX_TAGS = 500

DEFAULT_VERSION = "hcp-demo-1"
DEFAULT_LABEL = "hcp 演示标签, 非省平台标准"
# Our own demo set: codes start with the level (like the province's 501, 502),
# prefixed "H" so they can never be taken for official codes.
DEFAULT_TAGS = (
    (5, "H501", "服务态度好", "offline"),
    (5, "H502", "办事效率高", "offline"),
    (5, "H503", "一次办好", "offline"),
    (4, "H401", "服务热情", "offline"),
    (4, "H402", "办理顺利", "offline"),
    (3, "H301", "基本顺利", "offline"),
    (3, "H302", "等候稍长", "offline"),
    (2, "H201", "等候时间长", "offline"),
    (2, "H202", "办事指引不清", "offline"),
    (2, "H203", "服务效率低", "offline"),
    (1, "H101", "服务态度差", "offline"),
    (1, "H102", "多次跑动", "offline"),
    (1, "H103", "服务水平不足", "offline"),
    (5, "H511", "办事便捷", "online"),
    (4, "H411", "办事指南准确", "online"),
    (3, "H311", "平台基本好用", "online"),
    (2, "H211", "平台操作不便", "online"),
    (2, "H212", "办事指南不准确", "online"),
    (1, "H111", "网上办事效率低", "online"),
)


def seed(engine) -> bool:
    """Put the demo set in, in force since ever, when there is no version at all."""
    with engine.begin() as conn:
        if conn.execute(select(func.count()).select_from(db.tag_versions)).scalar():
            return False
        _write_version(conn, DEFAULT_VERSION, DEFAULT_LABEL, "0001-01-01T00:00:00Z", "hcp")
        conn.execute(
            db.content_tags.insert(),
            [
                {"version": DEFAULT_VERSION, "level": level, "code": code, "text": text, "mode": m}
                for level, code, text, m in DEFAULT_TAGS
            ],
        )
    return True


def _write_version(conn, version, label, in_force_from, by) -> None:
    conn.execute(
        db.tag_versions.insert().values(
            version=version,
            label=label,
            in_force_from=in_force_from,
            created_at=db.utc_now(),
            updated_by=by,
            updated_at=db.utc_now(),
        )
    )


def versions(conn) -> list[dict]:
    t = db.tag_versions.c
    counts = dict(
        conn.execute(
            select(db.content_tags.c.version, func.count()).group_by(db.content_tags.c.version)
        ).all()
    )
    rows = conn.execute(select(db.tag_versions).order_by(t.created_at.desc(), t.version))
    return [{**row._mapping, "tags": counts.get(row.version, 0)} for row in rows]


def in_force(conn, at: str | None = None) -> str | None:
    """The version in force at `at` (now): the latest in_force_from not after it."""
    t = db.tag_versions.c
    return conn.execute(
        select(t.version)
        .where(t.in_force_from.is_not(None), t.in_force_from <= moment(at))
        .order_by(t.in_force_from.desc(), t.version.desc())
        .limit(1)
    ).scalar()


def tags_of(conn, version: str, mode: str | None = None) -> list[dict]:
    c = db.content_tags.c
    query = select(db.content_tags).where(c.version == version)
    if mode is not None:
        query = query.where(c.mode == mode)
    query = query.order_by(c.level.desc(), c.code)
    return [dict(row._mapping) for row in conn.execute(query)]


def device_tags(conn, mode: str = "offline", at: str | None = None) -> dict:
    """What a device config carries: {"content_version", "tags": [[stars, code, text]]}
    of the version in force, `mode` tags only (keypads and kiosks: offline).
    No version in force: {} (a config then carries no tags)."""
    version = in_force(conn, at)
    if version is None:
        return {}
    rows = tags_of(conn, version, mode)
    return {
        "content_version": version,
        "tags": [[row["level"], row["code"], row["text"]] for row in rows],
    }


# --- files and edits -----------------------------------------------------------------


def parse_rows(rows: list[list[str]]) -> dict[str, list[dict]]:
    """The tags of a file, by version; FileProblem names the row and column."""
    if not rows:
        raise FileProblem(1, "version", _("the file is empty"))
    header = []
    for cell in rows[0]:
        name = cell.strip().lower()
        header.append(HEADER_ALIASES.get(name, HEADER_ALIASES.get(cell.strip(), name)))
    for name in header:
        if name and name not in COLUMNS:
            raise FileProblem(1, name, _("unknown column"))
    for name in COLUMNS:
        if name not in header:
            raise FileProblem(1, name, _("missing column"))
    index = {name: header.index(name) for name in COLUMNS}
    found: dict[str, list[dict]] = {}
    seen: dict[tuple, int] = {}
    for number, cells in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in cells):
            continue
        row = {name: (cells[i].strip() if i < len(cells) else "") for name, i in index.items()}
        found.setdefault(_check_row(number, row), []).append({**row, "row": number})
        key = (row["version"], row["code"])
        if key in seen:
            raise FileProblem(
                number,
                "code",
                _("%(code)r already in row %(row)s", code=row["code"], row=seen[key]),
            )
        seen[key] = number
    if sum(len(tags) for tags in found.values()) > MAX_TAGS:
        raise FileProblem(1, "code", _("more than %(n)s tags", n=MAX_TAGS))
    return found


def _check_row(number: int, row: dict) -> str:
    if not VERSION_PATTERN.fullmatch(row["version"]):
        raise FileProblem(number, "version", _("must be 1..32 characters of A-Z a-z 0-9 . _ -"))
    if row["level"] not in {str(s) for s in STARS}:
        raise FileProblem(number, "level", _("must be 1..5"))
    row["level"] = int(row["level"])
    if not valid_tag(row["code"]):
        raise FileProblem(number, "code", _("must be 1..16 characters of A-Z a-z 0-9 . _ -"))
    if not row["text"] or len(row["text"]) > MAX_TEXT or text_problem(row["text"]):
        raise FileProblem(
            number, "text", _("1..%(n)s characters, no control characters", n=MAX_TEXT)
        )
    mode = MODE_ALIASES.get(row["mode"], row["mode"].lower())
    if mode not in MODES:
        raise FileProblem(number, "mode", _("must be online or offline (线上/线下)"))
    row["mode"] = mode
    return row["version"]


def import_rows(
    conn, rows, by: str, in_force_from: str | None = None, label: str = "imported"
) -> list[str]:
    """Store every version of the file (a version already here is refused:
    versions are never rewritten by a file). All or nothing (the caller's
    transaction). Returns the versions added."""
    found = parse_rows(rows)
    if not found:
        raise FileProblem(2, "version", _("no tags in the file"))
    for version, tags in found.items():
        if conn.execute(
            select(db.tag_versions.c.version).where(db.tag_versions.c.version == version)
        ).first():
            raise FileProblem(
                tags[0]["row"], "version", _("version %(v)r already exists", v=version)
            )
    for version, tags in found.items():
        _write_version(conn, version, label[:200], in_force_from, by)
        conn.execute(
            db.content_tags.insert(),
            [{name: tag[name] for name in COLUMNS} for tag in tags],
        )
    return list(found)


def export_rows(conn, version: str) -> list[list]:
    rows = [list(COLUMNS)]
    rows += [[version, t["level"], t["code"], t["text"], t["mode"]] for t in tags_of(conn, version)]
    return rows


def set_in_force(conn, version: str, at: str | None, by: str) -> None:
    changed = conn.execute(
        update(db.tag_versions)
        .where(db.tag_versions.c.version == version)
        .values(
            in_force_from=None if at is None else moment(at), updated_by=by, updated_at=db.utc_now()
        )
    ).rowcount
    if changed != 1:
        raise OrgError(_("version: unknown %(v)r", v=version))


def save_tag(conn, version: str, level, code: str, text: str, mode: str, by: str) -> None:
    """Add or change one tag of a version (the table stays editable)."""
    if (
        conn.execute(
            select(db.tag_versions.c.version).where(db.tag_versions.c.version == version)
        ).first()
        is None
    ):
        raise OrgError(_("version: unknown %(v)r", v=version))
    row = {"version": version, "level": str(level), "code": code, "text": text, "mode": mode}
    try:
        _check_row(0, row)
    except FileProblem as exc:
        raise OrgError(f"{exc.column}: {exc.problem}") from None
    c = db.content_tags.c
    conn.execute(delete(db.content_tags).where(c.version == version, c.code == code))
    conn.execute(db.content_tags.insert().values(**row))
    conn.execute(
        update(db.tag_versions)
        .where(db.tag_versions.c.version == version)
        .values(updated_by=by, updated_at=db.utc_now())
    )


def delete_tag(conn, version: str, code: str) -> bool:
    c = db.content_tags.c
    return bool(
        conn.execute(delete(db.content_tags).where(c.version == version, c.code == code)).rowcount
    )

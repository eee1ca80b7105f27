"""The rating form a citizen fills on a phone (QR pages, web portal), checked.

Two steps, no script: the five levels as five large buttons, then the
reasons (content tags) of the level chosen from the version in force, an
optional comment and an optional phone number with an explicit consent box.
Every problem is a `FormError` naming the field, in the page's language;
nothing is stored until every field is right.
"""

from __future__ import annotations

import re

from flask_babel import gettext as _

from protocols.levels import BAD_STARS, STARS
from protocols.record import text_problem
from sync_server import tags as tag_table
from sync_server.phones import PhoneError, normalise

MAX_COMMENT = 300
MAX_TAGS = 16
TAG_MODE = "offline"  # the services rated here were handled at a window
CASE_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
MARKUP = re.compile(r"[<>]")


class FormError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def choices(conn, stars: int | None) -> dict:
    """The tag version in force and its tags for the level `stars`."""
    version = tag_table.in_force(conn)
    rows = tag_table.tags_of(conn, version, TAG_MODE) if version else []
    return {
        "content_version": version,
        "tags": [t for t in rows if t["level"] == stars],
    }


def level(value) -> int:
    if value not in {str(s) for s in STARS}:
        raise FormError("stars", _("Please choose one of the five levels."))
    return int(value)


def case_number(value: str | None, required: bool) -> str | None:
    value = (value or "").strip()
    if not value:
        if required:
            raise FormError("case_no", _("Case number: please enter the number on your receipt."))
        return None
    if not CASE_PATTERN.fullmatch(value):
        raise FormError(
            "case_no", _("Case number: 1 to 64 letters, digits, dots, underscores or hyphens.")
        )
    return value


def free_text(field: str, value: str | None, limit: int) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    if len(value) > limit:
        raise FormError(field, _("Comment: at most %(n)s characters.", n=limit))
    if MARKUP.search(value):
        raise FormError(field, _("Comment: must not contain < or > (no HTML or script)."))
    if text_problem(value, multiline=True):
        raise FormError(field, _("Comment: contains characters that cannot be stored."))
    return value


def phone_number(form) -> str | None:
    raw = (form.get("phone") or "").strip()
    if not raw:
        return None
    try:
        number = normalise(raw)
    except PhoneError:
        raise FormError(
            "phone", _("Phone: an 11-digit mobile number, or a landline with its area code.")
        ) from None
    if form.get("consent") != "yes":
        raise FormError(
            "consent",
            _("Phone: tick the box to agree to be called back, or leave the number empty."),
        )
    return number


def rating(conn, form, stars: int) -> tuple[dict, str | None]:
    """The record fields of a filled form (tags, comment, content_version) and
    the phone number; FormError for the first problem."""
    offered = choices(conn, stars)
    shown = form.get("content_version") or None
    if shown != offered["content_version"]:
        raise FormError("tags", _("The list of reasons has changed: please choose again."))
    codes = form.getlist("tags")
    allowed = {t["code"] for t in offered["tags"]}
    if len(codes) > MAX_TAGS or len(set(codes)) != len(codes) or not set(codes) <= allowed:
        raise FormError("tags", _("Reasons: choose only from the list shown."))
    comment = free_text("comment", form.get("comment"), MAX_COMMENT)
    if stars in BAD_STARS and not codes and not comment:
        raise FormError(
            "tags",
            _("A dissatisfied rating needs a reason: choose one or write it in the comment."),
        )
    fields = {"comment": comment}
    if offered["content_version"]:
        fields["content_version"] = offered["content_version"]
        fields["tags"] = [c for c in (t["code"] for t in offered["tags"]) if c in codes]
    return fields, phone_number(form)

"""Paper review cards (评议卡): printed per window, typed in by a clerk.

- `/paper` (paper_entry): choose a window of your units and how many cards;
  `POST /paper/cards` hands out the next card numbers of that window
  (`<window>-<serial>`, table paper_serials) and shows the cards to print:
  five level boxes numbered 1-5 (1 = 非常满意, the GB/T 39046 order, as on
  the SMS invitation), each with its numbered reason boxes from the tag
  version in force, a date line, a case number line, a comment box, the
  card number and the window's QR code (to rate on the phone instead).
- `/paper/entry` (paper_entry): one card at a time, made for the keyboard:
  card number, the card's date, the level digit, the reason numbers of that
  level, the case number and the comment, in that tab order; Enter saves and
  the form comes back empty with the date kept and the cursor on the card
  number. A card is entered once; a card of a window outside the clerk's
  units, a number never printed, a date in the future, a level or reason
  that is not on the card are refused with the field named.

Each entry is a rating of channel `paper`, origin `staff_entry`, with
`entered_by`, `entered_at` and `card_date` (docs/protocol.md §1), never
shown as an on-site rating; an entry more than HCP_PAPER_LATE_WORKING_DAYS
working days after the card's date is flagged late (paper_entries.late).
"""

from __future__ import annotations

import datetime as dt
import re

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from protocols.levels import BAD_STARS, GBT39046_CODES
from sync_server import audit, citizen_form, citizen_store, db, org
from sync_server import citizen_tokens as tokens
from sync_server.auth import requires
from sync_server.citizen_form import FormError
from sync_server.citizen_qr import code_svg
from sync_server.schema_citizen import paper_entries, paper_serials

bp = Blueprint("paper", __name__)
MAX_CARDS = 100
CARD_PATTERN = re.compile(r"([A-Za-z0-9._-]{1,64})-([0-9]{5})")
# the digit the clerk types (the box's number on the card) -> stars
DIGIT_STARS = {str(code): stars for stars, code in GBT39046_CODES}
STARS_DIGIT = {stars: code for stars, code in GBT39046_CODES}


def _windows_in_scope() -> list[dict]:
    with db.get_engine().connect() as conn:
        return org.members(conn, "windows", current_user.scope())


def _window_in_scope(window_id: str) -> dict | None:
    if not org.CODE_PATTERN.fullmatch(window_id or ""):
        return None
    with db.get_engine().connect() as conn:
        window = org.get(conn, "windows", window_id)
    if window is None or window.get("retired_at") or not current_user.sees_unit(window["unit"]):
        return None
    return window


def card_rows(conn) -> tuple[str | None, list[dict]]:
    """The levels as printed, 1..5, each with its numbered reasons."""
    chosen = citizen_form.choices(conn, None)
    version = chosen["content_version"]
    rows = []
    for stars, code in sorted(GBT39046_CODES, key=lambda pair: pair[1]):
        reasons = citizen_form.choices(conn, stars)["tags"] if version else []
        rows.append({"digit": code, "stars": stars, "reasons": reasons})
    return version, rows


@bp.get("/paper")
@requires("paper_entry")
def index():
    return render_template("paper_index.html", windows=_windows_in_scope(), error=None)


@bp.post("/paper/cards")
@requires("paper_entry")
def cards():
    window = _window_in_scope(request.form.get("window", ""))
    count = request.form.get("count", "")
    error = None
    if window is None:
        error = _("Window: choose a window of your units.")
    elif not count.isdigit() or not 1 <= int(count) <= MAX_CARDS:
        error = _("Number of cards: 1 to %(n)s.", n=MAX_CARDS)
    elif len(window["id"]) > 64:
        error = _("Window: the code is too long for a card number.")
    if error:
        windows = _windows_in_scope()
        return render_template("paper_index.html", windows=windows, error=error), 400
    count = int(count)
    engine = db.get_engine()
    try:
        with engine.begin() as conn:
            first = _reserve(conn, window["id"], count)
            audit.record(conn, "paper.cards", window["id"], after={"first": first, "count": count})
            version, rows = card_rows(conn)
    except FormError as exc:
        windows = _windows_in_scope()
        return render_template("paper_index.html", windows=windows, error=exc.message), 400
    from sync_server.citizen_sheets import window_url

    url = window_url(window["id"])
    numbers = [f"{window['id']}-{serial:05d}" for serial in range(first, first + count)]
    return render_template(
        "paper_cards.html",
        window=window,
        numbers=numbers,
        rows=rows,
        version=version,
        qr=code_svg(url, 120),
        url=url,
    )


def _reserve(conn, window_id: str, count: int) -> int:
    s = paper_serials.c
    last = conn.execute(select(s.last).where(s.window_id == window_id).with_for_update()).scalar()
    values = {"updated_by": current_user.actor, "updated_at": db.utc_now()}
    if last is None:
        conn.execute(paper_serials.insert().values(window_id=window_id, last=count, **values))
        return 1
    if last + count > 99999:
        raise FormError("count", _("Number of cards: this window has no card numbers left."))
    conn.execute(
        paper_serials.update().where(s.window_id == window_id).values(last=last + count, **values)
    )
    return last + 1


# --- entry ----------------------------------------------------------------------------


def _today() -> dt.date:
    return tokens.today(current_app.config["HCP_TIMEZONE"])


def _card(conn, text: str) -> dict:
    found = CARD_PATTERN.fullmatch((text or "").strip())
    if not found:
        raise FormError("card_no", _("Card number: as printed on the card, like A01-00012."))
    window_id, serial = found.group(1), int(found.group(2))
    window = org.get(conn, "windows", window_id)
    last = conn.execute(
        select(paper_serials.c.last).where(paper_serials.c.window_id == window_id)
    ).scalar()
    if window is None or last is None or not 1 <= serial <= last:
        raise FormError("card_no", _("Card number: no such card was printed."))
    if not current_user.sees_unit(window["unit"]):
        raise FormError("card_no", _("Card number: the card's window is outside your units."))
    done = conn.execute(
        select(paper_entries.c.record_id).where(paper_entries.c.card_no == found.group(0))
    ).scalar()
    if done is not None:
        raise FormError("card_no", _("Card number: this card has been entered already."))
    return {"card_no": found.group(0), "window": window}


def _card_date(text: str) -> dt.date:
    try:
        day = dt.date.fromisoformat((text or "").strip())
    except ValueError:
        raise FormError("card_date", _("Date on the card: as YYYY-MM-DD.")) from None
    if day > _today():
        raise FormError("card_date", _("Date on the card: must not be in the future."))
    if day < _today() - dt.timedelta(days=366):
        raise FormError("card_date", _("Date on the card: more than a year ago."))
    return day


def _reasons(text: str, row: dict) -> list[str]:
    numbers = re.split(r"[\s,，]+", (text or "").strip())
    codes = []
    for number in filter(None, numbers):
        if not number.isdigit() or not 1 <= int(number) <= len(row["reasons"]):
            raise FormError(
                "reasons",
                _(
                    "Reasons: the numbers of the boxes ticked beside the level, 1 to %(n)s.",
                    n=len(row["reasons"]),
                ),
            )
        code = row["reasons"][int(number) - 1]["code"]
        if code not in codes:
            codes.append(code)
    return codes


def late(conn, card_day: dt.date, entered_day: dt.date) -> bool:
    from sync_server import workdays

    try:
        calendar = workdays.Calendar(conn)
    except ImportError:  # no calendar table yet: the published schedules only
        calendar = workdays.Calendar(None)
    days = current_app.config["HCP_PAPER_LATE_WORKING_DAYS"]
    return entered_day > calendar.add_working_days(card_day, days)


def enter(form) -> tuple[str, bool]:
    """Check and store one card; (record id, late). FormError names the field."""
    engine = db.get_engine()
    with engine.begin() as conn:
        card = _card(conn, form.get("card_no"))
        card_day = _card_date(form.get("card_date"))
        digit = (form.get("level") or "").strip()
        if digit not in DIGIT_STARS:
            raise FormError("level", _("Level: the number of the box ticked, 1 to 5."))
        stars = DIGIT_STARS[digit]
        version, rows = card_rows(conn)
        row = next(r for r in rows if r["stars"] == stars)
        codes = _reasons(form.get("reasons"), row)
        case_no = citizen_form.case_number(form.get("case_no"), required=False)
        comment = citizen_form.free_text("comment", form.get("comment"), citizen_form.MAX_COMMENT)
        if stars in BAD_STARS and not codes and not comment:
            raise FormError(
                "reasons",
                _("A dissatisfied rating needs a reason: choose one or write it in the comment."),
            )
        now = dt.datetime.now(dt.UTC)
        rating = {
            "channel": "paper",
            "stars": stars,
            "tags": codes,
            "content_version": version if codes else None,
            "comment": comment,
            "case_no": case_no,
            "window_id": None if case_no else card["window"]["id"],
            "org_id": None if case_no else card["window"]["unit"],
            "entered_by": current_user.actor[:64],
            "entered_at": citizen_store.utc_second(now),
            "card_date": card_day.isoformat(),
        }
        try:
            record_id = citizen_store.store(conn, engine, rating)
        except citizen_store.Refused as exc:
            if exc.field == "case_no":
                raise FormError("case_no", _("Case number: no service has this number.")) from None
            raise FormError(exc.field, f"{exc.field}: {exc.message}") from None
        is_late = late(conn, card_day, _today())
        conn.execute(
            paper_entries.insert().values(
                card_no=card["card_no"],
                record_id=record_id,
                window_id=card["window"]["id"],
                late=is_late,
                entered_by=current_user.actor[:64],
                entered_at=db.utc_now(),
            )
        )
        audit.record(conn, "paper.entry", record_id, after={"card_no": card["card_no"]})
    return record_id, is_late


@bp.route("/paper/entry", methods=["GET", "POST"])
@requires("paper_entry")
def entry():
    engine = db.get_engine()
    with engine.connect() as conn:
        version, rows = card_rows(conn)
    page = {"rows": rows, "error": None, "field": None, "form": {}}
    if request.method == "GET":
        saved = request.args.get("saved", "")
        page["saved"] = saved if CARD_PATTERN.fullmatch(saved) else None
        page["saved_late"] = request.args.get("late") == "1"
        page["form"] = {"card_date": request.args.get("date", "")[:10]}
        return render_template("paper_entry.html", **page)
    try:
        _record_id, is_late = enter(request.form)
    except FormError as exc:
        page.update(error=exc.message, field=exc.field, form=request.form, saved=None)
        return render_template("paper_entry.html", **page), 400
    except IntegrityError:  # the same card entered at the same moment elsewhere
        page.update(
            error=_("Card number: this card has been entered already."),
            field="card_no",
            form=request.form,
            saved=None,
        )
        return render_template("paper_entry.html", **page), 400
    return redirect(
        url_for(
            "paper.entry",
            saved=request.form.get("card_no", "").strip(),
            date=request.form.get("card_date", "").strip(),
            late="1" if is_late else None,
        )
    )

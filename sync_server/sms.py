"""Rating by SMS: an invitation after a service event with a phone, and the replies.

The conversation of one service event (table sms_conversations):

- `queued` (`sending` while the gateway has it): the business system
  registered the event with the applicant's phone
  (citizen.keep_event_phone); `deliver` sends the invitation
  (INVITATION) through the gateway when the registering request ends, with
  up to RETRY_EACH older invitations the gateway refused before (a
  scheduler may call `deliver` too);
- `invited`: a reply is parsed. 1-5 in half- or full-width digits (the
  GB/T 39046 order the invitation spells out: 1 = 非常满意 … 5 = 非常不满意)
  or a level word (非常满意, 满意, 基本满意, 不满意, 非常不满意), optionally
  followed by the reason ("4 等候时间长"). Stray text gets the help reply;
  a reply after the rating period gets PERIOD_OVER; a rating of an event
  rated already by another channel gets 已评价;
- a rating stored → `done`: thanks. A 差评 without a reason is stored at
  once (in real time, marked `reason_owed` by the store) and the state becomes
  `reason_asked`: the next reply is the reason, kept in sms_reasons for the
  差评's case (the rating itself is never changed);
- `done`: any further rating reply gets 已评价.

Every message in and out is logged in sms_messages with what became of it
(a reply that fits nothing is kept there with its outcome, never dropped).
Numbers are never stored in clear (phones.py).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import unicodedata

from flask import Blueprint, current_app, g, jsonify, request
from sqlalchemy import select

from protocols.levels import BAD_STARS, GBT39046_CODES, LEVEL_NAMES
from sync_server import citizen_store, db, phones
from sync_server import sms_gateways as gateways
from sync_server.schema_citizen import sms_conversations, sms_messages, sms_reasons

log = logging.getLogger(__name__)
bp = Blueprint("sms", __name__)

MAX_INBOUND = 1000  # characters of a reply taken at all
MAX_REASON = 300
RETRY_EACH = 5  # older queued invitations tried again after each registering request
STALE_SENDING_S = 600  # a claim older than this was a delivery that died: queued again
# reply digit (GB/T 39046 满意度代码) -> stars, through the one table in protocols
DIGIT_STARS = {str(code): stars for stars, code in GBT39046_CODES}
# level words, longest first so 非常不满意 is never read as 不满意 or 满意
WORD_STARS = sorted(((name, stars) for stars, name in LEVEL_NAMES), key=lambda w: -len(w[0]))
SEPARATORS = " \t\r\n,，.。:：;；、-—"

INVITATION = (
    "【临淄区政务服务】您{day}办理的业务（办件号{case_no}）已办结。"
    "请回复数字评价：1非常满意 2满意 3基本满意 4不满意 5非常不满意；"
    "不满意请附原因，如“4 等候时间长”。{last_day}前回复有效。"
)
HELP = (
    "未能识别您的回复。请回复数字1-5评价：1非常满意 2满意 3基本满意 4不满意 5非常不满意，"
    "也可回复评价词，如“满意”。"
)
THANKS = "感谢您的评价！"
ASK_REASON = "感谢您的评价。请回复不满意的原因（如“等候时间长”），以便我们核实改进。"
REASON_THANKS = "已收到您反映的问题，我们将尽快核实处理并回复您。"
ALREADY = "已评价"
ALREADY_ASK = "已评价。如有不满意的原因，请直接回复原因文字。"
PERIOD_OVER = "评价期已过：办结之日起{days}个工作日内可评价，本次回复未计入评价。"
NOT_INVITED = "您没有待评价的业务。"
BAD_TEXT = "回复中不能包含“<”或“>”，请重新回复。"
TOO_LONG = "原因最多{n}字，请精简后重新回复。"
EMPTY_REASON = "请回复不满意的原因文字。"


def init_app(app) -> None:
    from sync_server import csrf

    csrf.exempt(bp)
    app.register_blueprint(bp)

    @app.teardown_request
    def _deliver_after(_exc):
        queued = g.pop("hcp_sms_queued", None)
        if queued and _exc is None:
            # this request's invitations, and a few older ones still waiting
            gateway = gateways.from_config(current_app.config)
            zone = current_app.config["HCP_TIMEZONE"]
            limit = len(queued) + RETRY_EACH
            deliver(db.get_engine(), gateway, phones.app_key(), zone, limit=limit)


# --- parsing ---------------------------------------------------------------------


def normalise(text: str) -> str:
    """Full-width digits and punctuation made half-width (NFKC), spaces trimmed."""
    return unicodedata.normalize("NFKC", text).strip()


def parse(text: str) -> tuple[int, str | None] | None:
    """(stars, reason or None) of a rating reply, or None when it is none."""
    text = normalise(text)
    if not text:
        return None
    level, rest = None, ""
    if text[0] in DIGIT_STARS and (
        len(text) == 1 or text[1] in SEPARATORS or not text[1].isdigit()
    ):
        level, rest = DIGIT_STARS[text[0]], text[1:]
    else:
        for word, stars in WORD_STARS:
            if text.startswith(word):
                level, rest = stars, text[len(word) :]
                break
    if level is None:
        return None
    rest = rest.strip(SEPARATORS)
    return level, rest or None


def reason_problem(text: str | None) -> str | None:
    if text is None:
        return None
    if len(text) > MAX_REASON:
        return TOO_LONG.format(n=MAX_REASON)
    if "<" in text or ">" in text:
        return BAD_TEXT
    if any(ord(ch) < 32 and ch not in "\t\r\n" for ch in text):
        return BAD_TEXT
    return None


# --- invitations ------------------------------------------------------------------


def queue_invitation(conn, key: bytes, event: dict, phone: str) -> None:
    """Queue the invitation of a service event with a phone (caller's
    transaction); sent by `deliver` once the transaction is committed."""
    c = sms_conversations.c
    found = conn.execute(
        select(c.id).where(c.case_no == event["case_no"], c.service_no == event["service_no"])
    ).first()
    if found is not None:
        return
    conn.execute(
        sms_conversations.insert().values(
            case_no=event["case_no"],
            service_no=event["service_no"],
            lookup=phones.lookup(key, phone),
            sealed=phones.seal(key, phone),
            state="queued",
            closes_on=citizen_store.last_day(conn, event).isoformat(),
            updated_at=db.utc_now(),
        )
    )
    try:
        g.hcp_sms_queued = [*g.get("hcp_sms_queued", []), event["case_no"]]
    except RuntimeError:  # no app context: the caller delivers
        pass


def _log(conn, lookup: str, direction: str, text: str, outcome=None, conversation_id=None):
    conn.execute(
        sms_messages.insert().values(
            conversation_id=conversation_id,
            lookup=lookup,
            direction=direction,
            text=text[:MAX_INBOUND],
            outcome=outcome,
            at=db.utc_now(),
        )
    )


def invitation_text(conn, conversation, zone: str) -> str:
    from sync_server.citizen_tokens import today

    event = citizen_store.find_event(conn, conversation.case_no, conversation.service_no)
    handled = None
    if event:
        moment = dt.datetime.fromisoformat(event["handled_at"].replace("Z", "+00:00"))
        handled = today(zone, moment)
    day = f"{handled.month}月{handled.day}日" if handled else ""
    last = dt.date.fromisoformat(conversation.closes_on)
    return INVITATION.format(
        day=day, case_no=conversation.case_no, last_day=f"{last.month}月{last.day}日"
    )


def deliver(
    engine, gateway, key: bytes, zone: str = "Asia/Shanghai", limit: int | None = None
) -> int:
    """Send the queued invitations, newest first (at most `limit`); how many
    went out. Without a gateway, or while it refuses, they stay queued. The
    day of handling in the text is a day in `zone` (HCP_TIMEZONE)."""
    if gateway is None:
        return 0
    c = sms_conversations.c
    stale = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=STALE_SENDING_S)).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ"
    )
    with engine.begin() as conn:  # a delivery that died while sending: try again
        conn.execute(
            sms_conversations.update()
            .where(c.state == "sending", c.updated_at < stale)
            .values(state="queued", updated_at=db.utc_now())
        )
        query = select(sms_conversations).where(c.state == "queued").order_by(c.id.desc())
        queued = conn.execute(query.limit(limit) if limit else query).all()
    sent = 0
    for conversation in queued:
        # claimed first, so two deliveries at once never send one invitation twice
        with engine.begin() as conn:
            claimed = conn.execute(
                sms_conversations.update()
                .where(c.id == conversation.id, c.state == "queued")
                .values(state="sending", updated_at=db.utc_now())
            ).rowcount
            text = invitation_text(conn, conversation, zone)
        if claimed != 1:
            continue
        try:
            gateway.send(phones.unseal(key, conversation.sealed), text)
        except (gateways.GatewayError, phones.Tampered) as exc:
            log.warning("SMS invitation %s not sent: %s", conversation.id, exc)
            state, values = "queued", {}
        else:
            state, values = "invited", {"invited_at": db.utc_now()}
            sent += 1
        with engine.begin() as conn:
            conn.execute(
                sms_conversations.update()
                .where(c.id == conversation.id)
                .values(state=state, updated_at=db.utc_now(), **values)
            )
            if state == "invited":
                _log(conn, conversation.lookup, "out", text, "invitation", conversation.id)
    return sent


# --- replies ----------------------------------------------------------------------


def _set_state(conn, conversation_id: int, state: str, record_id=None) -> None:
    values = {"state": state, "updated_at": db.utc_now()}
    if record_id is not None:
        values["record_id"] = record_id
    conn.execute(
        sms_conversations.update().where(sms_conversations.c.id == conversation_id).values(**values)
    )


def answer(engine, key: bytes, phone: str, text: str) -> tuple[str, str]:
    """Handle one reply from `phone`: (the text to send back, the outcome)."""
    lookup = phones.lookup(key, phone)
    c = sms_conversations.c
    with engine.connect() as conn:
        conversation = conn.execute(
            select(sms_conversations)
            .where(c.lookup == lookup, c.state.not_in(("queued", "sending")))
            .order_by(c.id.desc())
            .limit(1)
        ).first()
    if conversation is None:
        return _logged(engine, lookup, text, NOT_INVITED, "not_invited", None)
    cid = conversation.id
    parsed = parse(text)
    if conversation.state == "reason_asked":
        if parsed is not None and parsed[1] is None:  # a level alone: a second rating
            return _logged(engine, lookup, text, ALREADY_ASK, "second", cid)
        reason = normalise(text)
        if not reason:
            return _logged(engine, lookup, text, EMPTY_REASON, "empty_reason", cid)
        problem = reason_problem(reason)
        if problem:
            return _logged(engine, lookup, text, problem, "bad_reason", cid)
        with engine.begin() as conn:
            # the state moves once: a second reason sent at the same moment is a stray
            taken = conn.execute(
                sms_conversations.update()
                .where(sms_conversations.c.id == cid, sms_conversations.c.state == "reason_asked")
                .values(state="done", updated_at=db.utc_now())
            ).rowcount
            if taken == 1:
                conn.execute(
                    sms_reasons.insert().values(
                        record_id=conversation.record_id, text=reason, received_at=db.utc_now()
                    )
                )
                _log(conn, lookup, "in", text, "reason", cid)
                _log(conn, lookup, "out", REASON_THANKS, None, cid)
        if taken != 1:
            return _logged(engine, lookup, text, ALREADY, "second", cid)
        return REASON_THANKS, "reason"
    if parsed is None:
        return _logged(engine, lookup, text, HELP, "stray", cid)
    if conversation.state == "done":
        return _logged(engine, lookup, text, ALREADY, "second", cid)
    stars, reason = parsed
    problem = reason_problem(reason)
    if problem:
        return _logged(engine, lookup, text, problem, "bad_reason", cid)
    return _rate(engine, key, phone, lookup, conversation, stars, reason, text)


def _rate(engine, key, phone, lookup, conversation, stars, reason, text):
    cid = conversation.id
    try:
        with engine.begin() as conn:
            event = citizen_store.find_event(conn, conversation.case_no, conversation.service_no)
            refused = citizen_store.check_rateable(conn, event) if event else "not_found"
            if refused == "period_over":
                days = current_app.config.get("HCP_RATING_PERIOD_WORKING_DAYS", 5)
                raise _Answer(PERIOD_OVER.format(days=days), "late")
            if refused:
                raise _Answer(ALREADY, "second")
            rating = {
                "channel": "sms",
                "stars": stars,
                "comment": reason,
                "case_no": conversation.case_no,
                "service_no": conversation.service_no,
            }
            record_id = citizen_store.store(conn, engine, rating)
            phones.keep(conn, key, record_id, phone)
            asking = stars in BAD_STARS and reason is None
            _set_state(conn, cid, "reason_asked" if asking else "done", record_id)
            reply = ASK_REASON if asking else THANKS
            _log(conn, lookup, "in", text, "rated", cid)
            _log(conn, lookup, "out", reply, None, cid)
        return reply, "rated"
    except _Answer as exc:
        return _logged(engine, lookup, text, exc.reply, exc.outcome, cid)
    except citizen_store.Refused as exc:
        if exc.key == "already_rated":
            return _logged(engine, lookup, text, ALREADY, "second", cid)
        return _logged(engine, lookup, text, HELP, f"refused {exc.field}"[:32], cid)


class _Answer(Exception):
    def __init__(self, reply: str, outcome: str):
        super().__init__(outcome)
        self.reply = reply
        self.outcome = outcome


def _logged(engine, lookup, text, reply, outcome, cid):
    with engine.begin() as conn:
        _log(conn, lookup, "in", text, outcome, cid)
        _log(conn, lookup, "out", reply, None, cid)
    return reply, outcome


def reasons_of(conn, record_id: str) -> str | None:
    """The reason a rater sent by SMS after a 差评 (for the 差评's case)."""
    return conn.execute(
        select(sms_reasons.c.text).where(sms_reasons.c.record_id == record_id)
    ).scalar()


# --- the inbound route ---------------------------------------------------------------


def _bad(message: str, status: int = 400):
    return jsonify(error=message), status


@bp.post("/sms/inbound")
def inbound():
    secret = current_app.config.get("HCP_SMS_INBOUND_SECRET")
    if not secret:
        return _bad("inbound SMS is not configured (HCP_SMS_INBOUND_SECRET)", 503)
    body = request.get_data(cache=False)
    if len(body) > 16_384:
        return _bad("body: larger than 16384 bytes", 413)
    if not gateways.signature_ok(secret, body, request.headers.get("X-HCP-Signature")):
        return _bad("X-HCP-Signature: does not verify", 401)
    try:
        message = json.loads(body.decode())
    except (UnicodeDecodeError, ValueError):
        return _bad("body: not JSON")
    if not isinstance(message, dict):
        return _bad("body: must be an object")
    sender, text = message.get("from"), message.get("text")
    if not isinstance(sender, str):
        return _bad("from: must be a string")
    if not isinstance(text, str) or len(text) > MAX_INBOUND:
        return _bad(f"text: must be a string of at most {MAX_INBOUND} characters")
    try:
        phone = phones.normalise(sender)
    except phones.PhoneError as exc:
        return _bad(str(exc))
    key = phones.app_key()
    engine = db.get_engine()
    reply, outcome = answer(engine, key, phone, text)
    gateway = gateways.from_config(current_app.config)
    sent = False
    if gateway is not None:
        try:
            gateway.send(phone, reply)
            sent = True
        except gateways.GatewayError as exc:
            log.warning("SMS reply not sent: %s", exc)
    return jsonify(reply=reply, outcome=outcome, sent=sent)

"""The steps of a 差评 case, its reopening, appeals and their decisions.

Every change here is one transaction on the caller's connection that checks
the case's state, changes it only if nobody changed it meanwhile, writes the
step (who, when, what, the note) to `case_steps` and an entry to the audit
log. A refusal is a CaseError naming the field; nothing is changed then.

The order (cases.WORKFLOW): verify (call the rater back; a reason the rating
owed is recorded here, on the case) → classify (fix_now 立行立改, ledger 台账,
explanation; the deadline is set now) → rectify (for an explanation: the
explanation given) → feed back to the rater → return visit with the rater's
verdict → close. No step can be skipped or repeated; a supervisor reopens a
closed case with a reason, which sends it back to rectification.

An appeal (复核纠正): the unit contests the 差评 with evidence; a supervisor
decides upheld (the case goes on), mistaken (误评) or malicious (恶意): the
rating is voided through `figures.set_excluded` (kept, out of every figure)
and the case ends as voided.
"""

from __future__ import annotations

import datetime as dt
import json
import re

from flask import has_request_context
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import select

from sync_server import audit, db, figures, org
from sync_server.cases import DEADLINE_KINDS, KINDS, get_case
from sync_server.schema_cases import case_appeals, case_steps, cases

NEXT_ACTION = {
    "open": "verify",
    "verified": "classify",
    "classified": "rectify",
    "rectified": "feed_back",
    "fed_back": "visit",
    "visited": "close",
}
ACTIONS = tuple(NEXT_ACTION.values())
RESULT = {
    "verify": "verified",
    "classify": "classified",
    "rectify": "rectified",
    "feed_back": "fed_back",
    "visit": "visited",
    "close": "closed",
}
STAMP = {
    "verify": "verified_at",
    "classify": "classified_at",
    "rectify": "rectified_at",
    "feed_back": "fed_back_at",
    "visit": "visited_at",
    "close": "closed_at",
}
VERDICTS = ("satisfied", "unsatisfied")
OUTCOMES = ("upheld", "mistaken", "malicious")
VOIDING = ("mistaken", "malicious")
MAX_NOTE = 2000
MAX_REASON = 500
MAX_EVIDENCE = 4000
MAX_FILE = 2 * 1024 * 1024
FILE_TYPES = ("application/pdf", "image/jpeg", "image/png", "text/plain")
DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
UTC_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")

STATE_LABELS = {
    "open": _l("awaiting verification"),
    "verified": _l("verified"),
    "classified": _l("classified"),
    "rectified": _l("rectified"),
    "fed_back": _l("fed back"),
    "visited": _l("visited"),
    "closed": _l("closed"),
    "voided": _l("voided on review"),
}
ACTION_LABELS = {
    "open": _l("Case opened"),
    "assign": _l("Assign"),
    "verify": _l("Verify (call the rater back)"),
    "classify": _l("Classify"),
    "rectify": _l("Rectify or explain"),
    "feed_back": _l("Feed back to the rater"),
    "visit": _l("Return visit"),
    "close": _l("Close"),
    "reopen": _l("Reopen"),
    "appeal": _l("Appeal"),
    "decide": _l("Appeal decided"),
    "void": _l("Rating voided"),
}
KIND_LABELS = {
    "fix_now": _l("Fix at once (立行立改)"),
    "ledger": _l("Ledger with a deadline (台账)"),
    "explanation": _l("Explanation (no legal basis)"),
}
VERDICT_LABELS = {"satisfied": _l("satisfied"), "unsatisfied": _l("not satisfied")}
OUTCOME_LABELS = {
    "pending": _l("pending"),
    "upheld": _l("upheld"),
    "mistaken": _l("mistaken rating (误评)"),
    "malicious": _l("malicious rating (恶意)"),
}


FIELD_LABELS = {
    "action": _l("Step"),
    "note": _l("Note"),
    "reason": _l("Reason"),
    "problem": _l("Problem found"),
    "kind": _l("Classification"),
    "due_at": _l("Deadline"),
    "verdict": _l("Return visit"),
    "unit": _l("Unit"),
    "state": _l("State"),
    "appeal": _l("Appeal"),
    "evidence": _l("Evidence"),
    "file": _l("File"),
    "outcome": _l("Decision"),
}


class CaseError(ValueError):
    """A refused change; `field` names what was wrong, str() (in the request's
    language) says why. The API answers it in English."""

    def __init__(self, field: str, message):
        super().__init__(field)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"

    def localized(self) -> str:
        """For the pages: the field's name and the problem in the page's language."""
        label = FIELD_LABELS.get(self.field, self.field)
        return _("%(field)s: %(problem)s", field=label, problem=self.message)


def _who() -> tuple[str, str]:
    if has_request_context() and current_user.is_authenticated:
        return current_user.actor, current_user.role
    return "system", "system"


def _text(values: dict, name: str, limit: int, required: bool = False) -> str | None:
    value = values.get(name)
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise CaseError(name, _l("must be text"))
    value = value.strip()
    if not value:
        if required:
            raise CaseError(name, _l("required"))
        return None
    if len(value) > limit:
        raise CaseError(name, _l("at most %(limit)s characters", limit=limit))
    if "\x00" in value:
        raise CaseError(name, _l("must not contain NUL characters"))
    if any("\ud800" <= ch <= "\udfff" for ch in value):  # no database can store one
        raise CaseError(name, _l("must not contain lone surrogates"))
    return value


def _now() -> str:
    return db.utc_now()


def _second(text: str) -> str:
    """A stored time (with or without microseconds) as YYYY-MM-DDTHH:MM:SSZ."""
    return text[:19] + "Z"


def _record(conn, case: dict, action: str, to_state: str, note, detail=None, changes=None):
    """Move `case` to `to_state` with `changes` if its state is still the one
    read, and record the step; CaseError when someone else was quicker."""
    now = _now()
    values = {"state": to_state, "updated_at": now, **(changes or {})}
    done = conn.execute(
        cases.update()
        .where(cases.c.id == case["id"], cases.c.state == case["state"])
        .values(**values)
    )
    if done.rowcount != 1:
        raise CaseError("state", _l("the case changed meanwhile; reload it and try again"))
    actor, role = _who()
    conn.execute(
        case_steps.insert().values(
            case_id=case["id"],
            action=action,
            from_state=case["state"],
            to_state=to_state,
            actor=actor,
            role=role,
            at=now,
            note=note,
            detail=json.dumps(detail, ensure_ascii=False, sort_keys=True) if detail else None,
        )
    )
    after = {"state": to_state, **(changes or {}), **(detail or {})}
    audit.record(conn, f"case.{action}", f"cases:{case['id']}", {"state": case["state"]}, after)
    return {**case, **values}


def _check_next(case: dict, action: str) -> None:
    state = case["state"]
    if state == "voided":
        raise CaseError("action", _l("the rating was voided on review; this case is finished"))
    if state == "closed":
        raise CaseError("action", _l("this case is closed; a supervisor may reopen it"))
    expected = NEXT_ACTION[state]
    if action != expected:
        raise CaseError(
            "action",
            _l(
                "this case is %(state)s; its next step is %(next)s",
                state=STATE_LABELS[state],
                next=ACTION_LABELS[expected],
            ),
        )
    if case["unit_id"] is None:
        raise CaseError("unit", _l("this case has no unit yet; an admin assigns it first"))


def parse_due(text: str) -> str:
    """A deadline given by hand: YYYY-MM-DD (the end of that day, Beijing
    time) or YYYY-MM-DDTHH:MM:SSZ; as UTC text."""
    from sync_server import deadlines

    if DATE.fullmatch(text):
        try:
            day = dt.date.fromisoformat(text)
        except ValueError:
            raise CaseError("due_at", _l("not a calendar date")) from None
        return deadlines.end_of_local_day(day)
    if UTC_TIME.fullmatch(text):
        try:
            dt.datetime.fromisoformat(text[:-1])
        except ValueError:
            raise CaseError("due_at", _l("not a calendar time")) from None
        return text
    raise CaseError("due_at", _l("must be YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)"))


def take_step(conn, case_id: int, action: str, values: dict, units=None) -> dict:
    """Take the case's next step (`action`, one of ACTIONS) with `values`
    (note, and per action: reason, problem / kind, due_at / verdict)."""
    if action not in ACTIONS:
        raise CaseError("action", _l("must be one of %(names)s", names=", ".join(ACTIONS)))
    case = get_case(conn, case_id, units)
    if case is None:
        raise LookupError(case_id)
    _check_next(case, action)
    note = _text(values, "note", MAX_NOTE, required=True)
    changes = {STAMP[action]: _now()}
    detail = {}
    if action == "verify":
        reason = _text(values, "reason", MAX_REASON, required=case["reason_owed"])
        problem = _text(values, "problem", MAX_NOTE)
        if reason:
            changes["reason"] = detail["reason"] = reason
        if problem:
            changes["problem"] = detail["problem"] = problem
    elif action == "classify":
        changes.update(_classification(conn, case, values))
        detail = {k: changes[k] for k in ("kind", "deadline_kind", "due_at")}
    elif action == "visit":
        verdict = values.get("verdict")
        if verdict not in VERDICTS:
            raise CaseError("verdict", _l("must be satisfied or unsatisfied"))
        changes["visit_verdict"] = detail["verdict"] = verdict
    return _record(conn, case, action, RESULT[action], note, detail, changes)


def _classification(conn, case: dict, values: dict) -> dict:
    from sync_server import deadlines

    kind = values.get("kind")
    if kind not in KINDS:
        raise CaseError("kind", _l("must be one of %(names)s", names=", ".join(KINDS)))
    deadline_kind = DEADLINE_KINDS[kind]
    start = _second(case["created_at"])
    allowed = deadlines.due_at(conn, case["unit_id"], deadline_kind, start)
    wanted = _text(values, "due_at", 20)
    due = allowed
    if wanted:
        due = parse_due(wanted)
        if due <= _second(_now()):
            raise CaseError("due_at", _l("is in the past"))
        if due > allowed:
            raise CaseError(
                "due_at", _l("later than the rules allow (%(allowed)s UTC)", allowed=allowed)
            )
    return {"kind": kind, "deadline_kind": deadline_kind, "due_at": due}


def reopen(conn, case_id: int, values: dict) -> dict:
    """A supervisor sends a closed case back to rectification, with a reason."""
    case = get_case(conn, case_id)
    if case is None:
        raise LookupError(case_id)
    if case["state"] != "closed":
        raise CaseError("action", _l("only a closed case can be reopened"))
    reason = _text(values, "reason", MAX_NOTE, required=True)
    changes = {
        "reopened": case["reopened"] + 1,
        "rectified_at": None,
        "fed_back_at": None,
        "visited_at": None,
        "visit_verdict": None,
        "closed_at": None,
    }
    return _record(
        conn, case, "reopen", "classified", reason, {"reopened": changes["reopened"]}, changes
    )


def assign(conn, case_id: int, unit_id: str, note=None) -> dict:
    """An admin gives a case (an unassigned one, or a wrongly assigned one) to a unit."""
    case = get_case(conn, case_id)
    if case is None:
        raise LookupError(case_id)
    if case["state"] in ("closed", "voided"):
        raise CaseError("action", _l("a finished case keeps its unit"))
    unit = org.get(conn, "units", unit_id) if isinstance(unit_id, str) and unit_id else None
    if unit is None or unit.get("retired_at"):
        raise CaseError("unit", _l("no such unit"))
    note = _text({"note": note}, "note", MAX_NOTE)
    changes = {"unit_id": unit_id, "assigned_by": "manual"}
    detail = {"unit_id": unit_id, "was": case["unit_id"]}
    return _record(conn, case, "assign", case["state"], note, detail, changes)


# --- appeals ----------------------------------------------------------------------------


def file_appeal(conn, case_id: int, values: dict, upload=None, units=None) -> int:
    """The case's unit contests its 差评 with `evidence` (and optionally a
    file: (name, content type, bytes)); returns the appeal's id."""
    case = get_case(conn, case_id, units)
    if case is None:
        raise LookupError(case_id)
    if case["state"] == "voided":
        raise CaseError("action", _l("the rating was voided on review; this case is finished"))
    earlier = conn.execute(
        select(case_appeals.c.state).where(case_appeals.c.case_id == case_id)
    ).scalar()
    if earlier == "pending":
        raise CaseError("appeal", _l("an appeal of this case awaits a decision"))
    if earlier is not None:
        raise CaseError("appeal", _l("this case was appealed already and the appeal decided"))
    evidence = _text(values, "evidence", MAX_EVIDENCE, required=True)
    file_values = {}
    if upload is not None:
        name, content_type, data = upload
        if len(data) > MAX_FILE:
            raise CaseError("file", _l("larger than %(limit)s bytes", limit=MAX_FILE))
        if content_type not in FILE_TYPES:
            raise CaseError("file", _l("must be one of %(names)s", names=", ".join(FILE_TYPES)))
        if not data:
            raise CaseError("file", _l("empty"))
        safe_name = re.sub(r"[^\w.\-]+", "_", name or "evidence")[:200] or "evidence"
        file_values = {
            "file_name": safe_name,
            "file_type": content_type,
            "file_data": data,
            "file_bytes": len(data),
        }
    actor, _role = _who()
    now = _now()
    appeal_id = conn.execute(
        case_appeals.insert().values(
            case_id=case_id,
            record_id=case["record_id"],
            unit_id=case["unit_id"],
            evidence=evidence,
            filed_by=actor,
            filed_at=now,
            state="pending",
            **file_values,
        )
    ).inserted_primary_key[0]
    detail = {"appeal_id": appeal_id, "file": file_values.get("file_name")}
    _record(conn, case, "appeal", case["state"], evidence, detail, {"appeal_state": "pending"})
    return appeal_id


def get_appeal(conn, appeal_id: int, units=None) -> dict | None:
    row = conn.execute(select(case_appeals).where(case_appeals.c.id == appeal_id)).first()
    if row is None or (units is not None and row.unit_id not in units):
        return None
    return dict(row._mapping)


def decide(conn, appeal_id: int, values: dict) -> dict:
    """A supervisor's decision on a pending appeal, with a reason. Mistaken
    or malicious voids the rating (kept stored, out of every figure)."""
    appeal = get_appeal(conn, appeal_id)
    if appeal is None:
        raise LookupError(appeal_id)
    if appeal["state"] != "pending":
        raise CaseError("appeal", _l("decided already"))
    outcome = values.get("outcome")
    if outcome not in OUTCOMES:
        raise CaseError("outcome", _l("must be one of %(names)s", names=", ".join(OUTCOMES)))
    reason = _text(values, "reason", MAX_NOTE, required=True)
    actor, _role = _who()
    now = _now()
    done = conn.execute(
        case_appeals.update()
        .where(case_appeals.c.id == appeal_id, case_appeals.c.state == "pending")
        .values(state=outcome, decided_by=actor, decided_at=now, decision_reason=reason)
    )
    if done.rowcount != 1:
        raise CaseError("appeal", _l("decided already"))
    case = get_case(conn, appeal["case_id"])
    changes = {"appeal_state": outcome}
    to_state = case["state"]
    if outcome in VOIDING:
        figures.set_excluded(conn, [appeal["record_id"]], True)
        to_state = "voided"
        changes["closed_at"] = now
    detail = {"appeal_id": appeal_id, "outcome": outcome}
    return _record(conn, case, "decide", to_state, reason, detail, changes)


def appeals(conn, where, limit: int = 200) -> list[dict]:
    a = case_appeals.c
    shown = [c for c in case_appeals.columns if c.name != "file_data"]
    rows = conn.execute(select(*shown).where(where).order_by(a.id.desc()).limit(limit))
    return [dict(r._mapping) for r in rows]


def void_cases_of(conn, record_ids: list[str], note: str) -> int:
    """End the cases of ratings voided elsewhere (a confirmed gaming flag, say)
    as voided, each with a step and an audit entry; call it in the transaction
    that calls figures.set_excluded for them. Returns how many cases ended."""
    if not record_ids:
        return 0
    rows = conn.execute(
        select(cases).where(cases.c.record_id.in_(list(record_ids)), cases.c.state != "voided")
    ).all()
    for row in rows:
        _record(conn, dict(row._mapping), "void", "voided", note, None, {"closed_at": _now()})
    return len(rows)

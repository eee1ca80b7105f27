"""One rating per service event: the step that ties every new rating to its
service event (channels.before_store) and the binding of ratings that came
before their event (channels.bind_earlier). The rules are in
sync_server/channels.py and docs/service-events.md.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import bindparam, select

from sync_server import db
from sync_server.channels import UNBOUND_DAYS, Periods, event_dict, lock_cases, utc_text
from sync_server.schema_channels import event_ratings, service_events, unbound_ratings


def _rating_day(row: dict, periods: Periods) -> dt.date:
    """The local day a rating was made: a paper card's date, else its effective time."""
    if row.get("card_date"):
        return dt.date.fromisoformat(row["card_date"])
    return periods.day(row["effective_at"])


def _events_of(conn, rows: list[dict]) -> tuple[dict, dict]:
    """(events by (case_no, service_no), events by a rating id they are tied to)
    for the rows of one batch: one query for the cases (locked), one more only
    when appended ratings name the rating they follow without a case. The
    caller has locked (`lock_cases`)."""
    case_nos = sorted({row["case_no"] for row in rows if row.get("case_no")})
    by_key: dict = {}
    by_case: dict = {}
    if case_nos:
        e = service_events.c
        query = (
            select(service_events).where(e.case_no.in_(case_nos)).order_by(e.id).with_for_update()
        )
        for row in conn.execute(query):
            event = event_dict(row)
            by_key[(event["case_no"], event["service_no"])] = event
            by_case.setdefault(event["case_no"], []).append(event)
    follows = sorted(
        {row["follows"] for row in rows if row.get("follows") and not row.get("case_no")}
    )
    by_rating: dict = {}
    if follows:
        r = event_ratings.c
        query = (
            select(service_events, r.rating_id.label("tied_rating"))
            .join(event_ratings, r.event_id == service_events.c.id)
            .where(r.rating_id.in_(follows))
            .order_by(service_events.c.id)
            .with_for_update(of=service_events)
        )
        for row in conn.execute(query):
            event = {k: v for k, v in row._mapping.items() if k != "tied_rating"}
            event = by_key.setdefault((event["case_no"], event["service_no"]), event)
            by_rating[row.tied_rating] = event
    for case_no, events in by_case.items():
        if len(events) == 1:  # a rating with the case number only: its one event
            by_key[(case_no, None)] = events[0]
    return by_key, by_rating


def _unbound_firsts(conn, rows: list[dict], by_key: dict) -> dict:
    """(case_no, service_no) -> the rating that counts so far, for the rows
    that name a case and service no event was registered for (one query)."""
    keys = {
        (row["case_no"], row["service_no"])
        for row in rows
        if row.get("case_no") and row.get("service_no")
    }
    keys = {key for key in keys if key not in by_key}
    if not keys:
        return {}
    u = unbound_ratings.c
    found = conn.execute(
        select(u.case_no, u.service_no, u.rating_id)
        .where(u.case_no.in_(sorted({case for case, _ in keys})), u.repeat_of.is_(None))
        .order_by(u.received_at, u.rating_id)
    )
    firsts: dict = {}
    for case_no, service_no, rating_id in found:
        if (case_no, service_no) in keys:
            firsts.setdefault((case_no, service_no), rating_id)
    return firsts


def before_store(conn, rows: list[dict]) -> None:
    """Tie each new rating of a registered service event to it: the first
    counts (bound as the event's rating_id, or appended_id for attempt 2), a
    later one gets repeat_of; in the caller's transaction, with one query for
    the batch's events and one write each for the bindings and the ties. A
    rating of a case and service not registered (yet) is kept in
    unbound_ratings, the first of them counting, until its event comes."""
    for row in rows:
        row.setdefault("repeat_of", None)
    if not any(row.get("case_no") or row.get("follows") for row in rows):
        return
    lock_cases(
        conn,
        [(r["case_no"], r["service_no"]) for r in rows if r.get("case_no") and r.get("service_no")],
    )
    by_key, by_rating = _events_of(conn, rows)
    firsts = _unbound_firsts(conn, rows, by_key)
    periods = Periods(conn)
    now = db.utc_now()
    ties, changed, unbound = [], {}, []
    for row in rows:
        if row.get("case_no"):
            event = by_key.get((row["case_no"], row.get("service_no")))
        else:
            event = by_rating.get(row.get("follows"))
        if event is None:
            if row.get("case_no") and row.get("service_no"):
                key = (row["case_no"], row["service_no"])
                row["repeat_of"] = firsts.setdefault(key, row["id"])
                if row["repeat_of"] == row["id"]:
                    row["repeat_of"] = None
                unbound.append(
                    {"rating_id": row["id"], "case_no": key[0], "service_no": key[1],
                     "received_at": row["received_at"], "repeat_of": row["repeat_of"]}
                )  # fmt: skip
            continue
        if row.get("attempt") == 2 and event["rating_id"]:
            slot = "appended_id"
        else:
            slot = "rating_id"
        if event[slot]:
            row["repeat_of"] = event[slot]
            role = "repeat"
        else:
            event[slot] = row["id"]
            changed[event["id"]] = event
            role = "first" if slot == "rating_id" else "appended"
        late = _rating_day(row, periods) > periods.end(event["handled_at"])
        ties.append(
            {"rating_id": row["id"], "event_id": event["id"], "role": role, "late": late, "at": now}
        )
    if changed:
        e = service_events.c
        conn.execute(
            service_events.update()
            .where(e.id == bindparam("event_id"))
            .values(rating_id=bindparam("new_rating"), appended_id=bindparam("new_appended")),
            [
                {"event_id": i, "new_rating": ev["rating_id"], "new_appended": ev["appended_id"]}
                for i, ev in changed.items()
            ],
        )
    if ties:
        conn.execute(event_ratings.insert(), ties)
    if unbound:
        conn.execute(unbound_ratings.insert(), unbound)


def bind_earlier(conn, event: dict) -> None:
    """A service event just registered: bind the ratings of its case and
    service stored before it (the first counts, the others are repeats of it
    already), in the registering transaction. `event` is updated."""
    u, ev = unbound_ratings.c, db.evaluations.c
    earlier = conn.execute(
        select(u.rating_id, u.repeat_of, ev.effective_at, ev.card_date)
        .join(db.evaluations, ev.id == u.rating_id)
        .where(u.case_no == event["case_no"], u.service_no == event["service_no"])
        .order_by(u.received_at, u.rating_id)
    ).all()
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=UNBOUND_DAYS)
    conn.execute(unbound_ratings.delete().where(u.received_at < utc_text(cutoff)))
    if not earlier:
        return
    periods = Periods(conn)
    now = db.utc_now()
    ties = []
    for row in earlier:
        role = "repeat" if row.repeat_of else "first"
        if role == "first" and event["rating_id"] is None:
            event["rating_id"] = row.rating_id
        day = _rating_day({"effective_at": row.effective_at, "card_date": row.card_date}, periods)
        late = day > periods.end(event["handled_at"])
        ties.append(
            {"rating_id": row.rating_id, "event_id": event["id"], "role": role, "late": late,
             "at": now}
        )  # fmt: skip
    conn.execute(
        service_events.update()
        .where(service_events.c.id == event["id"])
        .values(rating_id=event["rating_id"])
    )
    conn.execute(event_ratings.insert(), ties)
    conn.execute(
        unbound_ratings.delete().where(
            u.case_no == event["case_no"], u.service_no == event["service_no"]
        )
    )

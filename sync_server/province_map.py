"""The one mapping between our records and the provincial payloads (issue 13).

Our side keeps `stars` (5 = 非常满意), our own channel names, UTC times and
our organisation's codes; the province wants `satisfaction` (5 = 非常满意,
protocols.levels maps it explicitly), `pf` (the admin's table in
sync_server/pf_map.py), content codes comma-joined, Asia/Shanghai local
times "YYYY-MM-DD HH:MM:SS", a 12-digit division code (`areaCode`) and the
responsible department's 18-character credit code (`deptCode`).

- `areaCode`: the nearest division (district, street, town, village,
  community) at or above the unit, its code padded to 12 digits;
- `deptCode`: the nearest unit at or above it that has one in the setting
  HCP_PROVINCE_DEPT_CODES ({unit id: credit code}), else the setting
  HCP_PROVINCE_DEPT_CODE (the district's own).

A rating's payload takes taskCode, deptCode and areaCode from its service
event where the collector has one, since the province checks they agree.
A 差评 stored with `reason_owed` goes up with the reason recorded since
(outbox.reasons_for: the call-back's or the rater's SMS follow-up): each
part of it (split at commas and 、;) that is the text of a content tag of
the rating's level, in the version in force at its time, goes as that code;
when some part is no tag's text, the whole reason goes as free text too
(`reason_content`).

The reverse functions (`event_record`, `rating_record`) read a payload back
into our names; the tests use them with the simulated province as the judge.
Nothing here reads a rater's contact: the province gets no rater identity
from us (DOMAIN §7: nothing goes to third parties).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from zoneinfo import ZoneInfo

from sqlalchemy import select

from protocols import levels
from protocols.levels import MappingError
from sync_server import db, org, outbox, pf_map

LOCAL = ZoneInfo("Asia/Shanghai")
LOCAL_FORMAT = "%Y-%m-%d %H:%M:%S"
REASON_PARTS = re.compile(r"[,，、;；\n]+")
MAX_CONTENT = 500  # the province's evalContent
DIVISION_KINDS = ("district", "street", "town", "village", "community")
DEFAULTS = {
    "HCP_PROVINCE_AREA_CODE": "370305000000",  # 临淄区
    # a placeholder the demo uses; set the district's real credit code
    "HCP_PROVINCE_DEPT_CODE": "11370305MB0000000X",
    "HCP_PROVINCE_DEPT_CODES": {},
}


def local_time(utc_text: str) -> str:
    """'2026-11-26T08:30:00Z' (or with microseconds) -> '2026-11-26 16:30:00'."""
    moment = dt.datetime.fromisoformat(utc_text.replace("Z", "+00:00"))
    return moment.astimezone(LOCAL).strftime(LOCAL_FORMAT)


def utc_time(local_text: str) -> str:
    """'2026-11-26 16:30:00' (Asia/Shanghai) -> '2026-11-26T08:30:00Z'."""
    moment = dt.datetime.strptime(local_text, LOCAL_FORMAT).replace(tzinfo=LOCAL)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Organisation:
    """The unit tree as the mapping needs it, read once per batch."""

    def __init__(self, conn, settings: dict | None = None):
        self.settings = DEFAULTS | (settings or {})
        self.units = {u["id"]: u for u in org.units(conn, include_retired=True)}

    def _up(self, unit_id):
        seen = set()
        while unit_id is not None and unit_id not in seen:
            seen.add(unit_id)
            unit = self.units.get(unit_id)
            if unit is None:
                return
            yield unit
            unit_id = unit["parent"]

    def area_code(self, unit_id) -> str:
        for unit in self._up(unit_id):
            if unit["kind"] in DIVISION_KINDS and unit["id"].isdigit() and len(unit["id"]) <= 12:
                return unit["id"].ljust(12, "0")
        return self.settings["HCP_PROVINCE_AREA_CODE"]

    def dept_code(self, unit_id) -> str:
        codes = self.settings["HCP_PROVINCE_DEPT_CODES"] or {}
        for unit in self._up(unit_id):
            if unit["id"] in codes:
                return codes[unit["id"]]
        return self.settings["HCP_PROVINCE_DEPT_CODE"]


def event_payload(event: dict, organisation: Organisation) -> dict:
    """A stored service event as the province registers it."""
    return {
        "projectNo": event["case_no"],
        "serviceNo": event["service_no"],
        "taskCode": event["item_code"],
        "deptCode": organisation.dept_code(event["unit_id"]),
        "areaCode": organisation.area_code(event["unit_id"]),
        "userId": event.get("staff_id") or "",
        "handleTime": local_time(event["handled_at"]),
    }


def find_event(conn, case_no, service_no) -> dict | None:
    from sync_server.schema_channels import service_events

    if not case_no or not service_no:
        return None
    row = conn.execute(
        select(service_events).where(
            service_events.c.case_no == case_no, service_events.c.service_no == service_no
        )
    ).first()
    return dict(row._mapping) if row else None


def rating_payload(
    record: dict, organisation: Organisation, pf_table, event: dict | None, unit_id=None
) -> dict:
    """A stored rating as the province takes it; MappingError names what is missing."""
    if not record.get("case_no") or not record.get("service_no"):
        raise MappingError(
            "case_no: the rating names no service event (case and service number);"
            " the province takes ratings of registered service events only"
        )
    if event is not None:
        task, unit = event["item_code"], event["unit_id"]
        staff = event.get("staff_id") or record.get("staff_id") or ""
    else:
        task, unit = record.get("item_code"), unit_id
        staff = record.get("case_staff_id") or record.get("staff_id") or ""
    if not task:
        raise MappingError("item_code: the rating has no service item code (事项实施编码)")
    tags = record.get("tags")
    if isinstance(tags, str):
        tags = json.loads(tags or "[]")
    return {
        "evaluationId": record["id"],
        "projectNo": record["case_no"],
        "serviceNo": record["service_no"],
        "taskCode": task,
        "deptCode": organisation.dept_code(unit),
        "areaCode": organisation.area_code(unit),
        "userId": staff,
        "pf": pf_map.to_pf(pf_table, record["channel"], record.get("client")),
        "satisfaction": levels.stars_to_satisfaction(record["stars"]),
        "evalDetail": ",".join(tags or ()),
        "evalContent": record.get("comment") or "",
        "assessTime": local_time(record["effective_at"]),
        "assessNumber": record["attempt"],
        "contentVersion": record.get("content_version") or "",
    }


def _plain(text: str) -> str:
    return re.sub(r"[\s。.!！]+", "", text)


def reason_content(reason: str, stars: int, tagset) -> tuple[list[str], str]:
    """(content codes, free text) for a reason recorded after the rating:
    `tagset` is [(level, code, text)] of the version in force. Codes for the
    parts that are a tag's text at the rating's level; the whole reason as
    text when any part is not (or nothing is left over: no text)."""
    by_text = {_plain(text): code for level, code, text in tagset if level == stars}
    codes, unmatched = [], False
    for part in REASON_PARTS.split(reason):
        if not _plain(part):
            continue
        code = by_text.get(_plain(part))
        if code is None:
            unmatched = True
        elif code not in codes:
            codes.append(code)
    return codes, reason.strip()[:MAX_CONTENT] if unmatched or not codes else ""


def with_owed_reason(conn, record: dict, reason: str | None, cache: dict) -> dict:
    """The record as it goes up: an owed reason recorded since put in its
    tags and comment (a copy; the stored rating never changes)."""
    from sync_server import tags as tag_table

    tags = record.get("tags")
    if isinstance(tags, str):
        tags = json.loads(tags or "[]")
    if not record.get("reason_owed") or not reason or tags or record.get("comment"):
        return record
    version = tag_table.in_force(conn, record["effective_at"])
    key = ("tagset", version)
    if key not in cache:
        cache[key] = (
            [(t["level"], t["code"], t["text"]) for t in tag_table.tags_of(conn, version)]
            if version
            else []
        )
    codes, text = reason_content(reason, record["stars"], cache[key])
    return {
        **record,
        "tags": codes,
        "content_version": version if codes else record.get("content_version"),
        "comment": text or None,
    }


def event_record(payload: dict) -> dict:
    """A registered event read back into our names (codes stay the province's)."""
    return {
        "case_no": payload["projectNo"],
        "service_no": payload["serviceNo"],
        "item_code": payload["taskCode"],
        "staff_id": payload["userId"] or None,
        "handled_at": utc_time(payload["handleTime"]),
        "dept_code": payload["deptCode"],
        "area_code": payload["areaCode"],
    }


def rating_record(payload: dict, pf_table) -> dict:
    """A rating payload read back into our names: stars, channel, client, tags ..."""
    channel, client = pf_map.from_pf(pf_table, payload["pf"])
    return {
        "id": payload["evaluationId"],
        "case_no": payload["projectNo"],
        "service_no": payload["serviceNo"],
        "item_code": payload["taskCode"],
        "stars": levels.satisfaction_to_stars(payload["satisfaction"]),
        "channel": channel,
        "client": client or None,
        "tags": [code for code in payload["evalDetail"].split(",") if code],
        "comment": payload["evalContent"] or None,
        "effective_at": utc_time(payload["assessTime"]),
        "attempt": payload["assessNumber"],
        "content_version": payload["contentVersion"] or None,
    }


def _tables(conn, settings, cache) -> None:
    if "org" not in cache:
        cache["org"] = Organisation(conn, settings)
        cache["pf"] = tuple(
            pf_map.Row(*row)
            for row in conn.execute(select(db.pf_map.c.channel, db.pf_map.c.client, db.pf_map.c.pf))
        )


def prefetch(conn, rows: list[dict], settings: dict | None = None, cache=None) -> dict:
    """Read what `build` needs for a batch of outbox rows in three queries
    (the service events, the ratings with their units) instead of per row."""
    from sync_server.schema_channels import service_events

    cache = cache if cache is not None else {}
    _tables(conn, settings, cache)
    ids = [row["ref"] for row in rows if row["kind"] == "rating"]
    ratings = {}
    if ids:
        query = select(db.evaluations, org.resolved_unit().label("resolved_unit")).where(
            db.evaluations.c.id.in_(ids)
        )
        ratings = {r.id: dict(r._mapping) for r in conn.execute(query)}
    owed = [i for i, r in ratings.items() if r.get("reason_owed")]
    cache["reasons"] = outbox.reasons_for(conn, owed) if owed else {}
    pairs = {(row["case_no"], row["service_no"]) for row in rows if row["kind"] == "event"}
    pairs |= {(r["case_no"], r["service_no"]) for r in ratings.values() if r["case_no"]}
    events = {}
    cases = sorted({case for case, _service in pairs if case})
    if cases:
        e = service_events.c
        for event in conn.execute(select(service_events).where(e.case_no.in_(cases))):
            if (event.case_no, event.service_no) in pairs:
                events[(event.case_no, event.service_no)] = dict(event._mapping)
    cache["ratings"], cache["events"] = ratings, events
    return cache


def build(conn, row: dict, settings: dict | None = None, cache=None) -> dict:
    """The payload of one outbox row (kind, ref, case_no, service_no) from
    what the collector stores now (read ahead by `prefetch` where it ran)."""
    cache = cache if cache is not None else {}
    _tables(conn, settings, cache)
    organisation = cache["org"]
    events = cache.get("events", {})
    if row["kind"] == "event":
        key = (row["case_no"], row["service_no"])
        event = events.get(key) or find_event(conn, *key)
        if event is None:
            raise MappingError(f"service event {row['ref']}: not stored")
        return event_payload(event, organisation)
    record = cache.get("ratings", {}).get(row["ref"])
    if record is None:
        found = conn.execute(
            select(db.evaluations, org.resolved_unit().label("resolved_unit")).where(
                db.evaluations.c.id == row["ref"]
            )
        ).first()
        if found is None:
            raise MappingError(f"rating {row['ref']}: not stored")
        record = dict(found._mapping)
    reasons = cache.get("reasons", {})
    if record.get("reason_owed") and record["id"] not in reasons:
        reasons = outbox.reasons_for(conn, [record["id"]])
    record = with_owed_reason(conn, record, reasons.get(record["id"]), cache)
    key = (record["case_no"], record["service_no"])
    event = events.get(key) or find_event(conn, *key)
    unit = None if event is not None else record["resolved_unit"] or record.get("case_org_id")
    return rating_payload(record, organisation, cache["pf"], event, unit)

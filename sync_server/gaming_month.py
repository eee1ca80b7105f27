"""A generated month of ratings with planted gaming, and what each rule finds.

`generate` stores a month of honest ratings at a hall's windows (each with a
service event, made in opening hours on working days, with the level mix,
comments, contacts, boots, sign-ins and short afternoon pauses of an
ordinary month: a keypad takes no rating while paused, so honest ratings
fall outside the pauses) and plants
known cases of each kind of gaming among them; it returns the ground truth.
`check` runs the rules (sync_server/gaming.py) over the month and reports,
per rule, how many planted cases it found and how many flags it raised on
honest ratings only. Everything goes in through features.store_evaluations.

    hcp outbox gaming-check --days 30 --seed 1
"""

from __future__ import annotations

import datetime as dt
import json
import random
from zoneinfo import ZoneInfo

from sync_server import contacts, db, features, gaming, org, outbox, tags
from sync_server.schema_channels import service_events
from sync_server.schema_outbox import window_pauses

LOCAL = ZoneInfo("Asia/Shanghai")
START = dt.date(2026, 11, 2)  # a Monday
LEVEL_MIX = ((5, 70), (4, 18), (3, 7), (2, 3), (1, 2))
GOOD_TAGS = {5: "H501", 4: "H401", 3: "H301", 2: "H201", 1: "H101"}
OPENING = ("", "今天", "这次", "窗口", "工作人员")
PRAISE = ("服务很好", "办事效率高", "态度热情", "讲解耐心", "一次办好", "流程清楚", "很方便")
ADDED = ("谢谢", "点赞", "满意", "辛苦了", "下次还来", "非常感谢", "给工作人员点赞")


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Month:
    def __init__(self, engine, days: int, seed: int, windows: int = 6, per_day: int = 24):
        self.engine = engine
        self.random = random.Random(seed)
        self.days = [START + dt.timedelta(days=n) for n in range(days)]
        self.windows = [f"GW{n:02d}" for n in range(1, windows + 1)]
        self.per_day = per_day
        self.rows: list[dict] = []
        self.events: list[dict] = []
        self.contacts: list[tuple[str, str]] = []
        self.truth: dict[str, list[set[str]]] = {rule: [] for rule in gaming.RULES}
        self.count = 0
        self.phones = [f"139{n:08d}" for n in range(3000)]
        self.sessions: list[tuple[str, dt.datetime, str]] = []  # planted sign-ins
        # pauses the window PCs reported: (window, start, end), honest and planted;
        # drawn from a random of their own so the rest of the month stays as it was
        self.pauses: list[tuple[str, dt.datetime, dt.datetime]] = []
        self._pause_random = random.Random(seed + 7919)

    # --- making records ---------------------------------------------------------------
    def rating(self, window: str, at: dt.datetime, stars=None, case=True, **extra) -> dict:
        self.count += 1
        stars = stars or self.random.choices(*zip(*LEVEL_MIX, strict=True))[0]
        device = f"kp-{window}"
        record_id = f"{device}:{self.count}"
        row = {
            "id": record_id,
            "device_id": device,
            "seq": self.count,
            "stars": stars,
            "channel": "keypad",
            "tags": json.dumps([GOOD_TAGS[stars]]),
            "content_version": tags.DEFAULT_VERSION,
            "window_id": window,
            "staff_id": f"s-{window}",
            "rated_at": _utc(at),
            "clock": "ntp",
            "boot_id": f"{device}-{at.date().isoformat()}",
            "origin": "citizen",
            "attempt": 1,
            "received_at": _utc(at + dt.timedelta(seconds=3)),
            "effective_at": _utc(at),
            "time_source": "device",
            "excluded": False,
            "reason_owed": False,
        }
        if case:
            case_no = f"G{self.count:06d}"
            row.update(case_no=case_no, service_no="1")
            handled = extra.pop("handled", at - dt.timedelta(minutes=self.random.randint(1, 8)))
            self.events.append(
                {
                    "case_no": case_no,
                    "service_no": "1",
                    "item_code": "370305-XK-0001",
                    "unit_id": "hall-gm",
                    "window_id": window,
                    "staff_id": row["staff_id"],
                    "handled_at": _utc(handled),
                    "registered_at": _utc(handled + dt.timedelta(seconds=5)),
                    "source": "demo",
                }
            )
        row.update(extra)
        self.rows.append(row)
        return row

    def _local(self, day: dt.date, minutes: float) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(), LOCAL) + dt.timedelta(minutes=minutes)

    def _plan_pauses(self) -> None:
        """Honest pauses (a third of the afternoons, 10-20 minutes from about
        15:45) and the planted ones (16:40-17:00 on four days)."""
        r = self._pause_random
        for day in self.days:
            if not gaming._workday(day):
                continue
            for window in self.windows:
                if r.random() < 0.3:
                    start = self._local(day, r.uniform(15 * 60 + 45, 16 * 60 + 20))
                    self.pauses.append(
                        (window, start, start + dt.timedelta(minutes=r.uniform(10, 20)))
                    )
        for n in range(4):
            start = self._local(self._day(5 + n * 4), 16 * 60 + 40)
            self.pauses.append((self.windows[(n + 4) % len(self.windows)], start,
                                start + dt.timedelta(minutes=20)))  # fmt: skip

    def _outside_pauses(self, window: str, at: dt.datetime) -> dt.datetime:
        """A keypad ignores keys while paused: the citizen rates after the resume."""
        for paused_window, start, end in self.pauses:
            if paused_window == window and start <= at < end:
                return end + dt.timedelta(seconds=40)
        return at

    def honest(self) -> None:
        self._plan_pauses()
        for day in self.days:
            if not gaming._workday(day):
                continue
            for window in self.windows:
                # a second staff member takes some afternoons (an honest sign-in)
                relief = self.random.random() < 0.3
                for _ in range(self.per_day):
                    minute = self.random.uniform(9 * 60, 17 * 60 + 15)
                    at = self._outside_pauses(window, self._local(day, minute))
                    row = self.rating(window, at, case=self.random.random() > 0.04)
                    if relief and minute > 14 * 60:
                        row["staff_id"] = f"s-{window}-b"
                    if self.random.random() < 0.12:
                        row["comment"] = "".join(
                            self.random.choice(words) for words in (OPENING, PRAISE, ADDED)
                        )
                    if self.random.random() < 0.15:
                        self.contacts.append((row["id"], self.random.choice(self.phones)))

    # --- planting -------------------------------------------------------------------------
    def _day(self, index: int) -> dt.date:
        workdays = [d for d in self.days if gaming._workday(d)]
        return workdays[index % len(workdays)]

    def plant(self) -> None:
        r, w = self.random, self.windows
        for n in range(4):  # paper cards typed in by the staff member they rate
            at = self._local(self._day(3 + n * 4), 10 * 60 + n)
            row = self.rating(w[n % len(w)], at, stars=5, channel="paper", origin="staff_entry",
                              device_id=None, seq=None, boot_id=None)  # fmt: skip
            row.update(entered_by=row["staff_id"], entered_at=row["received_at"],
                       card_date=at.date().isoformat(), id=f"paper/{self.count}")  # fmt: skip
            self.truth["staff_entry"].append({row["id"]})
        for n in range(4):  # bursts of 8 top ratings in 4 minutes, no case started
            start = self._local(self._day(2 + n * 5), 11 * 60 + 7)
            ids = {self.rating(w[(n + 1) % len(w)], start + dt.timedelta(seconds=30 * k),
                               stars=5, case=False)["id"] for k in range(8)}  # fmt: skip
            self.truth["burst_no_case"].append(ids)
        for n in range(6):  # ratings late at night, or on a Sunday
            day = self._day(n * 3)
            if n % 2:
                day = day + dt.timedelta(days=6 - day.weekday())  # that week's Sunday
            row = self.rating(w[n % len(w)], self._local(day, 22 * 60 + 10 * n), stars=5)
            self.truth["outside_hours"].append({row["id"]})
        for n in range(5):  # rated half an hour before the case was handled
            at = self._local(self._day(4 + n * 3), 10 * 60 + 30)
            row = self.rating(w[n % len(w)], at, stars=1, handled=at + dt.timedelta(minutes=30),
                              comment=None)  # fmt: skip
            self.truth["before_handled"].append({row["id"]})
        for n in range(3):  # one number behind seven cases
            phone = f"1370000000{n}"
            ids = set()
            for k in range(7):
                at = self._local(self._day(n * 2 + k * 3), 9 * 60 + 40 + k)
                row = self.rating(w[k % len(w)], at, stars=1 if n == 2 else 5)
                self.contacts.append((row["id"], phone))
                ids.add(row["id"])
            self.truth["one_phone_many"].append(ids)
        texts = ("窗口工作人员服务特别热情周到，非常满意！", "材料一次性告知，效率很高，点赞！",
                 "态度恶劣，拖延办理，强烈投诉")  # fmt: skip
        for n, text in enumerate(texts):  # the same words, one window, within a week
            ids = set()
            for k in range(6):
                at = self._local(self._day(n * 6 + k), 15 * 60 + k)
                row = self.rating(w[n % len(w)], at, stars=1 if n == 2 else 5, comment=text)
                ids.add(row["id"])
            self.truth["identical_text"].append(ids)
        for n in range(3):  # a new staff member signs in; six top ratings follow at once
            window = w[(n + 2) % len(w)]
            start = self._local(self._day(6 + n * 6), 13 * 60 + 31)
            ids = {self.rating(window, start + dt.timedelta(seconds=70 * k), stars=5,
                               staff_id=f"s-plant-{n}")["id"] for k in range(6)}  # fmt: skip
            self.sessions.append((window, start, f"s-plant-{n}"))
            self.truth["top_after_signin"].append(ids)
        for n in range(2):  # a keypad rebooted all day, its clock set back two hours
            window = w[(n + 3) % len(w)]
            day = self._day(9 + n * 7)
            ids = set()
            for k in range(6):
                at = self._local(day, 9 * 60 + 45 * k)
                row = self.rating(window, at, stars=5, boot_id=f"kp-{window}-x{n}-{k // 1}")
                ids.add(row["id"])
            at = self._local(day, 9 * 60 + 45 * 5 + 10)
            row = self.rating(window, at - dt.timedelta(hours=2), stars=5,
                              boot_id=f"kp-{window}-x{n}-5")  # fmt: skip
            row["received_at"] = _utc(at)
            row["_made"] = _utc(at)  # made now, its clock two hours behind
            ids.add(row["id"])
            self.truth["clock_boot"].append(ids)
        for n, (window, start, _end) in enumerate(self.pauses[-4:]):
            # while the window is paused, a window QR rating comes in: staff at work
            row = self.rating(window, start + dt.timedelta(minutes=8), stars=5,
                              channel="qr_window", device_id=None, seq=None, boot_id=None,
                              id=f"qr_window/pause-{n}")  # fmt: skip
            self.truth["while_paused"].append({row["id"]})
        r.shuffle(self.rows)

    # --- storing --------------------------------------------------------------------------
    def _fix_sequences(self) -> None:
        """One window has one staff member at a time, and a keypad numbers its
        ratings in the order it makes them."""
        for window, start, staff in self.sessions:
            end = _utc(start + dt.timedelta(minutes=90))
            for row in self.rows:
                if row["window_id"] == window and _utc(start) <= row["effective_at"] < end:
                    row["staff_id"] = staff
        by_device: dict = {}
        for row in self.rows:
            if row.get("device_id"):
                by_device.setdefault(row["device_id"], []).append(row)
        for rows in by_device.values():
            rows.sort(key=lambda row: row.get("_made") or row["effective_at"])
            for seq, row in enumerate(rows, start=1):
                row["seq"] = seq

    def store(self) -> None:
        self._fix_sequences()
        with self.engine.begin() as conn:
            org.add(conn, "units", "hall-gm", "政务服务大厅", "370305", kind="hall")
            for window in self.windows:
                org.add(conn, "windows", window, f"{window} 窗口", "hall-gm")
        with self.engine.begin() as conn:
            conn.execute(
                window_pauses.insert(),
                [{"window_id": window, "paused_at": _utc(start), "resumed_at": _utc(end),
                  "reported_by": "token:month", "received_at": _utc(start)}
                 for window, start, end in self.pauses],
            )  # fmt: skip
            for start in range(0, len(self.events), 500):
                part = self.events[start : start + 500]
                conn.execute(service_events.insert(), part)
                for event in part:
                    outbox.event_registered(conn, event)
        columns = [column.name for column in db.evaluations.columns]
        self.rows = [{name: row.get(name) for name in columns} for row in self.rows]
        for row in self.rows:
            row["excluded"] = row["reason_owed"] = False
        self.rows.sort(key=lambda row: row["effective_at"])
        with self.engine.begin() as conn:
            for start in range(0, len(self.rows), 500):
                features.store_evaluations(conn, self.engine, self.rows[start : start + 500])
            conn.execute(
                db.contacts.insert(),
                [contacts.sealed_row(self.engine, rid, phone, db.utc_now())
                 for rid, phone in self.contacts],
            )  # fmt: skip


def generate(engine, days: int = 30, seed: int = 1, windows: int = 6, per_day: int = 24):
    """Store the month; returns (truth, first UTC time, end UTC time)."""
    org.seed(engine)
    tags.seed(engine)
    month = Month(engine, days, seed, windows, per_day)
    month.honest()
    month.plant()
    month.store()
    since = _utc(dt.datetime.combine(month.days[0], dt.time(), LOCAL))
    until = _utc(dt.datetime.combine(month.days[-1] + dt.timedelta(days=1), dt.time(), LOCAL))
    return month.truth, since, until, len(month.rows)


def score(findings: list[dict], truth: dict) -> dict:
    """Per rule: planted cases found, planted cases in all, flags on honest ratings only."""
    planted = set().union(*(case for cases in truth.values() for case in cases))
    report = {}
    for rule in gaming.RULES:
        mine = [f for f in findings if f["rule"] == rule]
        named = [set(f["evidence"]["records"]) for f in mine]
        found = sum(1 for case in truth[rule] if any(case & ids for ids in named))
        honest = sum(1 for ids in named if not ids & planted)
        report[rule] = {"planted": len(truth[rule]), "found": found, "honest_flags": honest,
                        "flags": len(mine)}  # fmt: skip
    return report


def check(db_url: str | None = None, days: int = 30, seed: int = 1, **sizes) -> dict:
    import tempfile

    folder = tempfile.TemporaryDirectory() if db_url is None else None
    engine = db.make_engine(db_url or f"sqlite:///{folder.name}/month.db")
    db.init(engine)
    truth, since, until, stored = generate(engine, days, seed, **sizes)
    with engine.connect() as conn:
        findings = gaming.scan(conn, since, until)
    report = {"ratings": stored, "days": days, "seed": seed, "rules": score(findings, truth)}
    engine.dispose()
    if folder is not None:
        folder.cleanup()
    return report


def describe(report: dict) -> str:
    lines = [
        f"{report['ratings']} ratings over {report['days']} days (seed {report['seed']})",
        f"{'rule':<18} {'planted':>7} {'found':>6} {'flags':>6} {'honest flagged':>15}",
    ]
    for rule, row in report["rules"].items():
        lines.append(f"{rule:<18} {row['planted']:>7} {row['found']:>6} {row['flags']:>6} "
                     f"{row['honest_flags']:>15}")  # fmt: skip
    return "\n".join(lines)


def plant_burst(engine, device_id: str, window_id: str, count: int = 8, at=None) -> list[str]:
    """For the demo: `count` top ratings on one keypad within a few minutes
    with no case started, stored the collector's way; returns their ids.
    A scan (gaming.run) then flags them for a supervisor."""
    at = at or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    columns = [column.name for column in db.evaluations.columns]
    rows = []
    for n in range(count):
        moment = _utc(at + dt.timedelta(seconds=25 * n))
        row = dict.fromkeys(columns)
        row.update(
            id=f"{device_id}:demo-burst-{at.strftime('%H%M%S')}-{n}",
            device_id=device_id, stars=5, channel="keypad", window_id=window_id,
            tags=json.dumps([GOOD_TAGS[5]]), content_version=tags.DEFAULT_VERSION,
            rated_at=moment, clock="ntp", origin="citizen", attempt=1,
            received_at=db.utc_now(), effective_at=moment, time_source="device",
            excluded=False, reason_owed=False,
        )  # fmt: skip
        rows.append(row)
    with engine.begin() as conn:
        features.store_evaluations(conn, engine, rows)
    return [row["id"] for row in rows]

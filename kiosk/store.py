"""The kiosk's durable store: SQLite through sqlite-utils (WAL, synchronous=FULL).

It offers what device.sync.Sync uses of the keypad's device.store.Store
(batch_plan, record_bytes, remove, __len__, last_seq, counts, next_seq), plus
contacts(plan): the signed contact entries of the records in a plan, which
Sync streams beside them (docs/protocol.md §3.1). The wire format and the
delivery rules are the keypad's own; only the storage differs.

One transaction makes a record: the seq counter and the level count move,
the record (its canonical bytes, signed with the seq inside) and its contact
go in, and COMMIT makes all of it durable at once (synchronous=FULL syncs the
WAL at each commit). A kill -9 or a power cut before COMMIT leaves none of it,
after COMMIT all of it, so a seq is never used twice and a record shown as
made is never lost.

Several connections may use the file at once (the screen's and the sync
thread's): every write transaction is BEGIN IMMEDIATE, so it takes the write
lock before it reads anything and never has to upgrade a read snapshot (which
in WAL mode fails at once with SQLITE_BUSY, busy timeout or not); the busy
timeout covers the short waits for the lock. Nothing is cached in RAM: the
counters are read from the database each time.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import sqlite_utils

from protocols import messages
from protocols import record as record_rules
from protocols.canonical import dumps
from protocols.levels import BAD_STARS, STARS

FILE = "kiosk.db"
BUSY_TIMEOUT_MS = 5000
KEEP_CASES_DAYS = 30  # finished cases handed over, kept for rating by number


class StoreError(RuntimeError):
    pass


@contextlib.contextmanager
def writing(database: sqlite_utils.Database):
    """A write transaction that holds the write lock from its start."""
    database.execute("BEGIN IMMEDIATE")
    try:
        yield database
    except BaseException:
        database.rollback()
        raise
    database.execute("COMMIT")


def open_database(path: str | Path) -> sqlite_utils.Database:
    """The kiosk database at `path`, set up for durability, schema created."""
    database = sqlite_utils.Database(str(path))
    database.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    database.enable_wal()
    database.execute("PRAGMA synchronous=FULL")
    with writing(database):
        database.execute(
            "CREATE TABLE IF NOT EXISTS state (id INTEGER PRIMARY KEY CHECK (id = 1),"
            " next_seq INTEGER NOT NULL, c1 INTEGER NOT NULL, c2 INTEGER NOT NULL,"
            " c3 INTEGER NOT NULL, c4 INTEGER NOT NULL, c5 INTEGER NOT NULL,"
            " last_ack_at TEXT)"
        )
        database.execute(
            "INSERT OR IGNORE INTO state (id, next_seq, c1, c2, c3, c4, c5)"
            " VALUES (1, 1, 0, 0, 0, 0, 0)"
        )
        database.execute(
            "CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY,"
            " bad INTEGER NOT NULL, body BLOB NOT NULL)"
        )
        database.execute(
            "CREATE TABLE IF NOT EXISTS contacts (seq INTEGER PRIMARY KEY, entry BLOB NOT NULL)"
        )
        database.execute(
            "CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )
        database.execute(
            "CREATE TABLE IF NOT EXISTS cases (case_no TEXT PRIMARY KEY, fields TEXT NOT NULL,"
            " received_at REAL NOT NULL, record_id TEXT)"
        )
    return database


class KioskStore:
    """Records waiting for the collector's ack, with their contacts."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / FILE
        self.db = open_database(self.path)

    def close(self) -> None:
        self.db.conn.close()

    def _one(self, sql: str, params=()):
        return self.db.execute(sql, params).fetchone()

    # --- writing ---
    def add(self, make_record, phone: str | None = None, key: bytes | None = None) -> dict:
        """Make and keep one record in one transaction.

        make_record(seq) -> the signed record for that seq; it is checked by
        protocols.record.validate. With `phone` (given with consent), a contact
        entry signed with `key` is kept beside it. Returns the record."""
        with writing(self.db):
            self.db.execute("UPDATE state SET next_seq = next_seq + 1 WHERE id = 1")
            seq = self._one("SELECT next_seq - 1 FROM state WHERE id = 1")[0]
            record = make_record(seq)
            if record.get("seq") != seq:
                raise StoreError(f"record seq {record.get('seq')!r} is not the next seq {seq}")
            record_rules.validate(record)
            stars = record["stars"]
            column = "c" + str(stars)
            self.db.execute(f"UPDATE state SET {column} = {column} + 1 WHERE id = 1")
            self.db.execute(
                "INSERT INTO records (seq, bad, body) VALUES (?, ?, ?)",
                (seq, 1 if stars in BAD_STARS else 0, dumps(record)),
            )
            if phone is not None:
                entry = messages.contact(record["id"], phone, key)
                problem = messages.contact_problem(entry)
                if problem:
                    raise StoreError(problem)
                self.db.execute(
                    "INSERT INTO contacts (seq, entry) VALUES (?, ?)", (seq, dumps(entry))
                )
            if record.get("case_no") and record.get("attempt") == 1:
                # one rating per case: the case is marked in the same transaction
                self.db.execute(
                    "UPDATE cases SET record_id = ? WHERE case_no = ? AND record_id IS NULL",
                    (record["id"], record["case_no"]),
                )
        return record

    def remove(self, seqs) -> int:
        """Forget records (and their contacts) the collector acknowledged."""
        seqs = [s for s in seqs if isinstance(s, int)]
        if not seqs:
            return 0
        marks = ",".join("?" * len(seqs))
        with writing(self.db):
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            self.db.execute("UPDATE state SET last_ack_at = ? WHERE id = 1", (now,))
            gone = self.db.execute(f"DELETE FROM records WHERE seq IN ({marks})", seqs).rowcount
            self.db.execute(f"DELETE FROM contacts WHERE seq IN ({marks})", seqs)
        return gone

    # --- reading (what Sync uses) ---
    def __len__(self) -> int:
        return self._one("SELECT count(*) FROM records")[0]

    @property
    def next_seq(self) -> int:
        return self._one("SELECT next_seq FROM state WHERE id = 1")[0]

    @property
    def last_seq(self) -> int:
        return self.next_seq - 1

    @property
    def counts(self) -> dict:
        row = self._one("SELECT c1, c2, c3, c4, c5 FROM state WHERE id = 1")
        return {str(stars): row[stars - 1] for stars in sorted(STARS)}

    @property
    def last_ack_at(self) -> str | None:
        """UTC time of the last ack that removed records (the technician screen)."""
        return self._one("SELECT last_ack_at FROM state WHERE id = 1")[0]

    def batch_plan(self, limit: int) -> list[tuple[int, int]]:
        """Up to `limit` (seq, length of the record's canonical bytes): 差评
        first, then oldest first, as the keypad's store plans."""
        rows = self.db.execute(
            "SELECT seq, length(body) FROM records ORDER BY bad DESC, seq LIMIT ?", (limit,)
        ).fetchall()
        return [(seq, size) for seq, size in rows]

    def record_bytes(self, plan):
        """The canonical bytes of each record of a plan, as stored."""
        for seq, size in plan:
            row = self._one("SELECT body FROM records WHERE seq = ?", (seq,))
            if row is None or len(row[0]) != size:
                raise OSError(f"record {seq} changed while its batch was sent")
            yield bytes(row[0])

    def contacts(self, plan) -> list[dict]:
        """The signed contact entries of the records in a plan."""
        seqs = [seq for seq, _size in plan]
        if not seqs:
            return []
        marks = ",".join("?" * len(seqs))
        rows = self.db.execute(
            f"SELECT entry FROM contacts WHERE seq IN ({marks}) ORDER BY seq", seqs
        ).fetchall()
        return [json.loads(row[0]) for row in rows]

    def pending(self, limit: int) -> list[dict]:
        """The records of batch_plan(limit), parsed (tests, the technician screen)."""
        return [json.loads(body) for body in self.record_bytes(self.batch_plan(limit))]

    # --- settings and cases ---
    def get_setting(self, name: str):
        row = self._one("SELECT value FROM settings WHERE name = ?", (name,))
        return None if row is None else json.loads(row[0])

    def put_setting(self, name: str, value) -> None:
        with writing(self.db):
            self.db.execute(
                "INSERT OR REPLACE INTO settings (name, value) VALUES (?, ?)",
                (name, json.dumps(value, ensure_ascii=False)),
            )

    def add_case(self, fields: dict) -> None:
        """A finished case handed over (evaluate, or registered for later rating)."""
        with writing(self.db):
            cutoff = time.time() - KEEP_CASES_DAYS * 86400
            self.db.execute("DELETE FROM cases WHERE received_at < ?", (cutoff,))
            self.db.execute(
                "INSERT INTO cases (case_no, fields, received_at) VALUES (?, ?, ?)"
                " ON CONFLICT(case_no) DO UPDATE SET fields = excluded.fields"
                " WHERE cases.record_id IS NULL",
                (fields["case_no"], json.dumps(fields, ensure_ascii=False), time.time()),
            )

    def case(self, case_no: str):
        """(fields, record_id or None) of a case the kiosk knows, or None."""
        row = self._one("SELECT fields, record_id FROM cases WHERE case_no = ?", (case_no,))
        return None if row is None else (json.loads(row[0]), row[1])

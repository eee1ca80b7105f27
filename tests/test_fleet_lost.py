"""Ratings lost with a wiped board appear as a known gap with its cause, not
as silence (issue 11).

A board re-provisioned without its store: the collector's last status from
the old board named seqs it never received. `hcp provision --reprovision`
notes them (fleet_seq_gaps, shown on the device's fleet page) and seeds the
board's store to start after them, so those seqs are never used again and the
completeness view's missing seqs have a cause.
"""

import json

from sqlalchemy import select

from protocols import messages
from protocols.record import MAX_SEQ
from sync_server import db, fleet
from sync_server.ingest import Ingestor
from sync_server.schema_fleet import fleet_seq_gaps
from tests.harness import records
from tests.harness.collector import AuthActions, add_users, make_app
from tests.harness.virtual_board import mpremote
from tests.test_provision import OFFLINE_SETTINGS, device_row, hcp

KEY_HEX = "44" * 32


def old_board_reported(engine, device_id, key_hex, stored, last_seq):
    """The collector stored seqs 1..stored (5 stars, but seq 2 one star) and
    the old board's last status said it had made up to last_seq."""
    key = bytes.fromhex(key_hex)
    ingestor = Ingestor(engine)
    recs = [
        records.signed(n, stars=1 if n == 2 else 5, device_id=device_id, key=key)
        for n in range(1, stored + 1)
    ]
    outcome = ingestor.process(records.ev_topic(device_id), records.batch(recs, 1, device_id))
    assert outcome.stored == list(range(1, stored + 1))
    status = messages.status(True, fw="0.1.0", last_seq=last_seq, queue=last_seq - stored,
                             counts={"1": 1, "2": 0, "3": 1, "4": 0, "5": last_seq - 2})  # fmt: skip
    ingestor.process(records.status_topic(device_id), messages.encode(status))


def gaps(engine, device_id):
    with engine.connect() as conn:
        return [
            (g["first_seq"], g["last_seq"], g["cause"]) for g in fleet.seq_gaps(conn, device_id)
        ]


def test_the_lost_seqs_are_noted_once_and_never_used_again(engine):
    db.add_device(engine, "kp-01", KEY_HEX)
    old_board_reported(engine, "kp-01", KEY_HEX, stored=5, last_seq=9)
    with engine.begin() as conn:
        start = fleet.lost_with_board(conn, "kp-01", "tech")
    assert start == {
        "next_seq": 10,
        "counts": {"1": 1, "2": 0, "3": 0, "4": 0, "5": 4},  # the stored, per level
        "gap": [6, 9],
    }
    assert gaps(engine, "kp-01") == [(6, 9, "lost_with_board")]
    with engine.connect() as conn:
        assert fleet.highest_lost(conn, "kp-01") == 9
        assert fleet.highest_lost(conn, "kp-02") == 0
    # provisioning again (the first attempt failed after noting): the same start, no new row
    with engine.begin() as conn:
        again = fleet.lost_with_board(conn, "kp-01", "tech")
    assert again == {**start, "gap": None}
    assert gaps(engine, "kp-01") == [(6, 9, "lost_with_board")]


CLAIMS = [
    None,  # never heard from
    {"online": True, "fw": "0.1.0"},  # no last_seq: a store that already lost its state
    {"online": True, "last_seq": 5},  # everything it made arrived
    {"online": True, "last_seq": 3},  # below what is held (an old flash image)
    {"online": True, "last_seq": MAX_SEQ},  # a claim no board could make
    {"online": True, "last_seq": 5 + fleet.MAX_KNOWN_GAP + 1},  # more than a board holds
    {"online": True, "last_seq": "9"},
    {"online": True, "last_seq": True},
    ["not", "an", "object"],
]


def test_nothing_is_noted_without_a_believable_claim(engine):
    db.add_device(engine, "kp-01", KEY_HEX)
    old_board_reported(engine, "kp-01", KEY_HEX, stored=5, last_seq=5)
    for status in CLAIMS:
        with engine.begin() as conn:
            conn.execute(
                db.devices.update()
                .where(db.devices.c.device_id == "kp-01")
                .values(status=None if status is None else json.dumps(status))
            )
            # the board asks the collector (§3.6), as before
            assert fleet.lost_with_board(conn, "kp-01", "tech") is None, status
    assert gaps(engine, "kp-01") == []


def test_a_wiped_board_starts_after_its_lost_ratings_and_the_page_says_why(
    virtual_board_factory, tmp_path
):
    url = f"sqlite:///{tmp_path / 'collector.db'}"
    app = make_app(tmp_path / "web", url)
    add_users(app)
    engine = app.extensions["hcp_engine"]
    board = virtual_board_factory()
    args = ["provision", "--port", board.port, "--db", url, "--device-id", "kp-w01",
            "--window", "W01", "--broker-host", "127.0.0.1", "--no-wait",
            *OFFLINE_SETTINGS]  # fmt: skip
    run, _ = hcp(*args, "--flash")
    assert run.returncode == 0, run.stdout + run.stderr
    old_board_reported(engine, "kp-w01", device_row(engine, "kp-w01").key_hex, 5, 9)
    state = board.root / "data" / "state"
    # the board is wiped (its config is kept here), through its REPL: the firmware
    # running since the flash is stopped first, so it cannot write its state again
    # between the wipe and the re-provisioning (it did, on a loaded machine)
    wipe = mpremote(board.port, "exec", "import os\nfor n in ('state', 'journal'):\n"
                    "    try:\n        os.remove('/data/' + n)\n    except OSError:\n        pass")  # fmt: skip
    assert wipe.returncode == 0, wipe.stdout + wipe.stderr
    assert not state.exists()

    run, _ = hcp(*args, "--reprovision")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "4 ratings (seq 6–9) never reached the collector and are lost with the old board" in (
        run.stdout
    )
    assert "seed the store (seq from 10)" in run.stdout
    written = json.loads(state.read_text())
    assert written["next_seq"] == 10 and written["known"] is True
    assert written["counts"] == {"1": 1, "2": 0, "3": 0, "4": 0, "5": 4}
    assert gaps(engine, "kp-w01") == [(6, 9, "lost_with_board")]
    with engine.connect() as conn:
        noted_by = conn.execute(select(fleet_seq_gaps.c.noted_by)).scalar()
    assert noted_by.startswith("hcp provision (")

    page = app.test_client()
    AuthActions(page).login("admin")
    html = page.get("/fleet/kp-w01").get_data(as_text=True)
    assert "已知丢失的评价" in html and "<td>6–9</td><td>4</td>" in html
    assert "设备主板被擦除或更换" in html

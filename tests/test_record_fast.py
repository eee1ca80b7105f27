"""sync_server.record_fast: `plainly_valid` only ever recognises a record that
protocols.record.validate accepts, the common device record is recognised,
and `verify` answers as protocols.sign.verify does, for any record."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import canonical, record, sign
from sync_server import canonical_fast, ingest, record_fast
from tests.harness.records import KEY, device_record, server_record, signed

# every character class the text rules and canonical JSON treat apart
TEXT = st.text(
    st.one_of(
        st.characters(codec=None),
        st.sampled_from(["\x00", "\t", "\n", "\x1f", "\x7f", '"', "\\", "好", "😀", "\ud800"]),
        st.sampled_from(["\udfff", "\ue000", "\uffff", " ", "-", "_", ".", ":", "/", "a", "0"]),
    ),
    max_size=70,
)
# values near each rule's edges, per field, and some for any field
TIMES = ["2024-02-29T23:59:59Z", "2026-02-29T08:00:00Z", "1969-12-31T23:59:59Z",
         "1970-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2026-11-26T24:00:00Z",
         "2026-11-26T23:60:00Z", "2026-11-26T23:59:60Z", "2026-11-26T08:30:00Z\n",
         "2026-13-01T08:30:00Z", "2026-04-31T08:30:00Z", "2026-11-26 08:30:00Z",
         "\uff12026-11-26T08:30:00Z", "2026-11-26T08:30:00z"]  # fmt: skip
NEAR = {
    "stars": [0, 1, 5, 6, -1, True, 1.0, "1"],
    "seq": [0, 1, 7, 8, 2**31 - 1, 2**31, -7, True, "7"],
    "attempt": [0, 1, 2, True, "1"],
    "uptime_ms": [0, -1, 2**40, 2**40 + 1, True, "5"],
    "channel": ["keypad", "kiosk", "web", "paper", "sms", "Keypad", ["keypad"]],
    "origin": ["citizen", "staff_entry", "Citizen"],
    "clock": ["ntp", "rtc", "unset", "gps", ["ntp"]],
    "device_id": ["kp-01", "kp-02", "x" * 32, "x" * 33, "kp 01", "kp-01\n", "", "好"],
    "id": ["kp-01:7", "kp-01:07", "kp-01:8", "kp-02:7", "web/abc", "kp-01:7\n"],
    "rated_at": TIMES,
    "handled_at": TIMES,
    "tags": [[], ["201"], ["201", "201"], ["a" * 16], ["a" * 17], ["好"], ["2 1"], [""], [1],
             ["x" + str(n) for n in range(16)], ["x" + str(n) for n in range(17)], "201"],
    "content_version": ["v1", "", "x" * 32, "x" * 33],
    "comment": ["好\n", "\t", "a\x00", "\x7f", "a" * 500, "a" * 501, "", "\ud800", "😀"],
    "boot_id": ["b1", "x" * 32, "x" * 33, ""],
    "sig": ["a" * 64, "A" * 64, "a" * 63, "g" * 64, 7],
}  # fmt: skip
for _code in record.CODE_FIELDS:
    NEAR[_code] = ["A01", "x" * 64, "x" * 65, "", "A\x0001", "\ue000", "好", "😀", 7, None]
ANY = st.sampled_from(["", "a", None, 0, 1, True, False, 1.5, [], {}, "x" * 65, "\x00"])
VALUES = st.one_of(
    ANY,
    TEXT,
    st.integers(-(2**64), 2**64),
    st.lists(st.one_of(TEXT, ANY), max_size=4),
    st.dictionaries(TEXT, ANY, max_size=2),
)
FIELDS = st.sampled_from([*record.FIELDS, "zeta", "é"])


PLAIN_BASES = [
    device_record(7),
    device_record(7, channel="kiosk", tags=["201", "305"], content_version="v1"),
    device_record(7, boot_id="b1", uptime_ms=5, window_id="A01", comment="好\n", sig="a" * 64),
]
BASES = [*PLAIN_BASES, server_record("web"), server_record("paper")]


@st.composite
def records(draw):
    rec = dict(draw(st.sampled_from(BASES)))
    for name in draw(st.lists(FIELDS, max_size=1)):
        rec.pop(name, None)
    near_name = st.sampled_from(sorted(NEAR))
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.one_of(near_name, near_name, near_name, FIELDS))
        near = NEAR.get(name)
        if near:
            near_value = st.sampled_from(near)
            rec[name] = draw(st.one_of(near_value, near_value, near_value, VALUES))
        else:
            rec[name] = draw(VALUES)
    if draw(st.booleans()):
        try:
            rec["sig"] = sign.sign(rec, KEY)
        except (canonical.CanonicalError, UnicodeError):  # a float, a lone surrogate
            pass
    return rec


def outcome(function, *args, **kwargs):
    try:
        return ("answer", function(*args, **kwargs))
    except Exception as exc:  # noqa: BLE001 - the error class must match too
        return ("error", type(exc).__name__)


def validate_outcome(rec):
    try:
        record.validate(rec)
    except record.RecordError as exc:
        return str(exc)
    return None


@settings(max_examples=1200, deadline=None)
@given(records())
def test_a_record_recognised_as_plain_is_one_validate_accepts(rec):
    if record_fast.plainly_valid(rec):
        assert validate_outcome(rec) is None
        # and the encoder's walk it skips would have said plain too
        assert canonical_fast._plain({k: v for k, v in rec.items() if k != "sig"})


def test_each_field_at_its_edges_is_recognised_only_when_valid():
    """Every value of NEAR (and its absence) in each field of each plain
    record, one at a time: recognised only where validate accepts it."""
    checked = recognised = 0
    for base in PLAIN_BASES:
        for name, values in NEAR.items():
            for value in [*values, "absent"]:
                rec = dict(base)
                if value == "absent":
                    rec.pop(name, None)
                else:
                    rec[name] = value
                checked += 1
                if record_fast.plainly_valid(rec):
                    recognised += 1
                    assert validate_outcome(rec) is None, rec
        # the device id and the seq changed together with the id they make
        for device_id in ("kp-01", "x" * 32, "x" * 33, "kp 01", "", "好", "kp-01\n", "a:b"):
            for seq in (1, 0, -1, 2**31 - 1, 2**31, True, 7.0):
                rec = dict(base, device_id=device_id, seq=seq, id=f"{device_id}:{seq}")
                checked += 1
                if record_fast.plainly_valid(rec):
                    recognised += 1
                    assert validate_outcome(rec) is None, rec
    assert checked > 500 and recognised > 100


@settings(max_examples=500, deadline=None)
@given(records())
def test_check_raises_what_validate_raises(rec):
    try:
        record_fast.check(rec)
        found = None
    except record.RecordError as exc:
        found = str(exc)
    assert found == validate_outcome(rec)


@settings(max_examples=500, deadline=None)
@given(records(), st.sampled_from([KEY, b"\x01" * 32]))
def test_verify_answers_as_sign_verify(rec, key):
    expected = outcome(sign.verify, rec, key)
    assert outcome(record_fast.verify, rec, key) == expected
    if record_fast.plainly_valid(rec):
        assert outcome(record_fast.verify, rec, key, plain=True) == expected
        unsigned = {k: v for k, v in rec.items() if k != "sig"}
        assert canonical_fast.dumps_plain(unsigned) == canonical.dumps(unsigned)


def test_the_records_devices_send_are_recognised():
    for rec in (
        signed(1),
        signed(2, 1, tags=["201", "305"], content_version="v1", comment='说 "慢"\n等了很久'),
        signed(3, 2, channel="kiosk", boot_id="b-9", uptime_ms=0, window_id="A01",
               staff_id="S07", org_id="370305001", item_code="ITEM-9", case_no="C1",
               service_no="1"),
        signed(4, clock="unset"),
    ):  # fmt: skip
        assert record_fast.plainly_valid(rec), rec


def test_what_it_does_not_recognise_goes_to_validate_with_its_reason():
    assert not record_fast.plainly_valid(signed(1, attempt=2, follows="kp-01:0"))
    assert not record_fast.plainly_valid(server_record("web"))
    assert not record_fast.plainly_valid(signed(1, comment="emoji 😀"))  # validate accepts it
    assert record.validate(signed(1, comment="emoji 😀"))
    bad = signed(1, rated_at="2026-02-29T08:00:00Z")
    assert not record_fast.plainly_valid(bad)
    device = ingest.Device("kp-01", KEY, "keypad")
    reason = ingest.check_record(bad, "kp-01", device)
    assert reason == "rated_at: must be UTC time as YYYY-MM-DDTHH:MM:SSZ"
    assert ingest.check_record(signed(1), "kp-01", device) is None
    forged = signed(1) | {"stars": 1}
    assert ingest.check_record(forged, "kp-01", device) == (
        "sig: does not verify with the key of device 'kp-01'"
    )

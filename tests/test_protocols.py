"""The wire contract on CPython: canonical bytes, signing, mappings, topics, messages.

Expected bytes come from the small reference encoder below, written apart
from protocols/ (it builds JSON with the standard library and then applies
the canonical escaping rules), never from the code under test.
"""

import hashlib
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import canonical, levels, messages, record, sign, topics


def reference_canonical(value) -> bytes:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # the standard library writes \n \r \t \b \f short forms and leaves DEL raw;
    # the canonical form uses \u00xx for every control character and DEL
    for short, code in (("\\n", 10), ("\\r", 13), ("\\t", 9), ("\\b", 8), ("\\f", 12)):
        text = text.replace(short, f"\\u{code:04x}")
    text = text.replace("\x7f", "\\u007f")
    return text.encode("utf-8")


def a_record(**changes):
    rec = {
        "id": "kp-01:7",
        "device_id": "kp-01",
        "seq": 7,
        "stars": 2,
        "tags": ["D201"],
        "content_version": "demo-1",
        "channel": "keypad",
        "window_id": "A01",
        "rated_at": "2026-11-26T08:30:00Z",
        "clock": "ntp",
        "origin": "citizen",
        "attempt": 1,
        "boot_id": "0a1b2c3d",
        "uptime_ms": 123456,
    }
    rec.update(changes)
    return {k: v for k, v in rec.items() if v is not None}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@given(json_values)
def test_canonical_matches_the_reference_and_reads_back(value):
    data = canonical.dumps(value)
    assert data == reference_canonical(value)
    assert json.loads(data) == value


def test_canonical_escapes_controls_and_keeps_chinese_raw():
    value = {"b": 'say "好"\n', "a": "\\\x7f\x01"}
    assert canonical.dumps(value) == '{"a":"\\\\\\u007f\\u0001","b":"say \\"好\\"\\u000a"}'.encode()


def test_canonical_refuses_floats_with_a_clear_message():
    with pytest.raises(canonical.CanonicalError, match="^cannot encode float canonically$"):
        canonical.dumps({"x": 1.5})


def test_canonical_refuses_non_string_keys():
    with pytest.raises(canonical.CanonicalError, match="^object keys must be strings, got 1$"):
        canonical.dumps({1: 2})


@pytest.mark.parametrize("key", [b"k", b"0123456789abcdef" * 4, b"x" * 100, b""])
def test_hmac_matches_the_standard_library(key):
    message = reference_canonical(a_record())
    assert sign.hmac_sha256(key, message) == hmac.new(key, message, hashlib.sha256).digest()


def test_signature_covers_every_field_but_sig():
    key = bytes(range(32))
    rec = a_record()
    rec["sig"] = sign.sign(rec, key)
    expected = hmac.new(key, reference_canonical(a_record()), hashlib.sha256).hexdigest()
    assert rec["sig"] == expected
    assert sign.verify(rec, key)
    assert not sign.verify(rec, b"another key")
    for field, value in (("stars", 5), ("window_id", "A02"), ("tags", [])):
        tampered = dict(rec, **{field: value})
        assert not sign.verify(tampered, key), field
    assert not sign.verify(a_record(), key)  # no sig at all
    assert not sign.verify(dict(rec, sig="好" * 64), key)  # not even hex


# --- mappings: each table in both directions ---
@pytest.mark.parametrize(
    ("stars", "gbt", "satisfaction", "name"),
    [
        (5, 1, 5, "非常满意"),
        (4, 2, 4, "满意"),
        (3, 3, 3, "基本满意"),
        (2, 4, 2, "不满意"),
        (1, 5, 1, "非常不满意"),
    ],
)
def test_level_mappings_both_ways(stars, gbt, satisfaction, name):
    assert levels.stars_to_gbt39046(stars) == gbt
    assert levels.gbt39046_to_stars(gbt) == stars
    assert levels.stars_to_satisfaction(stars) == satisfaction
    assert levels.satisfaction_to_stars(satisfaction) == stars
    assert levels.level_name(stars) == name
    assert levels.is_bad(stars) == (name in ("不满意", "非常不满意"))


@pytest.mark.parametrize(
    ("call", "arg", "message"),
    [
        (levels.stars_to_gbt39046, 0, "stars: no mapping for 0"),
        (levels.gbt39046_to_stars, 6, "GB/T 39046 code: no mapping for 6"),
        (levels.satisfaction_to_stars, 0, "satisfaction: no mapping for 0"),
        (levels.channel_to_pf, "fax", "channel: no mapping for 'fax'"),
        (levels.pf_to_channel, 6, "pf: no mapping for 6"),
    ],
)
def test_mapping_errors(call, arg, message):
    with pytest.raises(levels.MappingError) as err:
        call(arg)
    assert str(err.value) == message


@pytest.mark.parametrize(
    ("channel", "pf"),
    [
        ("keypad", 4),
        ("kiosk", 5),
        ("qr_window", 3),
        ("qr_case", 3),
        ("web", 1),
        ("sms", 7),
        ("paper", 5),
    ],
)
def test_channel_to_pf(channel, pf):
    assert levels.channel_to_pf(channel) == pf


@pytest.mark.parametrize(
    ("pf", "channel"),
    [(1, "web"), (2, "web"), (3, "qr_case"), (4, "keypad"), (5, "kiosk"), (7, "sms")],
)
def test_pf_to_channel(pf, channel):
    assert levels.pf_to_channel(pf) == channel


def test_every_channel_has_a_pf_and_an_operator_table_replaces_it():
    assert {c for c, _ in levels.CHANNEL_TO_PF} == set(levels.CHANNELS)
    assert levels.channel_to_pf("paper", table=(("paper", 6),)) == 6


# --- record validation: each error names the field and the problem ---
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"stars": 7}, "stars: must be an integer 1..5, got 7"),
        ({"stars": True}, "stars: must be an integer 1..5, got True"),
        ({"stars": None}, "stars: is required"),
        ({"channel": "fax"}, "channel: unknown channel 'fax'"),
        ({"origin": "robot"}, "origin: must be one of citizen, staff_entry, system"),
        ({"clock": "sundial"}, "clock: must be one of ntp, rtc, unset"),
        ({"attempt": 3}, "attempt: must be 1 (first rating) or 2 (appended rating)"),
        ({"rated_at": "2026-11-26 08:30:00"}, "rated_at: must be UTC time as YYYY-MM-DDTHH:MM:SSZ"),
        (
            {"rated_at": "2026-13-26T08:30:00Z"},
            "rated_at: must be UTC time as YYYY-MM-DDTHH:MM:SSZ",
        ),
        ({"id": "kp-01:8"}, "id: must be <device_id>:<seq>"),
        ({"seq": 0}, "seq: must be an integer >= 1, got 0"),
        ({"device_id": "kp/01"}, "device_id: must be 1..32 characters of A-Z a-z 0-9 - _"),
        ({"tags": "D201"}, "tags: must be a list of tag codes"),
        ({"tags": [""]}, "tags: each tag must be a code of 1..16 characters"),
        ({"content_version": None}, "content_version: is required when tags are given"),
        ({"comment": "x" * 501}, "comment: longer than 500 characters"),
        ({"window_id": 12}, "window_id: must be a string, got int"),
        ({"case_no": "A\x00"}, "case_no: contains a control character"),
        ({"uptime_ms": -1}, "uptime_ms: must be an integer >= 0"),
        ({"contact": "call me"}, "contact: must be a phone number of 5..20 digits"),
        ({"sig": "00"}, "sig: must be 64 hex characters"),
        ({"colour": "red"}, "colour: unknown field"),
    ],
)
def test_record_errors_name_the_field(changes, message):
    rec = a_record()
    rec.update(changes)
    rec = {k: v for k, v in rec.items() if v is not None}
    with pytest.raises(record.RecordError) as err:
        record.validate(rec)
    assert str(err.value) == message


def test_a_valid_record_passes_and_web_records_need_no_device():
    assert record.validate(a_record()) is not None
    web = a_record(id="web-20261126-0001", device_id=None, seq=None, channel="web")
    assert record.validate(web) is web


# --- topics ---
@pytest.mark.parametrize("kind", [k for k, _, _ in topics.KINDS])
def test_topics_round_trip(kind):
    name = topics.topic("kp-01", kind)
    assert name == "hcp/v1/dev/kp-01/" + kind
    assert topics.parse(name) == ("kp-01", kind)
    assert topics.subscription(kind) == "hcp/v1/dev/+/" + kind


def test_status_and_config_are_retained_the_others_not():
    assert [k for k, _, r in topics.KINDS if r] == [topics.UP_STATUS, topics.DOWN_CONFIG]
    assert all(topics.qos(k) == 1 for k, _, _ in topics.KINDS)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("hcp/v2/dev/kp-01/up/ev", "not an hcp/v1 device topic: 'hcp/v2/dev/kp-01/up/ev'"),
        ("hcp/v1/dev/kp-01", "no kind in topic 'hcp/v1/dev/kp-01'"),
        ("hcp/v1/dev/kp+01/up/ev", "invalid device id in topic 'hcp/v1/dev/kp+01/up/ev'"),
        ("hcp/v1/dev/kp-01/up/other", "unknown topic kind 'up/other'"),
    ],
)
def test_topic_errors(name, message):
    with pytest.raises(topics.TopicError) as err:
        topics.parse(name)
    assert str(err.value) == message


# --- messages ---
@pytest.mark.parametrize(
    "msg",
    [
        messages.batch("kp-01", 3, [a_record()]),
        messages.ack(3, [7, 5], [6]),
        messages.status(True, fw="0.1.0", queue=2, last_seq=7, counts={"5": 3, "1": 1}),
        messages.config(
            4, window_id="A01", content_version="demo-1", tags=[[2, "D201", "等候时间长"]]
        ),
        messages.command("c-1", "reboot"),
        messages.command_result("c-1", True, {"uptime_ms": 5}),
    ],
)
def test_messages_round_trip_with_their_version(msg):
    data = messages.encode(msg)
    assert data == reference_canonical(msg)
    assert messages.decode(data, msg["t"]) == msg
    assert msg["v"] == 1


@pytest.mark.parametrize(
    ("payload", "expected", "message"),
    [
        (b"\xff", None, "payload: not UTF-8"),
        (b"{", None, "payload: not JSON"),
        (b"[]", None, "message: must be an object"),
        (b'{"t":"x","v":1}', None, "t: unknown message type 'x'"),
        (
            b'{"t":"ack","v":2,"batch":1,"stored":[],"quarantined":[]}',
            None,
            "ack.v: unsupported version 2",
        ),
        (
            b'{"t":"ack","v":1,"batch":1,"stored":[0],"quarantined":[]}',
            None,
            "ack.stored: must be a list of seq numbers",
        ),
        (
            b'{"t":"ack","v":1,"batch":1,"stored":[],"quarantined":[]}',
            "ev",
            "t: expected ev, got ack",
        ),
        (
            b'{"t":"ev","v":1,"device_id":"kp-01","batch":1,"records":[]}',
            None,
            "ev.records: must be a non-empty list",
        ),
        (
            b'{"t":"ev","v":1,"device_id":"kp 01","batch":1,"records":[{}]}',
            None,
            "ev.device_id: must be 1..32 characters of A-Z a-z 0-9 - _",
        ),
        (b'{"t":"status","v":1,"online":1}', None, "status.online: must be true or false"),
        (
            b'{"t":"status","v":1,"online":true,"counts":{"6":1}}',
            None,
            "status.counts: must map stars 1..5 to counts",
        ),
        (
            b'{"t":"cmd","v":1,"id":"c","cmd":"format_disk","args":{}}',
            None,
            "cmd.cmd: unknown command 'format_disk'",
        ),
        (b'{"t":"config","v":1,"version":0}', None, "config.version: must be an integer 1.."),
        (
            b'{"t":"config","v":1,"version":1,"window_id":7}',
            None,
            "config.window_id: must be a string of 1..64",
        ),
        (
            b'{"t":"config","v":1,"version":1,"tags":[[6,"x","y"]],"content_version":"1"}',
            None,
            "config.tags: must be a list of [stars, code, text]",
        ),
        (
            b'{"t":"config","v":1,"version":1,"tags":"all"}',
            None,
            "config.tags: must be a list of [stars, code, text]",
        ),
        (
            b'{"t":"config","v":1,"version":1,"tags":[[1,"x","y"]]}',
            None,
            "config.content_version: is required with tags",
        ),
    ],
)
def test_message_errors(payload, expected, message):
    with pytest.raises(messages.MessageError) as err:
        messages.decode(payload, expected)
    assert str(err.value) == message


def test_a_batch_over_the_limit_is_refused():
    msg = messages.batch("kp-01", 1, [a_record()] * (messages.MAX_BATCH + 1))
    with pytest.raises(messages.MessageError, match="^ev.records: more than 200 records$"):
        messages.encode(msg)

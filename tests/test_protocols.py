"""The wire contract on CPython: canonical bytes, signing, mappings, topics, messages.

Expected bytes come from the small reference encoder below, written apart
from protocols/ (it builds JSON with the standard library and then applies
the canonical escaping rules), never from the code under test.
"""

import hashlib
import hmac
import json

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from protocols import canonical, levels, messages, record, sign, topics
from tests.harness.records import device_record, server_record
from tests.harness.reference import reference_canonical


def a_record(**changes):
    base = {"stars": 2, "tags": ["D201"], "content_version": "demo-1", "window_id": "A01",
            "boot_id": "0a1b2c3d", "uptime_ms": 123456}  # fmt: skip
    base.update(changes)
    return device_record(7, **base)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@given(json_values)
@example("\\r")  # a backslash, then r: the reference once took it for a carriage return
@example({"\\n\n": "\\\\t\t"})
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
        (levels.stars_to_gbt39046, True, "stars: no mapping for True"),
        (levels.stars_to_satisfaction, 5.0, "stars: no mapping for 5.0"),
        (levels.level_name, True, "stars: no mapping for True"),
        (levels.gbt39046_to_stars, 6, "GB/T 39046 code: no mapping for 6"),
        (levels.gbt39046_to_stars, 1.0, "GB/T 39046 code: no mapping for 1.0"),
        (levels.satisfaction_to_stars, 0, "satisfaction: no mapping for 0"),
        (levels.is_bad, True, "stars: no level True"),
        (levels.key_stars, 5, "key: no mapping for 5"),
        (levels.channel_to_pf, "fax", "channel: no pf code configured for 'fax'"),
        (levels.channel_to_pf, "paper", "channel: no pf code configured for 'paper'"),
        (levels.pf_to_channel, 8, "pf: no mapping for 8"),
        (levels.pf_to_channel, True, "pf: no mapping for True"),
    ],
)
def test_mapping_errors(call, arg, message):
    with pytest.raises(levels.MappingError) as err:
        call(arg)
    assert str(err.value) == message


def test_keys_left_to_right_are_very_satisfied_to_very_dissatisfied():
    assert [levels.key_stars(i) for i in range(5)] == [5, 4, 3, 2, 1]
    assert [s for s in levels.STARS if levels.is_bad(s)] == list(levels.BAD_STARS) == [2, 1]


@pytest.mark.parametrize(
    ("channel", "client", "pf"),
    [
        ("keypad", "", 4),
        ("kiosk", "", 5),
        ("qr_window", "mobile", 3),
        ("qr_case", "", 3),
        ("web", "pc", 1),
        ("web", "mobile", 2),
        ("sms", "", 7),
        ("hotline", "", 6),
    ],
)
def test_channel_to_pf(channel, client, pf):
    assert levels.channel_to_pf(channel, client) == pf


@pytest.mark.parametrize("pf", levels.PF_CODES)
def test_every_pf_maps_to_a_channel_that_maps_back_to_it(pf):
    channel, client = levels.pf_to_channel(pf)
    assert levels.channel_to_pf(channel, client) == pf


def test_every_channel_is_in_the_table_and_paper_is_unmapped_until_configured():
    assert {c for c, _client, _pf in levels.CHANNEL_TO_PF} == set(levels.CHANNELS)
    with pytest.raises(levels.MappingError):
        levels.channel_to_pf("web")  # a web rating must say which client it came from
    assert levels.channel_to_pf("paper", table=(("paper", "", 6),)) == 6


# --- record validation: each error names the field and the problem ---
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"stars": 7}, "stars: must be an integer 1..5, got 7"),
        ({"stars": True}, "stars: must be an integer 1..5, got True"),
        ({"stars": 5.0}, "stars: must be an integer 1..5, got 5.0"),
        ({"stars": None}, "stars: is required"),
        ({"channel": "fax"}, "channel: unknown channel 'fax'"),
        ({"origin": "robot"}, "origin: must be one of citizen, staff_entry"),
        ({"origin": "staff_entry"}, "origin: must be citizen on a keypad record"),
        ({"clock": "sundial"}, "clock: must be one of ntp, rtc, unset"),
        ({"attempt": 3}, "attempt: must be 1 (first rating) or 2 (appended rating)"),
        ({"attempt": True}, "attempt: must be 1 (first rating) or 2 (appended rating)"),
        ({"rated_at": "2026-11-26 08:30:00"}, "rated_at: must be UTC time as YYYY-MM-DDTHH:MM:SSZ"),
        (
            {"rated_at": "2026-13-26T08:30:00Z"},
            "rated_at: must be UTC time as YYYY-MM-DDTHH:MM:SSZ",
        ),
        (
            {"rated_at": "2026-02-31T08:30:00Z"},
            "rated_at: must be UTC time as YYYY-MM-DDTHH:MM:SSZ",
        ),
        (
            {"rated_at": "２０２６-11-26T08:30:00Z"},
            "rated_at: must be UTC time as YYYY-MM-DDTHH:MM:SSZ",
        ),
        ({"id": "kp-01:8"}, "id: must be <device_id>:<seq>"),
        ({"id": "web/x"}, "id: must be <device_id>:<seq>"),
        ({"seq": 0}, "seq: must be an integer 1..2147483647, got 0"),
        ({"seq": 2**63}, f"seq: must be an integer 1..2147483647, got {2**63}"),
        ({"device_id": "kp/01"}, "device_id: must be 1..32 characters of A-Z a-z 0-9 - _"),
        ({"tags": "D201"}, "tags: must be a list of tag codes"),
        ({"tags": [""]}, "tags: each tag must be a code of 1..16 characters"),
        ({"tags": ["D 1"]}, "tags: a tag code may hold only A-Z a-z 0-9 - _ ."),
        ({"tags": ["D201", "D201"]}, "tags: tag D201 given twice"),
        ({"content_version": None}, "content_version: is required when tags are given"),
        ({"comment": "x" * 501}, "comment: longer than 500 characters"),
        ({"comment": "a\x00b"}, "comment: contains a control character"),
        ({"comment": "a\ud800b"}, "comment: contains a lone surrogate"),
        ({"window_id": 12}, "window_id: must be a string, got int"),
        ({"window_id": ""}, "window_id: must not be empty"),
        ({"case_no": "A\x00"}, "case_no: contains a control character"),
        ({"uptime_ms": -1}, "uptime_ms: must be an integer 0..1099511627776"),
        ({"uptime_ms": 2**64}, "uptime_ms: must be an integer 0..1099511627776"),
        ({"handled_at": "2026-11-26"}, "handled_at: must be UTC time as YYYY-MM-DDTHH:MM:SSZ"),
        ({"contact": "13800000000"}, "contact: unknown field"),
        ({"follows": "kp-01:1"}, "follows: only on an appended rating (attempt 2)"),
        ({"attempt": 2}, "follows: an appended rating needs follows or case_no"),
        ({"attempt": 2, "follows": "kp-01:7"}, "follows: must be the id of another rating"),
        ({"attempt": 2, "follows": "kp-01:07"}, "follows: must be the id of another rating"),
        ({"client": "pc"}, "client: only on web, qr_window, qr_case records"),
        ({"entered_by": "clerk"}, "entered_by: only on paper records"),
        ({"sig": "00"}, "sig: must be 64 lowercase hex characters"),
        ({"sig": "A" * 64}, "sig: must be 64 lowercase hex characters"),
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


def web_record(**changes):
    base = {"token": "20261126-0001", "stars": 1, "client": "mobile", "comment": "排队太久"}
    base.update(changes)
    rec = server_record("web", **base)
    return {k: v for k, v in rec.items() if v is not None}


def paper_record(**changes):
    base = {"token": "c-17", "stars": 1, "comment": "排队太久", "entered_by": "clerk-3",
            "entered_at": "2026-11-27T01:00:00Z", "card_date": "2026-11-24"}  # fmt: skip
    base.update(changes)
    rec = server_record("paper", **base)
    return {k: v for k, v in rec.items() if v is not None}


@pytest.mark.parametrize(
    ("rec", "message"),
    [
        # a server-made record cannot take a device's id, nor a device a server's
        (web_record(id="kp-01:7"), "id: must be web/<1..64 of A-Z a-z 0-9 - _ .>"),
        (web_record(id="sms/1"), "id: must be web/<1..64 of A-Z a-z 0-9 - _ .>"),
        (web_record(id="web/a:b"), "id: must be web/<1..64 of A-Z a-z 0-9 - _ .>"),
        (web_record(device_id="kp-01"), "device_id: only on keypad and kiosk records"),
        (web_record(seq=7), "seq: only on keypad and kiosk records"),
        (web_record(client=None), "client: is required on a web record"),
        (web_record(client="fax"), "client: must be one of pc, mobile"),
        (web_record(origin="staff_entry"), "origin: must be citizen on a web record"),
        (paper_record(origin="citizen"), "origin: must be staff_entry on a paper record"),
        (paper_record(entered_by=None), "entered_by: is required on a paper record"),
        (paper_record(card_date="2026-02-30"), "card_date: must be a calendar date as YYYY-MM-DD"),
        (
            paper_record(entered_at="yesterday"),
            "entered_at: must be UTC time as YYYY-MM-DDTHH:MM:SSZ",
        ),
        (paper_record(client="pc"), "client: only on web, qr_window, qr_case records"),
    ],
)
def test_server_made_records_keep_to_their_own_rules(rec, message):
    with pytest.raises(record.RecordError) as err:
        record.validate(rec)
    assert str(err.value) == message


def test_valid_records_of_every_kind_pass():
    assert record.validate(a_record()) is not None
    assert record.validate(a_record(tags=None, content_version="demo-1")) is not None  # shown
    appended = a_record(
        attempt=2, follows="web/20261126-0001", case_no="C1", handled_at="2026-11-26T08:00:00Z"
    )
    assert record.validate(appended) is appended
    assert record.validate(web_record()) is not None
    assert record.validate(paper_record()) is not None
    assert record.validate(server_record("hotline", token="1", comment="电话回访"))


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("kp-01:1", True),
        ("kp-01:2147483647", True),
        ("kp-01:2147483648", False),
        ("kp-01:01", False),
        ("kp-01:0", False),
        ("web/abc", True),
        ("keypad/abc", False),
        ("web/", False),
        ("web/" + "a" * 65, False),
        ("x" * 101, False),
        (7, False),
    ],
)
def test_record_ids_live_in_two_namespaces(value, ok):
    assert record.valid_record_id(value) is ok


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
        (b'{"t":"status","v":true,"online":true}', None, "status.v: unsupported version True"),
        (
            b'{"t":"status","v":1,"online":true,"last_seq":99999999999999999999999}',
            None,
            "status.last_seq: must be an integer 0..2147483647",
        ),
        (
            b'{"t":"status","v":1,"online":true,"counts":{"5":1e400}}',
            None,
            "status.counts: must map stars 1..5 to counts",
        ),
        (b'{"t":"status","v":1,"online":true,"x":1}', None, "status.x: unknown field"),
        (
            b'{"t":"status","v":1,"online":true,"fw":"1\\u0000"}',
            None,
            "status.fw: must be a string of 1..32",
        ),
        (
            b'{"t":"status","v":1,"online":true,"signal":5}',
            None,
            "status.signal: must be an integer -150..0 (dBm)",
        ),
        (
            b'{"t":"ev","v":1,"device_id":"kp-01","batch":1,"records":[{}],"extra":1}',
            None,
            "ev.extra: unknown field",
        ),
        (
            b'{"t":"ev","v":1,"device_id":"kp-01","batch":4294967296,"records":[{}]}',
            None,
            "ev.batch: must be an integer 0..2147483647",
        ),
        (
            b'{"t":"ev","v":1,"device_id":"kp-01","batch":1,"records":[{}],"contacts":[{},{}]}',
            None,
            "ev.contacts: must be a list, at most one per record",
        ),
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
            b'{"t":"config","v":1,"version":1,"tags":[[1,"a b","y"]],"content_version":"1"}',
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


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({}, None),
        ({"contact": "call me"}, "contact.contact: must be a phone number of 5..20 digits"),
        ({"contact": "+"}, "contact.contact: must be a phone number of 5..20 digits"),
        ({"consent": False}, "contact.consent: must be true (the rater agreed)"),
        ({"id": "kp-01:x"}, "contact.id: must be a record id"),
        ({"name": "张三"}, "contact: unknown field 'name'"),
        ({"sig": None}, "contact.sig: must be 64 lowercase hex characters"),
    ],
)
def test_a_contact_travels_beside_its_record_and_says_what_is_wrong(change, problem):
    entry = messages.contact("kp-01:7", "+8613800000000", bytes(32))
    assert sign.verify(entry, bytes(32))
    entry.update(change)
    assert messages.contact_problem(entry) == problem
    if problem:
        assert "13800000000" not in problem


def test_a_batch_over_the_limit_is_refused():
    msg = messages.batch("kp-01", 1, [a_record()] * (messages.MAX_BATCH + 1))
    with pytest.raises(messages.MessageError, match="^ev.records: more than 200 records$"):
        messages.encode(msg)

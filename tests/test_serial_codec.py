"""The window PC <-> keypad serial codec (protocols/serial.py, DESIGN §5).

Expected frames come from an independent encoder written here with the
standard library (json + binascii.crc_hqx), not from protocols.canonical.
Its escaping agrees with the canonical encoding for text without control
characters, which is all these tests use (checked by test_reference_agrees).
"""

import binascii
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import serial
from protocols.canonical import dumps
from protocols.serial import MAX_FRAME, FrameDecoder, FrameError, SerialError, encode_frame
from tests.harness.micropython import run_micropython

ROOT = Path(__file__).resolve().parent.parent


def reference_frame(msg):
    body = json.dumps(msg, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    body = body.encode("utf-8")
    return b"$" + body + b"*" + b"%04X" % binascii.crc_hqx(body, 0xFFFF) + b"\n"


def raw_frame(body, crc=None):
    """A frame around arbitrary body bytes, with a correct CRC unless given."""
    crc = binascii.crc_hqx(body, 0xFFFF) if crc is None else crc
    return b"$" + body + b"*" + b"%04X" % crc + b"\n"


def feed_all(data, chunks=None):
    decoder = FrameDecoder()
    items = []
    if chunks is None:
        items += decoder.feed(data)
    else:
        start = 0
        for size in chunks:
            items += decoder.feed(data[start : start + size])
            start += size
        items += decoder.feed(data[start:])
    return decoder, items


def summary(items):
    return [item if isinstance(item, dict) else ("error", str(item), item.ref) for item in items]


V = {"v": 1}
SAMPLES = [
    {**V, "t": "hello", "id": 1},
    {**V, "t": "info", "id": 2},
    {**V, "t": "signin", "id": 3, "name": "张三", "staff_no": "GH-0042"},
    {**V, "t": "signout", "id": 4},
    {**V, "t": "start", "id": 5, "case_no": "BJ2026112600017"},
    {
        **V,
        "t": "start",
        "id": 6,
        "case_no": "BJ2026112600018",
        "service_no": "2",
        "item_code": "11110000000000000X4440117015000",
        "timeout_s": 120,
    },
    {**V, "t": "cancel", "id": 7},
    {**V, "t": "pause", "id": 8},
    {**V, "t": "resume", "id": 9},
    {**V, "t": "status", "id": 65535},
    {**V, "t": "ack", "ref": 1},
    {**V, "t": "ack", "ref": 2, "fw": "0.1.0", "device_id": "kp-01", "window": "A01"},
    {**V, "t": "ack", "ref": 9, "state": "idle", "queue": 3, "online": True, "staff": None},
    {**V, "t": "nak", "ref": 5, "reason": "busy"},
    {**V, "t": "result", "id": 1, "record_id": "kp-01:7", "case_no": "BJ2026112600018"},
    {**V, "t": "result", "id": 2, "record_id": "kp-01:8", "case_no": "C-1", "service_no": "2"},
    {**V, "t": "timeout", "id": 3, "case_no": "BJ2026112600017"},
    {**V, "t": "error", "id": 4, "code": "store_full", "text": '存储已满 "quoted" \\ $*'},
]


def test_crc16_is_ccitt_false():
    assert serial.crc16(b"123456789") == 0x29B1
    assert serial.crc16(b"") == 0xFFFF
    data = bytes(range(256)) * 3
    assert serial.crc16(data) == binascii.crc_hqx(data, 0xFFFF)
    assert serial.crc16(data[100:], serial.crc16(data[:100])) == serial.crc16(data)


@given(st.binary(max_size=600), st.integers(0, 0xFFFF))
def test_crc16_matches_the_standard_library(data, start):
    assert serial.crc16(data, start) == binascii.crc_hqx(data, start)


def test_reference_agrees_with_the_canonical_encoding():
    for msg in SAMPLES:
        assert dumps(msg) == reference_frame(msg)[1:-6]


def test_every_type_is_covered():
    assert {m["t"] for m in SAMPLES} == set(serial.TYPES)
    assert len(serial.TYPES) == 14


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: m["t"])
def test_frames_equal_the_reference_and_round_trip(msg):
    frame = encode_frame(msg)
    assert frame == reference_frame(msg)
    assert frame.startswith(b"$") and frame.endswith(b"\n") and frame.count(b"\n") == 1
    decoder, items = feed_all(frame)
    assert items == [msg]
    assert (decoder.frames, decoder.errors, decoder.garbage_bytes) == (1, 0, 0)
    assert feed_all(frame[:-1] + b"\r\n")[1] == [msg]


def test_builders():
    assert serial.message("start", 5, case_no="X") == {**V, "t": "start", "id": 5, "case_no": "X"}
    assert serial.ack(3, queue=0) == {**V, "t": "ack", "ref": 3, "queue": 0}
    assert serial.nak(3, "bad_crc") == {**V, "t": "nak", "ref": 3, "reason": "bad_crc"}
    assert [serial.next_id(i) for i in (0, 1, 65534, 65535)] == [1, 2, 65535, 1]


def hello(**extra):
    return {**V, "t": "hello", "id": 1, **extra}


def start(**extra):
    return {**V, "t": "start", "id": 2, "case_no": "C-1", **extra}


def result(**extra):
    return {**V, "t": "result", "id": 3, "record_id": "kp-01:1", "case_no": "C-1", **extra}


INVALID = [
    ([], "message: must be an object, got a list"),
    ("hello", "message: must be an object, got a string of length 5"),
    ({"t": "hello", "id": 1}, "v: unsupported link version null, this end speaks 1"),
    (hello(v=2), "v: unsupported link version 2, this end speaks 1"),
    (hello(v=True), "v: unsupported link version true, this end speaks 1"),
    (hello(v=1.0), "v: unsupported link version a float, this end speaks 1"),
    (hello(t="bogus"), "t: unknown message type 'bogus'"),
    (hello(t=5), "t: unknown message type, got 5"),
    ({**V, "id": 1}, "t: unknown message type, got null"),
    (hello(id=0), "hello.id: must be an integer 1..65535, got 0"),
    (hello(id=65536), "hello.id: must be an integer 1..65535, got 65536"),
    (hello(id="1"), "hello.id: must be an integer 1..65535, got a string of length 1"),
    (hello(id=False), "hello.id: must be an integer 1..65535, got false"),
    ({**V, "t": "status"}, "status.id: must be an integer 1..65535, got null"),
    (hello(extra=1), "hello.extra: unknown field"),
    ({**V, "t": "signin", "id": 1, "staff_no": "7"}, "signin.name: missing"),
    (
        {**V, "t": "signin", "id": 1, "name": "", "staff_no": "7"},
        "signin.name: must be a string of 1..32 characters, got a string of length 0",
    ),
    (
        {**V, "t": "signin", "id": 1, "name": "李四", "staff_no": 7},
        "signin.staff_no: must be a string of 1..32 characters, got 7",
    ),
    (start(timeout_s=5), "start.timeout_s: must be an integer 10..600, got 5"),
    (start(timeout_s=601), "start.timeout_s: must be an integer 10..600, got 601"),
    (start(timeout_s=30.0), "start.timeout_s: must be an integer 10..600, got a float"),
    (start(timeout_s=None), "start.timeout_s: must be an integer 10..600, got null"),
    (
        start(case_no="x" * 65),
        "start.case_no: must be a string of 1..64 characters, got a string of length 65",
    ),
    (start(service_no=["1"]), "start.service_no: must be a string of 1..64 characters, got a list"),
    (start(item_code={}), "start.item_code: must be a string of 1..64 characters, got an object"),
    ({**V, "t": "start", "id": 2}, "start.case_no: missing"),
    (start(stars=5), "start.stars: the rating never goes to the window PC"),
    (result(stars=1), "result.stars: the rating never goes to the window PC"),
    (result(tags=["D101"]), "result.tags: the rating never goes to the window PC"),
    (result(level="差评"), "result.level: unknown field"),
    ({**V, "t": "ack"}, "ack.ref: must be an integer 1..65535, got null"),
    ({**V, "t": "ack", "ref": 1, "id": 1}, "ack.id: a reply carries ref, not id"),
    ({**V, "t": "ack", "ref": 1, "stars": 3}, "ack.stars: the rating never goes to the window PC"),
    ({**V, "t": "nak", "ref": 1}, "nak.reason: missing"),
    ({**V, "t": "timeout", "id": 1}, "timeout.case_no: missing"),
    (
        {**V, "t": "error", "id": 1, "code": "x", "text": "长" * 129},
        "error.text: must be a string of 1..128 characters, got a string of length 129",
    ),
    (hello(**{"1": 1}), "hello.1: unknown field"),
    ({**hello(), 1: 1}, "hello: field names must be strings"),
]


@pytest.mark.parametrize("msg,expected", INVALID, ids=[e for _, e in INVALID])
def test_validation_errors_name_the_field(msg, expected):
    with pytest.raises(SerialError) as caught:
        serial.validate(msg)
    assert str(caught.value) == expected
    assert isinstance(caught.value, ValueError)
    with pytest.raises(SerialError) as caught:
        encode_frame(msg)
    assert str(caught.value) == expected


@pytest.mark.parametrize("msg,expected", INVALID[:-1], ids=[e for _, e in INVALID[:-1]])
def test_invalid_messages_in_good_frames_become_error_items(msg, expected):
    decoder, items = feed_all(raw_frame(json.dumps(msg, ensure_ascii=False).encode()))
    assert summary(items) == [("error", expected, _ref(msg))]
    assert (decoder.frames, decoder.errors) == (0, 1)


def _ref(msg):
    ref = msg.get("id") if isinstance(msg, dict) else None
    return ref if type(ref) is int and 1 <= ref <= 65535 else None


def test_ack_data_must_be_canonical():
    with pytest.raises(SerialError, match="^ack: cannot encode float canonically$"):
        encode_frame({**V, "t": "ack", "ref": 1, "load": 0.5})


def ack_of_length(length):
    base = len(encode_frame({**V, "t": "ack", "ref": 1, "pad": ""}))
    return {**V, "t": "ack", "ref": 1, "pad": "x" * (length - base)}


def test_frame_length_limit_on_encoding():
    longest = ack_of_length(MAX_FRAME)
    assert len(encode_frame(longest)) == MAX_FRAME
    with pytest.raises(FrameError) as caught:
        encode_frame(ack_of_length(MAX_FRAME + 1))
    assert str(caught.value) == "frame too long: 513 bytes > 512"
    wide = {**V, "t": "ack", "ref": 1, "pad": "长" * 200}
    with pytest.raises(FrameError) as caught:
        encode_frame(wide)
    assert str(caught.value) == f"frame too long: {len(reference_frame(wide))} bytes > 512"


def test_frame_length_limit_on_decoding():
    longest = encode_frame(ack_of_length(MAX_FRAME))
    assert feed_all(longest)[1] == [ack_of_length(MAX_FRAME)]
    assert feed_all(longest[:-1] + b"\r\n")[1] == [ack_of_length(MAX_FRAME)]
    too_long = reference_frame(ack_of_length(MAX_FRAME + 1))
    good = encode_frame(SAMPLES[0])
    for line in (too_long, too_long[:-1] + b"\r\n", b"$" + b"x" * 5000 + b"\n"):
        for chunks in (None, [1] * len(line), [300, 300]):
            decoder, items = feed_all(line + good, chunks)
            assert summary(items) == [("error", "frame too long: over 512 bytes", None), good_msg()]
            assert decoder.buffered == 0


def good_msg():
    return SAMPLES[0]


def test_an_endless_line_is_reported_once_and_the_buffer_stays_bounded():
    decoder = FrameDecoder()
    items = decoder.feed(b"$")
    for _ in range(100):
        items += decoder.feed(b"y" * 97)
        assert decoder.buffered <= MAX_FRAME
    items += decoder.feed(b"\n" + encode_frame(SAMPLES[1]))
    assert summary(items) == [("error", "frame too long: over 512 bytes", None), SAMPLES[1]]


def test_bad_frames_yield_error_items_and_decoding_goes_on():
    good = encode_frame(SAMPLES[2])
    body = dumps(SAMPLES[3])
    crc = binascii.crc_hqx(body, 0xFFFF)
    stream = b"".join(
        [
            raw_frame(body, crc ^ 1),
            good,
            raw_frame(body).replace(b"%04X" % crc, b"%04x" % crc),
            b"$" + body + b"\n",
            b"$*1234\n",
            raw_frame(b'{"v":1,"t":"hello",'),
            raw_frame(b"\xff\xfe"),
            raw_frame(b"[1,2]"),
            raw_frame(dumps({"v": 2, "t": "hello", "id": 44})),
            raw_frame(dumps({"v": 1, "t": "reboot", "id": 45})),
            good,
        ]
    )
    expected = [
        ("error", f"bad checksum: frame has {crc ^ 1:04X}, body gives {crc:04X}", None),
        SAMPLES[2],
        ("error", "bad frame: checksum must be 4 uppercase hex digits", None),
        ("error", "bad frame: no $...*CRC structure", None),
        ("error", "bad checksum: frame has 1234, body gives FFFF", None),
        ("error", "bad json", None),
        ("error", "bad json", None),
        ("error", "message: must be an object, got a list", None),
        ("error", "v: unsupported link version 2, this end speaks 1", 44),
        ("error", "t: unknown message type 'reboot'", 45),
        SAMPLES[2],
    ]
    decoder, items = feed_all(stream)
    assert summary(items) == expected
    assert (decoder.frames, decoder.errors, decoder.garbage_bytes) == (2, 9, 0)
    assert summary(feed_all(stream, [1] * len(stream))[1]) == expected


def test_resync_after_garbage():
    frames = [encode_frame(m) for m in SAMPLES[:3]]
    garbage = [b"\x00\xffnoise*1234\r\n", b"\n\n", b"AT+RST\r\n\x1b[2J"]
    stream = garbage[0] + frames[0] + garbage[1] + frames[1] + garbage[2] + frames[2] + b"tail"
    decoder, items = feed_all(stream)
    assert items == SAMPLES[:3]
    assert decoder.garbage_bytes == sum(map(len, garbage)) + 4
    assert decoder.errors == 0


def test_a_frame_cut_short_does_not_take_the_next_frame_with_it():
    first, second = encode_frame(SAMPLES[4]), encode_frame(SAMPLES[5])
    decoder, items = feed_all(first[:25] + second + first)
    assert items == [SAMPLES[5], SAMPLES[4]]
    assert (decoder.garbage_bytes, decoder.errors) == (25, 0)
    # a cut frame holding "$" in a string, then a whole one holding "$" too
    last = encode_frame(SAMPLES[-1])
    assert b"$" in last[1:]
    decoder, items = feed_all(last[:-12] + last)
    assert items == [SAMPLES[-1]]


# Text without control characters: the reference escaping agrees on it.
TEXT = st.characters(blacklist_categories=("Cc", "Cs"))


def text(low, high):
    return st.text(TEXT, min_size=low, max_size=high)


IDS = st.integers(1, 65535)
OPTIONAL_TEXT = st.one_of(st.none(), text(1, 20))


def _with(t, key, **fields):
    return st.fixed_dictionaries({"v": st.just(1), "t": st.just(t), key: IDS, **fields})


def _drop_none(msg):
    return {k: v for k, v in msg.items() if v is not None}


MESSAGES = st.one_of(
    *[_with(t, "id") for t in ("hello", "info", "signout", "cancel", "pause", "resume", "status")],
    _with("signin", "id", name=text(1, 32), staff_no=text(1, 32)),
    _with(
        "start",
        "id",
        case_no=text(1, 40),
        service_no=OPTIONAL_TEXT,
        item_code=OPTIONAL_TEXT,
        timeout_s=st.one_of(st.none(), st.integers(10, 600)),
    ).map(_drop_none),
    _with("ack", "ref", fw=OPTIONAL_TEXT, queue=st.integers(0, 10**6), staff=OPTIONAL_TEXT),
    _with("nak", "ref", reason=text(1, 64)),
    _with("result", "id", record_id=text(1, 40), case_no=text(1, 40), service_no=OPTIONAL_TEXT).map(
        _drop_none
    ),
    _with("timeout", "id", case_no=text(1, 64)),
    _with("error", "id", code=text(1, 32), text=text(1, 100)),
).filter(lambda m: len(reference_frame(m)) <= MAX_FRAME)

GARBAGE = st.binary(max_size=40).map(lambda b: b.replace(b"$", b""))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(GARBAGE, MESSAGES), max_size=8), GARBAGE, st.randoms())
def test_any_chunking_gives_the_same_messages(pairs, tail, rnd):
    stream = b"".join(g + reference_frame(m) for g, m in pairs) + tail
    assert b"".join(encode_frame(m) for _, m in pairs) == b"".join(
        reference_frame(m) for _, m in pairs
    )
    cuts = sorted(rnd.sample(range(len(stream) + 1), min(len(stream) + 1, rnd.randint(0, 30))))
    chunks = [b - a for a, b in itertools.pairwise([0, *cuts])]
    for split in (None, chunks, [1] * len(stream)):
        decoder, items = feed_all(stream, split)
        assert items == [m for _, m in pairs]
        assert decoder.garbage_bytes == sum(len(g) for g, _ in pairs) + len(tail)
        assert decoder.errors == 0 and decoder.buffered <= MAX_FRAME


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            MESSAGES.map(reference_frame),
            st.binary(max_size=80),
            st.sampled_from([b"$", b"\n", b"\r\n", b"*", b"$" + b"z" * 600]),
        ),
        max_size=12,
    ),
    st.randoms(),
)
def test_arbitrary_bytes_decode_the_same_however_they_are_chunked(parts, rnd):
    stream = b"".join(parts)
    whole_decoder, whole = feed_all(stream)
    cuts = sorted(rnd.sample(range(len(stream) + 1), min(len(stream) + 1, 20)))
    chunks = [b - a for a, b in itertools.pairwise([0, *cuts])]
    for split in (chunks, [1] * len(stream)):
        decoder, items = feed_all(stream, split)
        assert summary(items) == summary(whole)
        assert decoder.garbage_bytes == whole_decoder.garbage_bytes
        assert decoder.buffered == whole_decoder.buffered <= MAX_FRAME


# ---------------------------------------------------------------------------
# The same codec under the real MicroPython interpreter.

SCRIPT = r"""
import binascii
from protocols import serial
from protocols.canonical import dumps

def hexs(data):
    return binascii.hexlify(data).decode()

frames = []
for msg in MESSAGES:
    frame = serial.encode_frame(msg)
    frames.append(frame)
    print("frame", hexs(frame))
print("crc", "%04X" % serial.crc16(b"123456789"))
for msg in INVALID:
    try:
        serial.encode_frame(msg)
        print("valid?!")
    except serial.SerialError as exc:
        print("invalid", exc)
bad_body = b'{"id":7,"t":"hello","v":2}'
stream = (
    b"\x00\xffnoise\r\n" + frames[0] + b"$broken*0000\n" + frames[1][:20] + frames[1]
    + frames[2][:-1] + b"\r\n" + b"$" + b"q" * 700 + b"\n" + frames[3].lower()
    + b"$" + bad_body + b"*" + ("%04X" % serial.crc16(bad_body)).encode() + b"\n"
    + b"*junk\n$no star here\n" + frames[-1] + frames[4][:30]
)
print("stream", hexs(stream))
for size in (len(stream), 1, 7, 64):
    decoder = serial.FrameDecoder()
    out = []
    for i in range(0, len(stream), size):
        out += decoder.feed(stream[i:i + size])
    print("chunks", size, decoder.garbage_bytes, decoder.frames, decoder.errors, decoder.buffered)
    for item in out:
        if isinstance(item, dict):
            print("msg", hexs(dumps(item)))
        else:
            print("err", item, item.ref)
"""


def _script():
    return f"MESSAGES = {SAMPLES!r}\nINVALID = {[m for m, _ in INVALID]!r}\n{SCRIPT}"


@pytest.mark.micropython
def test_micropython_gives_the_same_bytes_as_cpython_and_the_reference():
    script = _script()
    cpython = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    micropython = run_micropython(script).check()
    assert micropython.stdout == cpython

    lines = cpython.splitlines()
    frames = [bytes.fromhex(line.split()[1]) for line in lines if line.startswith("frame ")]
    assert frames == [reference_frame(m) for m in SAMPLES]
    assert "crc 29B1" in lines
    assert [line[8:] for line in lines if line.startswith("invalid ")] == [e for _, e in INVALID]

    # The decoder's output under MicroPython equals CPython's decoder on the same stream.
    stream = bytes.fromhex(next(line for line in lines if line.startswith("stream "))[7:])
    decoder, items = feed_all(stream)
    counts = [decoder.garbage_bytes, decoder.frames, decoder.errors, decoder.buffered]
    expected = ["chunks " + " ".join(map(str, [len(stream), *counts]))]
    for item in items:
        if isinstance(item, dict):
            expected.append("msg " + dumps(item).hex())
        else:
            expected.append(f"err {item} {item.ref}")
    start = lines.index(expected[0])
    assert lines[start : start + len(expected)] == expected
    assert [x for x in items if isinstance(x, dict)] == [
        SAMPLES[0],
        SAMPLES[1],
        SAMPLES[2],
        SAMPLES[-1],
    ]
    assert [str(x) for x in items if not isinstance(x, dict)] == [
        f"bad checksum: frame has 0000, body gives {binascii.crc_hqx(b'broken', 0xFFFF):04X}",
        "frame too long: over 512 bytes",
        "bad frame: checksum must be 4 uppercase hex digits",
        "v: unsupported link version 2, this end speaks 1",
        "bad frame: no $...*CRC structure",
    ]
    assert [line.split()[2:] for line in lines if line.startswith("chunks")] == [
        [str(n) for n in counts]
    ] * 4
    assert counts == [len(b"\x00\xffnoise\r\n") + 20 + len(b"*junk\n"), 4, 5, 30]

"""Neutral confirmation: the window PC cannot tell which key a citizen pressed.

Window staff must never learn the level (DOMAIN §7). Everything the window PC
can observe of the keypad - which events come, when relative to the level key
press, and whether its commands are accepted - must be the same for all five
levels, whatever the citizen does after the level key (picks a tag at any
moment, presses more keys, walks away), whether tags are configured for every
level or only for the 差评 levels. The app is driven by an explicit fake clock
through wrapping tick functions, so every run also crosses (or starts next
to) the 2^30 ms wrap of a board's tick counter.
"""

import subprocess
import sys
import unittest.mock
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import device.app as device_app
from device.app import KeypadApp
from protocols import levels, record, sign

ROOT = Path(__file__).resolve().parent.parent
KEY = b"n" * 32
PERIOD = 1 << 30  # MicroPython's tick period on the boards we use
HALF = PERIOD // 2
CASE_TIMEOUT_S = 30


def wrap_add(ticks, delta):
    return (ticks + delta) % PERIOD


def wrap_diff(later, earlier):
    return (later - earlier + HALF) % PERIOD - HALF


@contextmanager
def wrapping_ticks():
    """device.app with tick functions that wrap like a board's."""
    with unittest.mock.patch.multiple(device_app, ticks_add=wrap_add, ticks_diff=wrap_diff):
        yield


class MemoryStore:
    """The part of device.store.Store the app uses, in RAM; it notes when each
    record was written (on the fake clock, relative to the level press)."""

    def __init__(self, clock):
        self.next_seq = 1
        self.clock = clock
        self.written = []  # (relative ms, record)

    def add(self, rec):
        assert rec["seq"] == self.next_seq
        self.written.append((self.clock["rel"], rec))
        self.next_seq += 1


ALL_LEVELS = [[s, f"T{s}{n}", f"标签{s}{n}"] for s in levels.STARS for n in (1, 2, 3)]
BAD_ONLY = [row for row in ALL_LEVELS if levels.is_bad(row[0])]
TAG_SETS = {"all": ALL_LEVELS, "bad_only": BAD_ONLY}


def key_of(stars):
    return levels.KEY_STARS.index(stars)


def run(stars, tags, scenario):
    """Drive one keypad through scenario; return (observable trace, records written)."""
    base, confirm_ms, lead, actions = (
        scenario["base"],
        scenario["confirm_ms"],
        scenario["lead"],
        scenario["actions"],
    )
    clock = {"rel": None}
    store = MemoryStore(clock)
    boot_rel = -(lead or 0) - 7
    app = KeypadApp(
        "kp-01",
        KEY,
        store,
        lambda: (1764145800, "ntp"),
        "b00t",
        boot_ms=wrap_add(base, boot_rel),
        confirm_ms=confirm_ms,
    )
    app.configure({"window_id": "A01", "content_version": "cv-7", "tags": tags})
    trace = []

    def at(rel):
        clock["rel"] = rel
        return wrap_add(base, rel)

    def drain():
        while app.events:
            kind, fields = app.events.pop(0)
            trace.append(("event", kind, clock["rel"], fields))

    if lead is not None:  # the window PC starts a case, then the citizen rates
        case = {"case_no": "C-1", "service_no": "1", "timeout_s": CASE_TIMEOUT_S}
        trace.append(("start", -lead, app.start_case(case, at(-lead))))
        drain()
    app.press(key_of(stars), at(0))
    drain()
    for n, (rel, what, arg) in enumerate(actions):
        now = at(rel)
        if what == "tick":
            app.tick(now)
        elif what == "press":
            app.press(arg, now)  # the citizen's keys: not seen by the window PC
        elif what == "start":
            case = {"case_no": f"C-{n + 2}", "timeout_s": CASE_TIMEOUT_S}
            trace.append(("start", rel, app.start_case(case, now)))
        elif what == "cancel":
            trace.append(("cancel", rel, app.cancel_case(now)))
        elif what == "pause":
            trace.append(("pause", rel, app.pause(now)))
        elif what == "resume":
            trace.append(("resume", rel, app.resume(now)))
        drain()
    assert app.events_dropped == 0
    for rel, rec in store.written:
        assert rec["uptime_ms"] == rel - boot_rel  # counted across the wrap
    return trace, [rec for _rel, rec in store.written]


@st.composite
def scenarios(draw):
    confirm_ms = draw(st.integers(4, 20000))
    # anywhere, or close enough to the wrap that the run crosses it, or the
    # window crosses it
    base = draw(
        st.one_of(
            st.integers(0, PERIOD - 1),
            st.integers(PERIOD - 60000, PERIOD - 1),
            st.integers(PERIOD - confirm_ms, PERIOD - 1),
        )
    )
    lead = draw(st.one_of(st.none(), st.integers(0, CASE_TIMEOUT_S * 1000 - 1)))
    end = confirm_ms + CASE_TIMEOUT_S * 1000 + 1  # long enough for a queued case to time out
    within = st.integers(1, confirm_ms - 1)  # the citizen acts inside the window only
    anytime = st.integers(1, end)
    presses = draw(st.lists(st.tuples(within, st.just("press"), st.integers(0, 4)), max_size=6))
    commands = draw(
        st.lists(
            st.tuples(
                st.one_of(within, anytime),
                st.sampled_from(("start", "start", "cancel", "pause", "resume")),
                st.none(),
            ),
            max_size=4,
        )
    )
    ticks = draw(st.lists(st.tuples(anytime, st.just("tick"), st.none()), max_size=8))
    fixed = [(confirm_ms - 1, "tick", None), (confirm_ms, "tick", None), (end, "tick", None)]
    order = draw(st.permutations(range(len(presses) + len(commands) + len(ticks) + 3)))
    everything = presses + commands + ticks + fixed
    actions = [everything[i] for i in order]
    actions.sort(key=lambda a: a[0])  # stable: equal times keep the drawn order
    return {"base": base, "confirm_ms": confirm_ms, "lead": lead, "actions": actions}


NEAR_WRAP = {
    "base": PERIOD - 2500,
    "confirm_ms": 10000,
    "lead": 4000,
    "actions": [
        (1200, "press", 0),
        (3000, "start", None),
        (9000, "tick", None),
        (9999, "tick", None),
        (10000, "tick", None),
        (10000 + 30000, "tick", None),
    ],
}


# The tag screen closes 500 ms before the wrap; the next tick comes after it.
TAGS_CLOSE_BEFORE_WRAP = {
    "base": PERIOD - 9500,
    "confirm_ms": 10000,
    "lead": None,
    "actions": [(8000, "tick", None), (9999, "tick", None), (10000, "tick", None)],
}


@settings(max_examples=300, deadline=None)
@given(scenarios())
@example(NEAR_WRAP)
@example(TAGS_CLOSE_BEFORE_WRAP)
def test_the_window_pc_sees_the_same_for_every_level(scenario):
    confirm_ms = scenario["confirm_ms"]
    traces = {}
    with wrapping_ticks():
        for name, tags in TAG_SETS.items():
            for stars in levels.STARS:
                trace, records = run(stars, tags, scenario)
                traces[(name, stars)] = trace
                (rec,) = records  # one citizen, one rating
                assert rec["stars"] == stars
                assert record.validate(rec) and sign.verify(rec, KEY)
                shown = name == "all" or levels.is_bad(stars)
                assert ("content_version" in rec) == shown
                assert "tags" not in rec or shown
    first = traces[("all", 5)]
    for key, trace in traces.items():
        assert trace == first, key
    results = [item for item in first if item[:2] == ("event", "result")]
    assert len(results) == 1
    assert results[0][2] == confirm_ms  # exactly at press + confirm_ms
    assert results[0][3]["record_id"] == "kp-01:1"


def test_the_near_wrap_example_really_crosses_the_wrap():
    base, end = NEAR_WRAP["base"], NEAR_WRAP["confirm_ms"]
    assert base + end > PERIOD and wrap_add(base, end) < base
    with wrapping_ticks():
        trace, _records = run(1, BAD_ONLY, NEAR_WRAP)
    assert trace == [
        ("start", -4000, True),
        ("start", 3000, True),  # queued during the window, not refused
        ("event", "result", 10000, {"record_id": "kp-01:1", "case_no": "C-1", "service_no": "1"}),
        ("event", "timeout", 40000, {"case_no": "C-3"}),  # the queued case, asked from 10000
    ]


def _app(tags, store, confirm_ms=10000):
    app = KeypadApp("kp-01", KEY, store, lambda: (1764145800, "ntp"), "b00t", 0, confirm_ms)
    app.configure({"content_version": "cv-7", "tags": tags})
    return app


def test_a_bad_rating_left_without_a_reason_keeps_no_tags_but_the_version_shown():
    clock = {"rel": 0}
    store = MemoryStore(clock)
    app = _app(BAD_ONLY, store)
    app.press(key_of(1), 5000)
    assert app.state == "tags"
    app.press(4, 6000)  # no fourth tag on this screen: ignored
    app.tick(5000 + app.tags_ms - 1)
    assert store.written == [] and app.events == []
    app.tick(5000 + app.tags_ms)
    ((_, rec),) = store.written
    assert rec["stars"] == 1 and "tags" not in rec and rec["content_version"] == "cv-7"
    assert record.validate(rec) and sign.verify(rec, KEY)
    assert app.screen() == ("感谢您的评价",) and app.events == []
    app.tick(5000 + 9999)
    assert app.events == []
    app.tick(5000 + 10000)
    assert app.events == [("result", {"record_id": "kp-01:1"})] and app.state == "idle"


def test_a_good_level_without_tags_has_no_content_version():
    store = MemoryStore({"rel": 0})
    app = _app(BAD_ONLY, store)
    rec = app.press(key_of(4), 100)
    assert "content_version" not in rec and "tags" not in rec


def test_tags_after_a_good_level_are_optional_and_versioned():
    store = MemoryStore({"rel": 0})
    app = _app(ALL_LEVELS, store)
    assert app.press(key_of(5), 100) is None
    assert app.screen() == ("满意之处(可不选)", "1 标签51", "2 标签52", "3 标签53")
    rec = app.press(2, 900)
    assert rec["tags"] == ["T53"] and rec["content_version"] == "cv-7"
    assert app.press(0, 1000) is None  # the choice is made; repeat presses are ignored
    assert len(store.written) == 1


def test_the_tag_screen_keeps_what_it_showed_when_the_config_changes():
    store = MemoryStore({"rel": 0})
    app = _app(BAD_ONLY, store)
    app.press(key_of(2), 100)
    app.configure({"content_version": "cv-8", "tags": [[2, "NEW", "新"]]})
    rec = app.press(0, 200)
    assert rec["tags"] == ["T21"] and rec["content_version"] == "cv-7"


# The app under the real MicroPython interpreter: its own ticks_add/ticks_diff
# (which wrap there), a start just before the wrap, the five levels with tags
# configured for all of them, a tag chosen or not. The printed trace must be
# the same for every level and the same as CPython's.
MICROPYTHON_TRACE = r"""
from device.app import KeypadApp
from device.compat import ticks_add
from protocols import levels

class MemoryStore:
    def __init__(self):
        self.next_seq = 1
        self.records = []
    def add(self, rec):
        self.records.append(rec)
        self.next_seq += 1

tags = []
for s in levels.STARS:
    tags.append([s, "T" + str(s), "标签" + str(s)])
base = ticks_add(0, -1500)  # 1.5 s before the wrap on a board
for choose in (None, 0):
    for stars in levels.STARS:
        store = MemoryStore()
        app = KeypadApp("kp-01", bytes(32), store, lambda: (1764145800, "ntp"), "b00t",
                        ticks_add(base, -100), 3000)
        app.configure({"content_version": "cv-7", "tags": tags})
        trace = []
        def at(rel):
            return ticks_add(base, rel)
        trace.append(("start", app.start_case({"case_no": "C-1"}, at(-50))))
        app.press(levels.KEY_STARS.index(stars), at(0))
        for rel in range(100, 3200, 100):
            if rel == 1000 and choose is not None:
                app.press(choose, at(rel))
            if rel == 2000:
                trace.append(("start", rel, app.start_case({"case_no": "C-2"}, at(rel))))
            app.tick(at(rel))
            while app.events:
                kind, fields = app.events.pop(0)
                trace.append((kind, rel, sorted(fields.items())))
        rec = store.records[0]
        print("trace", choose, trace)
        print("record", choose, stars, rec["stars"], rec.get("tags"), rec["content_version"],
              rec["uptime_ms"], app.state)
"""


def _cpython(code):
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.micropython
def test_the_app_runs_neutrally_under_micropython(micropython):
    result = micropython(MICROPYTHON_TRACE)
    result.check()
    assert result.stdout == _cpython(MICROPYTHON_TRACE)
    lines = result.stdout.splitlines()
    traces = {line for line in lines if line.startswith("trace")}
    expected = (
        "[('start', True), ('start', 2000, True), "
        "('result', 3000, [('case_no', 'C-1'), ('record_id', 'kp-01:1')])]"
    )
    assert traces == {f"trace None {expected}", f"trace 0 {expected}"}
    records = [line.split() for line in lines if line.startswith("record")]
    assert len(records) == 10
    for _, choose, stars, got, tags, version, uptime, state in records:
        assert got == stars and version == "cv-7" and state == "ask"
        assert tags == ("None" if choose == "None" else f"['T{stars}']")
        assert uptime == ("2400" if choose == "None" else "1100")

"""The same device-side code under CPython and the real MicroPython interpreter.

One script prints protocol vectors (canonical bytes, signatures, messages,
mappings, validation errors) and drives the device store and keypad app; it
must print byte-identical output on both interpreters, and the signatures
must equal those of CPython's own hmac over the reference encoding.
"""

import hashlib
import hmac
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.micropython import run_micropython
from tests.harness.reference import reference_canonical

ROOT = Path(__file__).resolve().parent.parent

VECTORS = r"""
import binascii
from protocols import canonical, levels, messages, record, sign, topics

KEY = bytes(range(32))
values = [
    None, True, 0, -7, 2 ** 40, "", "好差评", "tab\there \"q\" \\ \x7f",
    [1, [2, []], {}], {"b": 1, "a": [None, False], "中": "文"},
]
for v in values:
    print("canon", binascii.hexlify(canonical.dumps(v)).decode())

rec = {
    "id": "kp-01:7", "device_id": "kp-01", "seq": 7, "stars": 1, "tags": ["D101"],
    "content_version": "demo-1", "channel": "keypad", "rated_at": "2026-11-26T08:30:00Z",
    "clock": "ntp", "origin": "citizen", "attempt": 1, "comment": "等了很久\n",
}
print("record", binascii.hexlify(sign.record_bytes(rec)).decode())
rec["sig"] = sign.sign(rec, KEY)
print("sig", rec["sig"], sign.verify(rec, KEY), sign.verify(rec, b"x"))
print("mqtt-password", sign.mqtt_password(KEY))
print("hmac-long-key", binascii.hexlify(sign.hmac_sha256(b"k" * 100, b"msg")).decode())

for msg in (
    messages.batch("kp-01", 3, [rec]),
    messages.ack(3, [7, 5], [6]),
    messages.status(True, fw="0.1.0", queue=1, last_seq=7, counts={"1": 1, "5": 0}),
    messages.config(2, window_id="A01", content_version="demo-1", tags=[[1, "D101", "服务态度差"]]),
    messages.command("c-1", "reboot"),
    messages.command_result("c-1", False, "unsupported"),
):
    print("msg", binascii.hexlify(messages.encode(msg)).decode())
    print("back", messages.decode(messages.encode(msg), msg["t"]) == msg)

signed_ack = messages.encode_signed(messages.ack(4, [9], []), KEY)
print("signed-ack", binascii.hexlify(signed_ack).decode())
back = messages.decode(signed_ack)
print("signed-ack-verifies", sign.verify(back, KEY), sign.verify(back, b"other"))

for kind, _qos, _retain in topics.KINDS:
    name = topics.topic("kp-01", kind)
    print("topic", name, topics.parse(name) == ("kp-01", kind))
for s in levels.STARS:
    print("level", s, levels.stars_to_gbt39046(s), levels.stars_to_satisfaction(s),
          levels.level_name(s), levels.gbt39046_to_stars(6 - s))
for c, client, _pf in levels.CHANNEL_TO_PF:
    try:
        print("pf", c, client, levels.channel_to_pf(c, client))
    except levels.MappingError as e:
        print("pf", c, client, str(e))
for pf in levels.PF_CODES:
    print("pf-back", pf, levels.pf_to_channel(pf))
for bad in (True, 5.0, 0):
    try:
        levels.level_name(bad)
    except levels.MappingError as e:
        print("level-error", str(e))
for value in ("kp-01:1", "kp-01:01", "web/a-1", "keypad/x", "kp-01:2147483648", "a" * 101):
    print("id", value[:12], record.valid_record_id(value))
for value in ("2024-02-29T00:00:00Z", "2026-02-29T00:00:00Z", "2026-04-31T00:00:00Z"):
    print("time", value, record.valid_utc_time(value))
web = {"id": "web/w-1", "stars": 2, "channel": "web", "client": "mobile", "comment": "慢",
       "rated_at": "2026-11-26T08:30:00Z", "clock": "ntp", "origin": "citizen", "attempt": 2,
       "follows": "kp-01:7", "case_no": "C-1", "handled_at": "2026-11-26T08:00:00Z"}
print("web", record.validate(web) is web)
entry = messages.contact("kp-01:7", "+8613800000000", KEY)
print("contact", binascii.hexlify(canonical.dumps(entry)).decode(), messages.contact_problem(entry))
print("contact-verifies", sign.verify(entry, KEY))

bad_inputs = (
    {"stars": 0}, {"channel": "fax"}, {"rated_at": "2026-11-26"}, {"seq": 8}, {"extra": 1},
    {"stars": True}, {"seq": 2 ** 40}, {"comment": "a\x00"}, {"channel": "web"},
    {"origin": "staff_entry"}, {"attempt": 2}, {"tags": ["a b"]}, {"contact": "13800000000"},
)
for changes in bad_inputs:
    broken = dict(rec)
    broken.update(changes)
    try:
        record.validate(broken)
        print("valid?!")
    except record.RecordError as e:
        print("error", e.field, "|", str(e))
for payload in (b"{", b'{"t":"ack","v":3}', b'{"t":"ack","v":1,"batch":1,"stored":[-1],"quarantined":[]}'):
    try:
        messages.decode(payload)
    except messages.MessageError as e:
        print("msgerror", str(e))
"""

DEVICE = r"""
import os
from device.store import Store, seed
from device.app import KeypadApp
from device.clock import utc_iso

folder = DATA + "/store"
try:
    os.mkdir(DATA)
except OSError:
    pass
seed(folder)
store = Store(folder)
app = KeypadApp("kp-01", bytes(32), store, lambda: (1764145800, "ntp"), "b00t", 0)
app.configure({"window_id": "A01", "content_version": "demo-1",
               "tags": [[1, "D101", "服务态度差"], [2, "D201", "等候时间长"]]})
now = 0
for key in (0, 4, 0, 2, 3, 1):
    now += 10000
    rec = app.press(key, now)
    if rec is None:
        print("screen", "|".join(app.screen()))
        rec = app.press(0, now + 500)
    print("rec", rec["id"], rec["stars"], rec.get("tags"), rec["sig"])
    app.tick(now + 5000)
print("pending", [r["seq"] for r in store.pending(10)])
store.remove([1, 2, 3])
again = Store(folder)
print("after-reopen", [r["seq"] for r in again.pending(10)], again.next_seq, sorted(again.counts.items()))
with open(folder + "/journal", "ab") as f:
    f.write(b'0badc0de {"a":')
torn = Store(folder)
print("after-torn", [r["seq"] for r in torn.pending(10)], torn.next_seq)
torn.remove([4, 5, 6])
print("empty", len(Store(folder)), Store(folder).next_seq)
for s in (0, 951782400, 1764145800, 4102444799):
    print("time", utc_iso(s))
"""


def run_cpython(code: str, data_dir: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", f"DATA = {data_dir!r}\n" + code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.micropython
def test_protocol_vectors_are_byte_identical_on_both_interpreters(tmp_path):
    cpython = run_cpython(VECTORS, str(tmp_path))
    micropython = run_micropython(VECTORS)
    micropython.check()
    assert micropython.stdout == cpython
    assert "valid?!" not in cpython
    lines = cpython.splitlines()
    assert "error stars | stars: must be an integer 1..5, got 0" in lines
    assert "msgerror ack.v: unsupported version 3" in lines


@pytest.mark.micropython
def test_signatures_equal_the_standard_library_over_the_reference_encoding():
    out = run_micropython(VECTORS)
    out.check()
    rec = {
        "id": "kp-01:7", "device_id": "kp-01", "seq": 7, "stars": 1, "tags": ["D101"],
        "content_version": "demo-1", "channel": "keypad", "rated_at": "2026-11-26T08:30:00Z",
        "clock": "ntp", "origin": "citizen", "attempt": 1, "comment": "等了很久\n",
    }  # fmt: skip
    body = reference_canonical(rec)
    expected = hmac.new(bytes(range(32)), body, hashlib.sha256).hexdigest()
    lines = out.stdout.splitlines()
    assert f"record {body.hex()}" in lines
    assert f"sig {expected} True False" in lines
    ack_body = reference_canonical(
        {"v": 1, "t": "ack", "batch": 4, "stored": [9], "quarantined": []}
    )
    ack_sig = hmac.new(bytes(range(32)), ack_body, hashlib.sha256).hexdigest()
    assert "signed-ack-verifies True False" in lines
    long_key = hmac.new(b"k" * 100, b"msg", hashlib.sha256).hexdigest()
    assert f"hmac-long-key {long_key}" in lines
    password = hmac.new(bytes(range(32)), b"hcp/v1 mqtt password", hashlib.sha256).hexdigest()
    assert f"mqtt-password {password[:40]}" in lines
    expected = reference_canonical(
        {"v": 1, "t": "ack", "batch": 4, "stored": [9], "quarantined": [], "sig": ack_sig}
    )
    assert f"signed-ack {expected.hex()}" in lines


@pytest.mark.micropython
def test_device_store_and_app_behave_the_same_on_both_interpreters(tmp_path):
    cpython = run_cpython(DEVICE, str(tmp_path))
    micropython = run_micropython('DATA = "/work/data"\n' + DEVICE)
    micropython.check()
    assert micropython.stdout == cpython
    lines = cpython.splitlines()
    assert "pending [2, 5, 1, 3, 4, 6]" in lines  # 差评 first
    assert "after-reopen [5, 4, 6] 7 [('1', 1), ('2', 1), ('3', 1), ('4', 1), ('5', 2)]" in lines
    assert "after-torn [5, 4, 6] 7" in lines
    assert "empty 0 7" in lines
    assert "time 2000-02-29T00:00:00Z" in lines


# Stand-ins for the two board modules that the WebAssembly port lacks; the
# firmware's own wiring (device.main.build) runs unchanged on top of them.
BOARD_STUBS = {
    "/lib/machine.py": """
class Pin:
    IN = 0
    PULL_UP = 1
    levels = {}
    def __init__(self, n, mode=-1, pull=-1):
        self.n = n
        Pin.levels.setdefault(n, 1)
    def __call__(self):
        return Pin.levels[self.n]
""",
    "/lib/network.py": """
STA_IF = 0
class WLAN:
    def __init__(self, interface):
        self._active = False
    def active(self, flag=None):
        self._active = bool(flag)
    def connect(self, ssid, password):
        pass
    def isconnected(self):
        return False
""",
}

MAIN = r"""
import os
import machine, network
from device import config
from device.main import build
from hardware.boards import esp32s3_keypad as board

os.mkdir("/work/data")
settings = config.load(None, {"device_id": "kp-01", "key": "00" * 32,
                              "broker_host": "192.0.2.1", "data_dir": "/work/data"})
device = build(machine, network, board, settings, wall_clock=lambda: (1764145800, "ntp"))
now = 0


def press_key_2():
    global now
    for level in (0, 0, 1, 1):  # key 2 (满意) pressed and released, 40 ms each
        machine.Pin.levels[board.KEY_PINS[1]] = level
        for _ in range(5):
            now += 10
            device.step(now)


press_key_2()  # a new data folder: the seqs used before are unknown
print("unknown", device.app.state, len(device.store), device.screen()[0])
device.store.learn(0)  # what a down/seq with highest 0 does
press_key_2()
print("state", device.app.state, "pending", len(device.store))
(rec,) = device.store.pending(5)
print(rec["id"], rec["stars"], rec["rated_at"], len(rec["sig"]))
try:
    config.load(None, {"device_id": "kp-01"})
except ValueError as e:
    print("config", e)
"""


@pytest.mark.micropython
def test_the_firmware_wiring_runs_on_micropython():
    result = run_micropython(MAIN, files=BOARD_STUBS)
    result.check()
    assert result.stdout.splitlines() == [
        "unknown idle 0 设备正在与平台核对，暂停评价",
        "state thanks pending 1",
        "kp-01:1 4 2025-11-26T08:30:00Z 64",
        "config not provisioned: missing key, broker_host",
    ]

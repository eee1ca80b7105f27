"""The keypad's commands (docs/protocol.md §3.5) and its wall clock: set_time
and NTP, what `clock` says, redelivered commands run once, factory_reset never
loses an unacked rating (issue 6 item 4)."""

import json
import random
import time
import unittest.mock

import pytest

from device import config as device_config
from device import ntp as device_ntp
from device.clock import utc_iso
from device.commands import REBOOT_DELAY_MS, REMEMBER, Commands
from device.main import build
from hardware.boards import sim as sim_board
from protocols import messages, topics
from simulators.machine import SimMachine
from simulators.network import SimNetwork
from tests.harness.records import seeded

KEY_HEX = "6b" * 32
KEY = bytes.fromhex(KEY_HEX)
T0 = 1764145800  # 2025-11-26T08:30:00Z


def boot(tmp_path, machine=None, link=False, wall_clock=None, **overrides):
    network = SimNetwork()
    network.link_up = link
    values = {
        "device_id": "kp-01",
        "key": KEY_HEX,
        "broker_host": "127.0.0.1",
        "broker_port": 1,
        "data_dir": str(tmp_path / "data"),
        "board": "sim",
        "timeout_ms": 200,
    }
    ntp_query = overrides.pop("ntp_query", None)
    values.update(overrides)
    seeded(values["data_dir"])
    dev = build(
        machine or SimMachine(),
        network,
        sim_board,
        device_config.load(None, values),
        wall_clock=wall_clock or (lambda: (T0, "unset")),
        check_filesystem=False,
        ntp_query=ntp_query,
    )
    dev.client.publish = unittest.mock.Mock()
    return dev


def send(dev, cid, name, args=None):
    """Deliver a signed command as the broker would; the cmdres it published."""
    payload = messages.encode_signed(messages.command(cid, name, args or {}), KEY)
    dev.client.publish.reset_mock()
    dev.sync._message(topics.topic("kp-01", topics.DOWN_CMD), payload, False)
    assert dev.sync.bad_messages == 0
    (topic, reply, qos), _ = dev.client.publish.call_args
    assert topic == topics.topic("kp-01", topics.UP_CMDRES) and qos == 1
    msg = messages.decode(reply)  # within the contract
    assert msg["t"] == messages.CMDRES and msg["id"] == cid
    return msg


def rate(dev, stars=5):
    dev.app.press(5 - stars, 0)
    dev.app.tick(dev.settings["confirm_ms"] + 1)


# --- set_time and the clock ------------------------------------------------------------------


def test_set_time_sets_the_rtc_and_the_clock_says_rtc(tmp_path):
    machine = SimMachine()
    dev = boot(tmp_path, machine)
    assert dev.app.wall_clock() == (T0, "unset")
    res = send(dev, "c-1", "set_time", {"utc": "2026-11-27T01:02:03Z"})
    assert res["ok"] is True and res["result"] == {"utc": "2026-11-27T01:02:03Z", "clock": "rtc"}
    seconds, source = dev.app.wall_clock()
    assert utc_iso(seconds) == "2026-11-27T01:02:03Z" and source == "rtc"
    assert machine.rtc_datetime == (2026, 11, 27, 4, 1, 2, 3, 0)  # a Friday
    assert json.loads(messages.encode(dev.status()))["clock"] == "rtc"


@pytest.mark.parametrize(
    "args, reason",
    [
        ({}, "args.utc: must be UTC time"),
        ({"utc": 1764145800}, "args.utc: must be UTC time"),
        ({"utc": "2026-02-30T00:00:00Z"}, "args.utc: must be UTC time"),
        ({"utc": "2026-11-27 01:02:03"}, "args.utc: must be UTC time"),
        ({"utc": "2000-01-01T00:00:00Z"}, "args.utc: before 2023-11-14"),
    ],
)
def test_set_time_refuses_bad_args_with_a_reason(tmp_path, args, reason):
    machine = SimMachine()
    dev = boot(tmp_path, machine)
    res = send(dev, "c-1", "set_time", args)
    assert res["ok"] is False and res["result"].startswith(reason)
    assert dev.app.wall_clock() == (T0, "unset") and machine.rtc_datetime is None


def test_a_port_without_an_rtc_still_keeps_the_set_time(tmp_path):
    machine = SimMachine()
    del machine.RTC
    dev = boot(tmp_path, machine)
    assert send(dev, "c-1", "set_time", {"utc": "2026-11-27T00:00:00Z"})["ok"] is True
    assert utc_iso(dev.app.wall_clock()[0]) == "2026-11-27T00:00:00Z"


def test_utc_seconds_and_rtc_tuple_agree_with_the_clock_module():
    rng = random.Random(6)
    for seconds in [0, 951782400, 4107542399, T0] + [
        rng.randrange(0, 5 * 10**9) for _ in range(2000)
    ]:
        text = utc_iso(seconds)
        assert device_ntp.utc_seconds(text) == seconds
        tup = device_ntp.rtc_tuple(seconds)
        expected = time.gmtime(seconds)
        assert tup[:7] == (*expected[:3], expected.tm_wday, *expected[3:6])


@pytest.mark.parametrize(
    "battery, now, source",
    [(True, T0, "rtc"), (False, T0, "unset"), (True, 946684800 + 5, "unset")],
)
def test_the_board_clock_is_rtc_only_with_a_battery_and_a_plausible_time(
    monkeypatch, battery, now, source
):
    monkeypatch.setattr(device_ntp.time, "time", lambda: now)
    assert device_ntp.board_clock(battery)() == (now, source)


# --- NTP --------------------------------------------------------------------------------------


def test_ntp_is_skipped_on_cpython_without_a_stand_in(tmp_path):
    dev = boot(tmp_path, link=True)
    assert dev.ntp.enabled is False
    dev.run_once(0)
    assert (dev.ntp.syncs, dev.ntp.failures) == (0, 0)


def test_ntp_sets_the_clock_on_start_and_again_after_its_interval(tmp_path):
    asked = []

    def query(host, timeout_ms):
        asked.append((host, timeout_ms))
        return T0 + 3600

    dev = boot(tmp_path, link=True, ntp_query=query, ntp_every_ms=5000)
    dev.ntp.tick(100)
    assert asked == [("ntp.aliyun.com", 2000)]
    assert dev.app.wall_clock() == (T0 + 3600, "ntp")
    dev.ntp.tick(5099)
    assert len(asked) == 1
    dev.ntp.tick(5100)
    assert len(asked) == 2 and dev.ntp.syncs == 2


def test_ntp_failures_are_counted_retried_and_never_crash_the_loop(tmp_path):
    calls = []

    def query(host, timeout_ms):
        calls.append(host)
        if len(calls) == 1:
            raise OSError(110)
        if len(calls) == 2:
            return 12345  # nonsense: not a plausible time
        return T0

    dev = boot(tmp_path, link=True, ntp_query=query, ntp_retry_ms=1000)
    dev.run_once(0)
    assert dev.ntp.failures == 1 and dev.ntp.last_error == "OSError"
    assert dev.crash_log.count == 0 and dev.app.wall_clock()[1] == "unset"
    dev.run_once(500)
    assert len(calls) == 1
    dev.run_once(1000)
    assert dev.ntp.failures == 2 and dev.app.wall_clock() == (T0, "unset")
    dev.run_once(2000)
    assert dev.ntp.syncs == 1 and dev.app.wall_clock() == (T0, "ntp")


def test_ntp_waits_for_the_link_and_an_empty_host_disables_it(tmp_path):
    query = unittest.mock.Mock(return_value=T0)
    dev = boot(tmp_path, link=False, ntp_query=query)
    dev.ntp.tick(0)
    assert not query.called and dev.ntp.failures == 0
    dev = boot(tmp_path, link=True, ntp_query=query, ntp_host="")
    dev.ntp.tick(0)
    assert not query.called


def test_the_last_of_ntp_and_set_time_says_what_set_the_clock(tmp_path):
    dev = boot(tmp_path, link=True, ntp_query=lambda h, t: T0 + 60)
    dev.ntp.tick(0)
    assert dev.app.wall_clock()[1] == "ntp"
    send(dev, "c-1", "set_time", {"utc": "2026-11-27T00:00:00Z"})
    assert dev.app.wall_clock()[1] == "rtc"


def test_a_rating_carries_the_clock_that_set_the_time(tmp_path):
    dev = boot(tmp_path, link=True, ntp_query=lambda h, t: T0 + 60)
    dev.ntp.tick(0)
    rate(dev, 4)
    (record,) = dev.store.pending(1)
    assert (record["rated_at"], record["clock"]) == (utc_iso(T0 + 60), "ntp")


def test_the_socket_query_parses_an_ntp_reply(monkeypatch):
    reply = bytearray(48)
    reply[0] = 0x1C  # version 3, mode 4 (server)
    reply[1] = 2  # stratum
    reply[40:44] = (T0 + device_ntp.NTP_DELTA).to_bytes(4, "big")
    sent = []

    class Sock:
        def settimeout(self, s):
            sent.append(("timeout", s))

        def sendto(self, packet, addr):
            sent.append((bytes(packet[:1]), addr))

        def recv(self, n):
            return bytes(reply)

        def close(self):
            sent.append("closed")

    import socket

    monkeypatch.setattr(socket, "getaddrinfo", lambda *a: [(2, 2, 17, "", ("192.0.2.9", 123))])
    monkeypatch.setattr(socket, "socket", lambda *a: Sock())
    assert device_ntp.query("ntp.example", 1500) == T0
    assert sent == [("timeout", 1.5), (b"\x1b", ("192.0.2.9", 123)), "closed"]
    reply[1] = 0  # kiss-o'-death
    with pytest.raises(ValueError):
        device_ntp.query("ntp.example", 1500)


# --- the other commands -------------------------------------------------------------------------


def test_a_redelivered_command_is_answered_again_but_run_once(tmp_path):
    dev = boot(tmp_path)
    first = send(dev, "c-7", "set_time", {"utc": "2026-11-27T00:00:00Z"})
    dev.app.wall_clock.set(T0, "ntp")  # NTP corrects it meanwhile
    again = send(dev, "c-7", "set_time", {"utc": "2026-11-27T00:00:00Z"})
    assert again == first and dev.commands.repeats == 1
    assert dev.app.wall_clock() == (T0, "ntp")  # not set a second time


def test_the_remembered_ids_are_bounded(tmp_path):
    dev = boot(tmp_path)
    for n in range(REMEMBER + 5):
        send(dev, "c-" + str(n), "identify", {"seconds": 1})
    assert len(dev.commands.done) == REMEMBER
    assert dev.commands.done[0][0] == "c-5"


def test_sync_now_clears_the_waits_of_sync(tmp_path):
    dev = boot(tmp_path)
    dev.sync._in_flight = (3, 0)
    dev.sync._last_send = 0
    res = send(dev, "c-1", "sync_now")
    assert res["ok"] is True and res["result"] == {"queue": 0}
    assert dev.sync._in_flight is None and dev.sync._last_send is None


def test_status_is_answered_by_sync(tmp_path):
    res = send(boot(tmp_path), "c-1", "status")
    assert res["ok"] is True and res["result"]["queue"] == 0


def test_an_update_without_a_version_is_refused_naming_the_field(tmp_path):
    res = send(boot(tmp_path), "c-1", "update", {"url": "http://x"})
    assert res["ok"] is False and res["result"] == "args.version: must be a string of 1..32"


def test_reboot_answers_first_and_resets_on_a_later_pass(tmp_path):
    machine = SimMachine()
    dev = boot(tmp_path, machine)
    now = [10000]
    dev.commands.now = lambda: now[0]
    res = send(dev, "c-1", "reboot")
    assert res["ok"] is True and machine.resets == 0
    dev.run_once(10000 + REBOOT_DELAY_MS - 1)
    assert machine.resets == 0
    dev.run_once(10000 + REBOOT_DELAY_MS)
    assert machine.resets == 1
    dev.run_once(10000 + 5 * REBOOT_DELAY_MS)
    assert machine.resets == 1
    # after the reboot the same command, redelivered, does not reboot again
    dev2 = boot(tmp_path, machine)
    assert send(dev2, "c-1", "reboot") == res
    assert dev2.commands._reboot_at is None


@pytest.mark.parametrize("seconds", [0, 601, "5", True, None])
def test_identify_refuses_bad_seconds(tmp_path, seconds):
    res = send(boot(tmp_path), "c-1", "identify", {"seconds": seconds})
    assert res["ok"] is False and res["result"] == "args.seconds: must be an integer 1..600"


def test_identify_shows_the_device_id_for_its_seconds(tmp_path):
    dev = boot(tmp_path)
    now = [5000]
    dev.commands.now = lambda: now[0]
    normal = dev.screen()
    res = send(dev, "c-1", "identify", {"seconds": 3})
    assert res["result"] == {"seconds": 3}
    assert dev.screen() == ("设备编号", "kp-01")
    now[0] = 7999
    assert dev.screen() == ("设备编号", "kp-01")
    now[0] = 8000
    assert dev.screen() == normal
    send(dev, "c-2", "identify")  # identify_ms by default
    assert dev.screen() == ("设备编号", "kp-01")
    now[0] = 8000 + 30000
    assert dev.screen() == normal


def test_factory_reset_must_name_the_device(tmp_path):
    machine = SimMachine()
    dev = boot(tmp_path, machine)
    for args in ({}, {"device_id": "kp-02"}, {"device_id": 1}):
        res = send(dev, "c-" + str(args), "factory_reset", args)
        assert res["ok"] is False and res["result"].startswith("args.device_id: must repeat")
    dev.run_once(10**6)
    assert machine.resets == 0


def test_factory_reset_never_loses_an_unacked_rating(tmp_path):
    machine = SimMachine()
    dev = boot(tmp_path, machine)
    rate(dev, 1)
    res = send(dev, "c-1", "factory_reset", {"device_id": "kp-01"})
    assert res["ok"] is False
    assert res["result"] == "1 ratings not yet acknowledged by the collector: not erased"
    dev.run_once(10**6)
    assert machine.resets == 0 and len(dev.store) == 1


def test_factory_reset_erases_only_when_empty_and_keeps_settings_and_seq(tmp_path):
    machine = SimMachine()
    dev = boot(tmp_path, machine)
    data = tmp_path / "data"
    rate(dev, 5)
    dev.store.remove([1])  # acked
    (data / "desired.json").write_text("{}")
    (data / "crashes.json").write_text('{"crashes": 2, "last": []}')
    (data / "config.json").write_text('{"device_id": "kp-01"}')
    now = [0]
    dev.commands.now = lambda: now[0]
    res = send(dev, "c-1", "factory_reset", {"device_id": "kp-01"})
    assert res["ok"] is True and res["result"]["erased"] == [
        "journal",
        "desired.json",
        "crashes.json",
    ]
    assert (data / "desired.json").exists()  # nothing before the answer is out
    dev.run_once(REBOOT_DELAY_MS)
    assert machine.resets == 1
    assert not (data / "desired.json").exists() and not (data / "crashes.json").exists()
    assert not (data / "journal").exists()
    assert (data / "config.json").exists() and (data / "commands.json").exists()
    dev2 = boot(tmp_path, machine)
    assert dev2.store.next_seq == 2  # a seq is never reused
    assert dev2.crash_log.count == 0
    assert send(dev2, "c-1", "factory_reset", {"device_id": "kp-01"}) == res
    assert dev2.commands._reboot_at is None


def test_a_rating_made_between_the_answer_and_the_erase_is_kept(tmp_path):
    machine = SimMachine()
    dev = boot(tmp_path, machine)
    dev.commands.now = lambda: 0
    assert send(dev, "c-1", "factory_reset", {"device_id": "kp-01"})["ok"] is True
    rate(dev, 2)
    dev.run_once(REBOOT_DELAY_MS)
    assert machine.resets == 1
    assert len(boot(tmp_path, machine).store) == 1


def test_a_handler_that_raises_is_answered_not_thrown(tmp_path):
    dev = boot(tmp_path)
    dev.commands.clock = None  # set_time would raise AttributeError
    res = send(dev, "c-1", "set_time", {"utc": "2026-11-27T00:00:00Z"})
    assert res == {
        "v": 1,
        "t": "cmdres",
        "id": "c-1",
        "ok": False,
        "result": "failed: AttributeError",
    }


def test_commands_are_wired_only_in_normal_mode(tmp_path):
    machine = SimMachine()
    machine.Pin(sim_board.KEY_PINS[0], machine.Pin.IN, 1).drive(0)
    dev = build(
        machine,
        SimNetwork(),
        sim_board,
        device_config.load(
            None,
            {
                "device_id": "kp-01",
                "key": KEY_HEX,
                "broker_host": "127.0.0.1",
                "data_dir": str(tmp_path / "data"),
                "board": "sim",
                "safe_mode_hold_ms": 50,
            },
        ),
        check_filesystem=False,
    )
    assert dev.mode == "safe" and dev.commands is None and dev.tasks == []
    assert isinstance(Commands, type)


# --- under MicroPython ------------------------------------------------------------------------

MICROPYTHON_COMMANDS = r"""
import os
import machine, network
from device import config
from device.main import build
from hardware.boards import esp32s3_keypad as board
from protocols import messages, sign

from device.store import seed
seed("/work/data")
settings = config.load(None, {"device_id": "kp-01", "key": "00" * 32,
                              "broker_host": "192.0.2.1", "data_dir": "/work/data"})
device = build(machine, network, board, settings, ntp_query=lambda h, t: 1764145800)
print("clock", device.app.wall_clock()[1])
device.ntp.link = lambda: True
device.run_once(0)
print("ntp", device.app.wall_clock())
sent = []
device.client.publish = lambda topic, payload, qos=0, retain=False: sent.append(payload)
def cmd(cid, name, args):
    msg = messages.command(cid, name, args)
    msg["sig"] = sign.sign(msg, bytes(32))
    device.sync._message("hcp/v1/dev/kp-01/down/cmd", messages.encode(msg), False)
    return sent[-1].decode() if isinstance(sent[-1], bytes) else sent[-1]
print(cmd("c-1", "set_time", {"utc": "2026-11-27T01:02:03Z"}))
print("rtc", device.app.wall_clock())
print(cmd("c-2", "set_time", {"utc": "2026-13-01T00:00:00Z"}))
print(cmd("c-1", "set_time", {"utc": "2026-11-27T09:09:09Z"}))
# the clock runs on from the time set (a loaded machine may take a second or two)
print("repeats", device.commands.repeats, 0 <= device.app.wall_clock()[0] - 1795741323 <= 5)
print(cmd("c-3", "factory_reset", {"device_id": "kp-09"}))
print("bad", device.sync.bad_messages)
"""


@pytest.mark.micropython
def test_commands_and_ntp_under_micropython():
    from tests.harness.micropython import run_micropython
    from tests.test_micropython_vectors import BOARD_STUBS

    result = run_micropython(MICROPYTHON_COMMANDS, files=BOARD_STUBS)
    result.check()
    assert result.stdout.splitlines() == [
        "clock unset",
        "ntp (1764145800, 'ntp')",
        '{"id":"c-1","ok":true,"result":{"clock":"rtc","utc":"2026-11-27T01:02:03Z"},'
        '"t":"cmdres","v":1}',
        "rtc (1795741323, 'rtc')",
        '{"id":"c-2","ok":false,"result":"args.utc: must be UTC time as YYYY-MM-DDTHH:MM:SSZ",'
        '"t":"cmdres","v":1}',
        '{"id":"c-1","ok":true,"result":{"clock":"rtc","utc":"2026-11-27T01:02:03Z"},'
        '"t":"cmdres","v":1}',
        "repeats 1 True",
        '{"id":"c-3","ok":false,"result":"args.device_id: must repeat this device\'s id to '
        'confirm","t":"cmdres","v":1}',
        "bad 0",
    ]


# --- end to end: the simulated keypad on a real broker -----------------------------------------


def test_commands_reach_the_simulated_keypad_through_the_broker(secured_broker, tmp_path):
    """On Mosquitto with access control on (amqtt open): the keypad logs in
    with its derived password, the commands go out with the fleet agent's
    login, as sync_server/fleet_agent.py sends them."""
    from simulators.keypad import SimKeypad
    from tests.harness.broker import assert_access_control
    from tests.test_end_to_end import Watcher, wait_for

    broker = secured_broker
    broker.allow([("kp-01", KEY_HEX)])  # provisioned: let in (a reload)
    assert_access_control(broker, ("kp-01", KEY_HEX))
    keypad = SimKeypad(
        "kp-01", KEY_HEX, broker.host, broker.port, str(tmp_path / "kp"), clock_set=False
    )
    cmd_topic = topics.topic("kp-01", topics.DOWN_CMD)
    watcher = Watcher(
        broker,
        topics.topic("kp-01", topics.UP_CMDRES),
        topics.topic("kp-01", topics.UP_STATUS),
        login=broker.fleet_login(),
    )
    keypad.start()
    try:
        wait_for(lambda: watcher.received, what="the keypad's first status")

        def command(cid, name, args):
            watcher.publish(
                cmd_topic, messages.encode_signed(messages.command(cid, name, args), KEY)
            )

        def answers():
            return [json.loads(p) for t, p in list(watcher.received) if t.endswith("/up/cmdres")]

        command("c-1", "set_time", {"utc": "2026-11-27T01:02:03Z"})
        command("c-1", "set_time", {"utc": "2026-11-27T01:02:03Z"})  # delivered twice
        command("c-2", "identify", {"seconds": 5})
        wait_for(lambda: len(answers()) == 3, what="three answers")
        assert [a["id"] for a in answers()] == ["c-1", "c-1", "c-2"]
        assert all(a["ok"] for a in answers())
        assert keypad.call(lambda d: d.app.wall_clock()[1]) == "rtc"
        assert keypad.call(lambda d: d.screen()) == ("设备编号", "kp-01")
        assert keypad.call(lambda d: d.commands.repeats) == 1
        command("c-3", "reboot", {})
        wait_for(lambda: keypad.boots == 2, what="the reboot")
        assert answers()[-1] == {
            "v": 1,
            "t": "cmdres",
            "id": "c-3",
            "ok": True,
            "result": {"reboot_in_ms": REBOOT_DELAY_MS},
        }
        wait_for(lambda: keypad.device.client.connected, what="the reconnect")
        assert keypad.call(lambda d: d.app.wall_clock()[1]) == "unset"  # no battery clock
    finally:
        keypad.stop()
        watcher.close()
    assert keypad.errors == []


def test_ntp_waits_longer_than_half_the_tick_period_are_cut(tmp_path):
    from device.ntp import MAX_WAIT_MS, NTP

    ntp = NTP("h", None, 30 * 86400 * 1000, 10**12, 1000)
    assert ntp.every_ms == ntp.retry_ms == MAX_WAIT_MS == (1 << 29) - 1


def test_the_socket_query_against_a_local_server_and_its_timeout():
    import socket
    import threading

    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer():
        packet, addr = server.recvfrom(64)
        reply = bytearray(48)
        reply[0], reply[1] = 0x24, 1  # version 4, server; stratum 1
        reply[40:44] = (T0 + device_ntp.NTP_DELTA).to_bytes(4, "big")
        if packet[0] == 0x1B:
            server.sendto(bytes(reply), addr)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    assert device_ntp.query("127.0.0.1", 2000, port) == T0
    thread.join(5)
    started = time.monotonic()
    with pytest.raises(OSError):  # nobody answers: bounded by the timeout
        device_ntp.query("127.0.0.1", 300, port)
    assert time.monotonic() - started < 2
    server.close()


MP_UNIX_NTP = """
import sys
sys.path.insert(0, LIB)
from device import ntp
print(ntp.query("127.0.0.1", 2000, PORT))
try:
    ntp.query("127.0.0.1", 300, PORT)
    print("answered")
except OSError as exc:
    print("timeout", type(exc).__name__)
"""


def test_the_ntp_query_on_micropython_unix_sockets(micropython32, firmware_image, tmp_path):
    """The real socket path (settimeout, sendto, recv) under the unix port."""
    import socket
    import subprocess
    import threading

    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer():
        packet, addr = server.recvfrom(64)
        reply = bytearray(48)
        reply[0], reply[1] = 0x1C, 2
        reply[40:44] = (T0 + device_ntp.NTP_DELTA).to_bytes(4, "big")
        server.sendto(bytes(reply), addr)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    script = tmp_path / "ntp_check.py"
    code = MP_UNIX_NTP.replace("LIB", repr(str(firmware_image.lib))).replace("PORT", str(port))
    script.write_text(code)
    started = time.monotonic()
    proc = subprocess.run(
        [str(micropython32), str(script)], capture_output=True, text=True, timeout=30
    )
    server.close()
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == str(T0) and lines[1].startswith("timeout ")
    assert time.monotonic() - started < 10

# For tests only: runs the keypad firmware under MicroPython's unix port.
#
#   micropython32 -X heapsize=256K run_keypad.py job.json
#
# job.json: {"paths": [folders put first on sys.path], "settings": {device
# settings over device.config's defaults}, "ratings": R, "drain_timeout_ms": T,
# optional "cycles": C (default 1), "ticks_before_wrap": W and "await_commands": N}.
# The firmware is wired by device.main.build with the stand-ins of this
# folder (machine, network) and the sim board's key pins. It makes R ratings
# with the link down, pressing the level keys in turn through the stand-in
# pins, then brings the link up and runs its main loop until its store is
# empty (every record acked by the collector) or T ms have passed; C times
# over, reporting the live heap after each drain ("cycle" events). With N,
# it then keeps the link up and its loop running until it has answered N
# commands from the collector ("commands" event: their ids and ok flags).
#
# The keypad's own timers (debounce, the follow-up window after a rating)
# run on a clock that is the port's ticks_ms() plus an offset which the
# script moves forward while the link is down, so ratings do not wait in
# real time; once the link is up the offset stays put and time is real.
# With W, that clock starts W ms before the wrap of the tick counter (2^30 ms)
# and the firmware reads it too (its modules' ticks_ms is this clock), so it
# sees one clock, as on a board, however far the offset goes.
#
# Heap: before each step of the main loop the script collects garbage and
# reads gc.mem_alloc() (the live heap); after the step it reads it again
# (the live heap plus all that the step allocated, as long as the step did
# not need a collection of its own). Both high-water marks are reported.
#
# Output: one JSON object per line on stdout; the last one has "event":
# "result" (exit status 0) or "error" (exit status 1, traceback on stderr).
import gc
import json
import sys
import time

_started = time.ticks_ms()
with open(sys.argv[1]) as f:
    job = json.loads(f.read())
# only the job's folders and the frozen modules: nothing from the working directory
sys.path[:] = job["paths"] + [".frozen"]

import machine  # noqa: E402  (the stand-ins, found through the paths above)
import network  # noqa: E402

board = None  # hardware.boards.sim, imported in run() with the firmware
KEY_HOLD_MS = 40  # a finger on a key, longer than the 30 ms debounce

_offset = 0
_peak = {"live": 0, "step": 0}
phase = "start"
made = 0  # ratings made so far


def now():
    return time.ticks_add(time.ticks_ms(), _offset)


def advance(ms):
    global _offset
    _offset += ms


def emit(event, **fields):
    fields["event"] = event
    print(json.dumps(fields))


def step(device):
    gc.collect()
    live = gc.mem_alloc()
    if live > _peak["live"]:
        _peak["live"] = live
    device.step(now())
    used = gc.mem_alloc()
    if used > _peak["step"]:
        _peak["step"] = used


def rate(device, index):
    pin = machine.pin(board.KEY_PINS[index])
    before = len(device.store)
    pin.drive(0)  # active-low: a pressed key reads 0
    step(device)
    advance(KEY_HOLD_MS)
    step(device)
    pin.drive(1)
    step(device)
    advance(KEY_HOLD_MS)
    step(device)
    if len(device.store) != before + 1:
        raise AssertionError(f"key {index} made no record (state {device.app.state})")
    while device.app.in_window():  # the thank-you until the follow-up window ends
        advance(device.settings["confirm_ms"])
        step(device)


def run():
    global phase, made, board, _offset
    phase = "import"  # the firmware's code takes heap too (bytecode, strings)
    gc.collect()
    before = gc.mem_alloc()
    import device.main as device_main
    from device import config
    from device.main import build
    from device.store import seed
    from hardware.boards import sim as board

    gc.collect()
    # from a .mpy file: <lib>/device/main.mpy; frozen into the port: device/main.py
    emit("imported", live=gc.mem_alloc(), grew=gc.mem_alloc() - before, main=device_main.__file__)
    if job.get("ticks_before_wrap") is not None:
        _offset = time.ticks_diff(time.ticks_add(0, -job["ticks_before_wrap"]), time.ticks_ms())
        from device import commands, mqtt

        for module in (device_main, mqtt, commands):  # those that read ticks_ms()
            module.ticks_ms = now
    phase = "boot"
    settings = config.load(None, job["settings"])
    seed(settings["data_dir"])  # as provisioning leaves a new board
    network.set_link(False)
    device = build(machine, network, board, settings)
    gc.collect()
    emit("booted", heap=gc.mem_alloc() + gc.mem_free(), live=gc.mem_alloc(), now=now())
    for cycle in range(job.get("cycles", 1)):
        phase = "offline"
        network.set_link(False)
        for _ in range(job["ratings"]):
            rate(device, made % len(board.KEY_PINS))
            made += 1
        emit(
            "offline",
            pending=len(device.store),
            batches_sent=device.sync.batches_sent,
            connected=device.client.connected,
            peak_live=_peak["live"],
            peak_step=_peak["step"],
        )
        phase = "drain"
        network.set_link(True)
        started = time.ticks_ms()
        while (
            len(device.store)
            and time.ticks_diff(time.ticks_ms(), started) < job["drain_timeout_ms"]
        ):
            step(device)
            time.sleep_ms(2)
        drain_ms = time.ticks_diff(time.ticks_ms(), started)
        gc.collect()
        emit(
            "cycle",
            n=cycle + 1,
            made=made,
            pending=len(device.store),
            live=gc.mem_alloc(),
            now=now(),
            uptime_ms=device.app.uptime_ms(now()),
        )
    wanted = job.get("await_commands", 0)
    if wanted:
        # the link stays up: the test's commands come down, are run and answered
        phase = "commands"
        started = time.ticks_ms()
        while (
            len(device.commands.done) < wanted
            and time.ticks_diff(time.ticks_ms(), started) < job["drain_timeout_ms"]
        ):
            step(device)
            time.sleep_ms(2)
        for _ in range(50):  # a few more passes: the last answer leaves the socket
            step(device)
            time.sleep_ms(2)
        emit("commands", done=[[entry[0], entry[1]] for entry in device.commands.done])
    device.shutdown()
    emit(
        "result",
        made=device.store.last_seq,
        pending=len(device.store),
        batches_sent=device.sync.batches_sent,
        acks=device.sync.acks,
        bad_messages=device.sync.bad_messages,
        heap=gc.mem_alloc() + gc.mem_free(),
        peak_live=_peak["live"],
        peak_step=_peak["step"],
        drain_ms=drain_ms,
        run_ms=time.ticks_diff(time.ticks_ms(), _started),
    )


try:
    run()
except BaseException as exc:  # noqa: B036 (MemoryError included: it is what we look for)
    gc.collect()  # the firmware's objects went with run()'s frame: room to report
    emit(
        "error",
        phase=phase,
        made=made,
        error=type(exc).__name__ + ": " + str(exc),
        peak_live=_peak["live"],
        peak_step=_peak["step"],
    )
    sys.print_exception(exc)
    sys.exit(1)

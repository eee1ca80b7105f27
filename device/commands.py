# The collector's commands (docs/protocol.md §3.5), wired by device/main.py
# as sync.on_command. Sync has already checked the command's signature (the
# device key) and shape; `status` is answered by Sync itself.
#
# Every answer is (ok, result): result is a short reason when ok is false.
# A bad argument is answered ok false with the reason; nothing raises out.
# The ids of the last REMEMBER commands are kept with their answers: a
# command delivered twice (MQTT QoS 1) is answered again, not run again.
# `reboot` and `factory_reset` keep that list on flash too, so the command
# that rebooted the keypad does not run again if the broker redelivers it.
#
# reboot / factory_reset answer first; tick() on a later pass (REBOOT_DELAY_MS
# later, after the cmdres and the command's PUBACK are sent) resets the board.
# factory_reset erases the journal (only while it holds no unacked rating:
# checked on the command and again just before erasing), the last config and
# the crash file; it keeps the provisioned settings (config.json) and the
# store's state (next seq and counters: a seq is never reused).
#
# update (device/update.py) downloads, checks and stages a firmware bundle,
# switches to it on trial and answers ok before the reboot; a staging that
# fails answers the reason and changes nothing. While a firmware is on trial,
# tick() confirms it once the keypad has connected and sent its status, or
# rolls it back (and resets) when its health deadline passes first.
import json
import os

from device.compat import ticks_add, ticks_diff, ticks_ms
from device.ntp import PLAUSIBLE, utc_seconds
from protocols.record import valid_utc_time

REMEMBER = 16
REBOOT_DELAY_MS = 1000
IDENTIFY_MAX_S = 600
DONE_FILE = "commands.json"
ERASED_FILES = ("journal", "desired.json", "crashes.json")  # by factory_reset


def _int(value):
    return isinstance(value, int) and not isinstance(value, bool)


class Commands:
    def __init__(
        self,
        device_id,
        sync,
        store,
        clock,
        machine,
        data_dir,
        identify_ms=30000,
        journal_path=None,
        now=ticks_ms,
        fw_root=None,
        fetch=None,
    ):
        self.device_id = device_id
        self.sync = sync
        self.store = store
        self.clock = clock  # device.ntp.WallClock
        self.machine = machine
        self.data_dir = data_dir
        self.identify_ms = identify_ms
        self.journal_path = journal_path or data_dir + "/journal"
        self.now = now
        self.done = []  # [[id, ok, result], ...], the last REMEMBER
        self.repeats = 0  # redelivered commands answered again
        self._reboot_at = None  # ticks after which tick() resets the board
        self._erase = False
        self._identify_until = None
        self._done_path = data_dir + "/" + DONE_FILE
        # the board's "/" is the data folder's parent (a folder when simulated)
        self._fw_root = data_dir[: data_dir.rfind("/")] if fw_root is None else fw_root
        self._fetch = fetch
        self.wdt = None  # machine.WDT once started: an update's download feeds it
        # device/update.py is imported only to update or while on trial: its
        # code would otherwise take heap on every board for nothing
        self.trial = None
        from device.main import read_json

        fw = read_json(data_dir + "/fw.json")
        if isinstance(fw, dict) and fw.get("active") and fw.get("version"):
            sync.firmware = fw["version"]  # the status reports the slot's version
            if fw.get("trial"):
                from device.update import Trial

                self.trial = Trial(data_dir, now)
        try:
            with open(self._done_path) as f:
                done = json.loads(f.read())
            if isinstance(done, list):
                self.done = [e for e in done if isinstance(e, list) and len(e) == 3][-REMEMBER:]
        except (OSError, ValueError):
            pass

    def __call__(self, cmd):
        """sync.on_command: the answer (ok, result) to one command."""
        cid = cmd.get("id")
        for entry in self.done:
            if entry[0] == cid:
                self.repeats += 1
                return entry[1], entry[2]
        name = cmd.get("cmd")
        args = cmd.get("args")
        if not isinstance(args, dict):
            args = {}
        handler = getattr(self, "_" + str(name), None) if name in NAMES else None
        if handler is None:
            ok, result = False, "unsupported"
        else:
            try:
                ok, result = handler(args)
            except Exception as exc:  # never out of the loop; the collector is told
                ok, result = False, "failed: " + type(exc).__name__
        self.done.append([cid, ok, result])
        del self.done[:-REMEMBER]
        if self._reboot_at is not None:
            self._save_done()
        return ok, result

    def _save_done(self):
        from device.main import write_small

        try:
            write_small(self._done_path, json.dumps(self.done))
        except OSError:
            pass  # a full flash: a redelivered reboot would reboot once more

    # --- the commands ---
    def _sync_now(self, args):
        self.sync.send_now()  # the pending records go out on this pass
        return True, {"queue": len(self.store)}

    def _reboot(self, args):
        self._reboot_at = ticks_add(self.now(), REBOOT_DELAY_MS)
        return True, {"reboot_in_ms": REBOOT_DELAY_MS}

    def _set_time(self, args):
        utc = args.get("utc")
        if not valid_utc_time(utc):
            return False, "args.utc: must be UTC time as YYYY-MM-DDTHH:MM:SSZ"
        seconds = utc_seconds(utc)
        if seconds < PLAUSIBLE:
            return False, "args.utc: before 2023-11-14, not a plausible time"
        self.clock.set(seconds, "rtc")
        return True, {"utc": utc, "clock": "rtc"}

    def _identify(self, args):
        seconds = args.get("seconds", min(max(1, self.identify_ms // 1000), IDENTIFY_MAX_S))
        if not _int(seconds) or not 1 <= seconds <= IDENTIFY_MAX_S:
            return False, "args.seconds: must be an integer 1..600"
        self._identify_until = ticks_add(self.now(), seconds * 1000)
        return True, {"seconds": seconds}

    def _factory_reset(self, args):
        if args.get("device_id") != self.device_id:
            return False, "args.device_id: must repeat this device's id to confirm"
        queue = len(self.store)
        if queue:
            return False, str(queue) + " ratings not yet acknowledged by the collector: not erased"
        self._erase = True
        self._reboot_at = ticks_add(self.now(), REBOOT_DELAY_MS)
        return True, {"erased": list(ERASED_FILES), "reboot_in_ms": REBOOT_DELAY_MS}

    def _update(self, args):
        if self._reboot_at is not None:
            return False, "busy: a restart is due"
        from device import update

        wdt = self.wdt
        updater = update.Updater(
            self.data_dir,
            self._fw_root,
            self._fetch or update.http_get,
            wdt and wdt.feed,
            self.device_id,
        )
        ok, result = updater.stage(args, self.sync.firmware)
        if ok:
            self._reboot_at = ticks_add(self.now(), REBOOT_DELAY_MS)
            result["reboot_in_ms"] = REBOOT_DELAY_MS
            result["boot_id"] = self.sync.boot_id  # the boot that leaves
        return ok, result

    # --- the main loop's side ---
    def screen(self):
        """The identify screen while it lasts, else None."""
        if self._identify_until is None:
            return None
        if ticks_diff(self._identify_until, self.now()) <= 0:
            self._identify_until = None
            return None
        return ("设备编号", self.device_id)

    def tick(self, now_ms):
        """Each pass of the main loop: a firmware on trial is confirmed or
        rolled back; a reboot asked for is done once due."""
        if self.trial is not None and self.trial.tick(now_ms, self.sync) == "rollback":
            self.machine.reset()
            return
        if self._reboot_at is None or ticks_diff(now_ms, self._reboot_at) < 0:
            return
        self._reboot_at = None
        if self._erase:
            self._erase = False
            self.erase()
        self.machine.reset()

    def erase(self):
        """factory_reset's erasing; never while a rating waits for its ack."""
        if len(self.store):
            return False
        for name in ERASED_FILES:
            path = self.journal_path if name == "journal" else self.data_dir + "/" + name
            for p in (path, path + ".tmp"):
                try:
                    os.remove(p)
                except OSError:
                    pass  # not there
        return True


NAMES = ("sync_now", "reboot", "set_time", "identify", "factory_reset", "update")

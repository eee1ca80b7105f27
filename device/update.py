# Firmware updates over the air (docs/protocol.md §3.7, docs/fleet.md).
#
# The collector's `update` command (signed with this device's key, so its
# `manifest_sha256` is vouched for by the key) names a version, the URL of
# its bundle and how long the new firmware has to report healthy. The device:
#
# 1. downloads manifest.json and refuses it unless its SHA-256 is the signed
#    one; the manifest gives each file's size, SHA-256 and the SHA-256 of
#    each chunk;
# 2. downloads each file chunk by chunk (one HTTP request per chunk) into the
#    slot /fw/<version>/, refusing a chunk whose hash is not the manifest's
#    (tried again, then the update fails and nothing changes); after each
#    chunk the progress is written, so a power cut resumes where it stopped;
# 3. checks every staged file's hash again as read back from flash;
# 4. switches: one atomic rename of /data/fw.json makes the slot active on
#    trial; the reboot that follows runs it (/boot.py, BOOT_PY below, puts
#    the slot first in sys.path);
# 5. on trial, the firmware confirms itself once it has connected and sent
#    its status (Trial.tick); if it has not within `health_s`, or /boot.py
#    counts more than MAX_TRIAL_BOOTS boots on trial (a firmware that dies
#    before it can tell, reset by the watchdog or a power cycle), the
#    previous slot is made active again and the board restarts.
#
# Until step 4 the running firmware is untouched: a corrupted chunk or a
# power cut while staging leaves the old firmware running.
import json
import os
from binascii import hexlify

try:
    import hashlib
except ImportError:  # a port built without it
    hashlib = None

from device.compat import sleep_ms, ticks_diff, ticks_ms

STATE_FILE = "fw.json"
PROGRESS_FILE = "fw_progress.json"
FACTORY = "/lib"  # where hcp provision --flash put the firmware
MAX_CHUNK = 16384
MAX_MANIFEST = 65536
CHUNK_TRIES = 3
MAX_TRIAL_BOOTS = 3
TIMEOUT_S = 10
# a 429 answer's Retry-After is waited out (the watchdog fed each second) up
# to this long in all for one update; beyond it the update fails, its
# progress kept, and the next attempt resumes
MAX_RETRY_WAIT_S = 120
MIN_HEALTH_S = 30  # the shortest health deadline taken; config.json's health_min_s lowers it

# /boot.py: runs before /main.py; standalone (it must not import the
# firmware it chooses). hcp provision --flash writes it.
BOOT_PY = """# hcp: choose the firmware slot (device/update.py keeps /data/fw.json)
import sys


def _hcp_slot(root=""):
    import json
    import os

    path = root + "/data/fw.json"
    try:
        with open(path) as f:
            st = json.loads(f.read())
    except Exception:
        return None
    if not isinstance(st, dict):
        return None
    if st.get("trial"):
        st["boots"] = st.get("boots", 0) + 1
        if st["boots"] > %d:
            st = {"active": st.get("previous"), "version": st.get("previous_version"),
                  "rolled_back": st.get("version"), "reason": "did not come up in %d boots"}
        with open(path + ".tmp", "w") as f:
            f.write(json.dumps(st))
            f.flush()
        os.rename(path + ".tmp", path)
    active = st.get("active")
    if active and active != "/lib":
        slot = root + active
        if not root and "lib" in sys.path:
            slot = active[1:]  # a port that lists lib relative to "/" (the virtual board)
        sys.path.insert(0, slot)
    return st


_hcp_slot()
""" % (MAX_TRIAL_BOOTS, MAX_TRIAL_BOOTS)


class UpdateError(Exception):
    pass


class RetryAfter(UpdateError):
    """The collector answered 429: try again after `seconds`."""

    def __init__(self, text, seconds):
        UpdateError.__init__(self, text)
        self.seconds = seconds


def _retry_after(head):
    """Seconds of a Retry-After header (whole seconds), else 1."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"retry-after":
            value = value.strip()
            if value.isdigit() and len(value) < 7:
                return max(1, int(value))
    return 1


def sha256_hex(data):
    h = hashlib.sha256()
    h.update(data)
    return hexlify(h.digest()).decode()


def _write_small(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
    try:
        os.rename(tmp, path)
    except OSError:  # FAT
        os.remove(path)
        os.rename(tmp, path)


def _read_json(path):
    try:
        with open(path) as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None


def _mkdirs(path):
    built = ""
    for part in path.split("/"):
        if not part:
            continue
        built += "/" + part
        try:
            os.mkdir(built)
        except OSError:
            pass  # there already


def http_get(url, limit, timeout_s=TIMEOUT_S, feed=None):
    """The body of a 200 answer to GET `url` (http:// only), at most `limit`
    bytes; UpdateError otherwise. `feed` (the watchdog's) is called before
    every read, so a slow answer never starves the watchdog for longer than
    one read's timeout."""
    import socket

    if not url.startswith("http://"):
        raise UpdateError("url: only http:// is supported")
    rest = url[7:]
    slash = rest.find("/")
    hostport, path = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
    host, _, port = hostport.partition(":")
    port = int(port) if port else 80
    addr = socket.getaddrinfo(host, port)[0][-1]
    s = socket.socket()
    try:
        s.settimeout(timeout_s)
        s.connect(addr)
        s.send(("GET " + path + " HTTP/1.0\r\nHost: " + hostport + "\r\n\r\n").encode())
        data = b""
        while len(data) <= limit + 4096:
            if feed:
                feed()
            part = s.recv(2048)
            if not part:
                break
            data += part
    finally:
        s.close()
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise UpdateError("http: no complete answer from " + hostport)
    status = head.split(b"\r\n", 1)[0].split(b" ")
    code = status[1].decode() if len(status) > 1 else "?"
    if code == "429":
        wait = _retry_after(head)
        text = "http: " + path[:60] + " answered 429, retry after " + str(wait) + " s"
        raise RetryAfter(text, wait)
    if code != "200":
        raise UpdateError("http: " + path[:60] + " answered " + code)
    if len(body) > limit:
        raise UpdateError("http: " + path[:60] + " is larger than " + str(limit) + " bytes")
    return body


def _check_args(args, min_health=MIN_HEALTH_S):
    version = args.get("version")
    if not isinstance(version, str) or not 1 <= len(version) <= 32:
        return "args.version: must be a string of 1..32"
    for ch in version:
        if not (ch.isalpha() or ch.isdigit() or ch in "._-"):
            return "args.version: only A-Z a-z 0-9 . _ -"
    url = args.get("url")
    if not isinstance(url, str) or not url.startswith("http://") or len(url) > 200:
        return "args.url: must be an http:// URL of at most 200"
    digest = args.get("manifest_sha256")
    if not isinstance(digest, str) or len(digest) != 64:
        return "args.manifest_sha256: must be 64 hex digits"
    health = args.get("health_s")
    if not isinstance(health, int) or isinstance(health, bool) or not min_health <= health <= 3600:
        return "args.health_s: must be an integer " + str(min_health) + "..3600"
    return None


def _check_manifest(manifest, version):
    if not isinstance(manifest, dict) or manifest.get("version") != version:
        raise UpdateError("manifest: not the manifest of " + version)
    chunk = manifest.get("chunk")
    if not isinstance(chunk, int) or not 256 <= chunk <= MAX_CHUNK:
        raise UpdateError("manifest.chunk: must be 256.." + str(MAX_CHUNK))
    files = manifest.get("files")
    if not isinstance(files, list) or not files:
        raise UpdateError("manifest.files: must list the files")
    for entry in files:
        path = entry.get("path") if isinstance(entry, dict) else None
        if not isinstance(path, str) or not path or ".." in path or path[0] == "/":
            raise UpdateError("manifest.files: a bad path")
        size = entry.get("size")
        chunks = entry.get("chunks")
        if not isinstance(size, int) or not isinstance(chunks, list):
            raise UpdateError("manifest.files: " + path + ": size and chunks")
        if len(chunks) != max(1, (size + chunk - 1) // chunk):
            raise UpdateError("manifest.files: " + path + ": chunk count does not fit the size")
    return chunk, files


class Updater:
    """Stages a firmware bundle into a slot; `root` is the board's "/" (a
    folder when tested on CPython), `data_dir` its data folder."""

    def __init__(self, data_dir, root="", fetch=http_get, feed=None, device_id=None):
        self.data_dir = data_dir
        self.root = root
        self.fetch = fetch
        self.feed = feed  # the watchdog's feed, between chunks
        # named in each request (`d`), so the collector bounds this device's rate
        self.query = "d=" + device_id if device_id else ""
        self.waited_s = 0  # Retry-After waited out during this update
        self.state_path = data_dir + "/" + STATE_FILE
        self.progress_path = data_dir + "/" + PROGRESS_FILE
        self.chunks_refused = 0

    def _get(self, url, limit):
        if self.query:
            url += ("&" if "?" in url else "?") + self.query
        while True:
            try:
                if self.fetch is http_get:
                    return http_get(url, limit, TIMEOUT_S, self.feed)
                return self.fetch(url, limit)
            except RetryAfter as exc:
                if self.waited_s + exc.seconds > MAX_RETRY_WAIT_S:
                    raise
                self.waited_s += exc.seconds
                for _ in range(exc.seconds):
                    if self.feed:
                        self.feed()
                    sleep_ms(1000)

    def min_health_s(self):
        """MIN_HEALTH_S, or the provisioned health_min_s (5..MIN_HEALTH_S): a
        hall whose boards come up fast, or a test, may shorten the deadline."""
        settings = _read_json(self.data_dir + "/config.json")
        value = settings.get("health_min_s") if isinstance(settings, dict) else None
        if isinstance(value, int) and not isinstance(value, bool) and 5 <= value < MIN_HEALTH_S:
            return value
        return MIN_HEALTH_S

    def state(self):
        st = _read_json(self.state_path)
        return st if isinstance(st, dict) else {}

    def stage(self, args, firmware):
        """Download, check and stage; switch on success. (ok, result) like a
        command: result says what was staged, or why nothing changed."""
        problem = _check_args(args, self.min_health_s())
        if problem:
            return False, problem
        if hashlib is None:
            return False, "unsupported: no hashlib on this port"
        version = args["version"]
        st = self.state()
        if st.get("trial"):
            return False, "busy: firmware " + str(st.get("version")) + " is on trial"
        if version == firmware:
            return False, "already running " + version
        try:
            total, count = self._download(args)
        except (UpdateError, OSError, ValueError) as exc:
            text = str(exc) or type(exc).__name__
            return False, "failed: " + text[:100]
        new = {
            "active": "/fw/" + version,
            "version": version,
            "previous": st.get("active") or FACTORY,
            "previous_version": firmware,
            "trial": True,
            "boots": 0,
            "health_s": args["health_s"],
        }
        _write_small(self.state_path, json.dumps(new))  # the switch
        try:
            os.remove(self.progress_path)
        except OSError:
            pass
        return True, {"staged": version, "files": count, "bytes": total}

    def _download(self, args):
        version = args["version"]
        base = args["url"]
        raw = self._get(base + "manifest.json", MAX_MANIFEST)
        if sha256_hex(raw) != args["manifest_sha256"]:
            raise UpdateError("manifest: sha256 is not the one the signed command gives")
        chunk, files = _check_manifest(json.loads(raw), version)
        slot = self.root + "/fw/" + version
        progress = _read_json(self.progress_path)
        if not isinstance(progress, dict) or progress.get("version") != version:
            progress = {"version": version, "file": 0, "n": 0}
        total = 0
        for index, entry in enumerate(files):
            path = slot + "/" + entry["path"]
            total += entry["size"]
            if index < progress["file"]:
                continue
            first = progress["n"] if index == progress["file"] else 0
            _mkdirs(path[: path.rfind("/")])
            if first == 0:
                with open(path, "wb"):
                    pass
            with open(path, "r+b") as f:
                f.seek(first * chunk)
                for n in range(first, len(entry["chunks"])):
                    f.write(self._chunk(base, entry, n, chunk))
                    f.flush()
                    _write_small(
                        self.progress_path,
                        json.dumps({"version": version, "file": index, "n": n + 1}),
                    )
                    if self.feed:
                        self.feed()
            progress = {"version": version, "file": index + 1, "n": 0}
        for entry in files:  # read back: what is on flash is what was vouched for
            if self.feed:
                self.feed()
            if self._file_hash(slot + "/" + entry["path"], chunk) != entry["sha256"]:
                try:
                    os.remove(self.progress_path)  # start again from scratch next time
                except OSError:
                    pass
                raise UpdateError(entry["path"] + ": the staged file does not match its sha256")
        return total, len(files)

    def _chunk(self, base, entry, n, chunk):
        expected = entry["chunks"][n]
        size = min(chunk, entry["size"] - n * chunk)
        url = base + "chunk?path=" + entry["path"] + "&n=" + str(n)
        for _ in range(CHUNK_TRIES):
            data = self._get(url, chunk)
            if len(data) == size and sha256_hex(data) == expected:
                return data
            self.chunks_refused += 1
        raise UpdateError(
            "chunk " + str(n) + " of " + entry["path"] + ": sha256 does not match the manifest"
        )

    @staticmethod
    def _file_hash(path, chunk):
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while True:
                data = f.read(chunk)
                if not data:
                    break
                h.update(data)
        return hexlify(h.digest()).decode()


def running_version(data_dir, default):
    """The version of the firmware running: the active slot's, else `default`."""
    st = _read_json(data_dir + "/" + STATE_FILE)
    if isinstance(st, dict) and st.get("version") and st.get("active"):
        return st["version"]
    return default


def boot_line(device):
    """The console's first line, which device/main.py's main() prints once the
    keypad is built: the mode, the firmware really running and why it runs in
    that mode or that firmware, e.g. "hcp: safe fw 0.1.0 (key 0 held at boot;
    0.2.0 rolled back: did not come up in 3 boots)". The running version (the
    active slot's, else the settings') becomes the settings' `firmware`, so the
    status without sync (safe mode) reports it as the sync's status does. A
    rollback is noted once in the crash file: the status's last_error says
    why the board runs the older firmware. This module is then dropped again
    unless a firmware on trial uses it (device/commands.py)."""
    import sys

    settings = device.settings
    path = settings["data_dir"] + "/" + STATE_FILE
    st = _read_json(path)
    if not isinstance(st, dict):
        st = {}
    settings["firmware"] = running_version(settings["data_dir"], settings["firmware"])
    reasons = []
    if device.safe_mode:
        reasons.append("key 0 held at boot")
    elif device.app is None and device.crash_log.last_error:
        reasons.append(device.crash_log.last_error)  # a refused filesystem, a failed start
    if st.get("trial"):
        reasons.append(
            str(st.get("version")) + " on trial, boot " + str(st.get("boots"))
            + " of " + str(MAX_TRIAL_BOOTS)
        )  # fmt: skip
    gone = st.get("rolled_back")
    if gone:
        text = str(gone) + " rolled back: " + str(st.get("reason"))
        reasons.append(text)
        if not st.get("noted"):
            st["noted"] = True
            try:
                device.crash_log.note("update: " + text, ticks_ms())
                _write_small(path, json.dumps(st))
            except OSError:
                pass  # a full flash: said on the console at least
    line = "hcp: " + device.mode + " fw " + settings["firmware"]
    if reasons:
        line += " (" + "; ".join(reasons) + ")"
    if device.commands is None or device.commands.trial is None:
        sys.modules.pop("device.update", None)  # its code is garbage then
        try:
            import device as package

            del package.update
        except (AttributeError, ImportError, KeyError, TypeError):
            pass
    return line


class Trial:
    """A firmware on trial confirms itself once healthy, or rolls back when
    `health_s` passes first. tick() returns None, "confirmed" or "rollback"
    (the caller then resets the board)."""

    def __init__(self, data_dir, now=ticks_ms):
        self.path = data_dir + "/" + STATE_FILE
        st = _read_json(self.path)
        self.state = st if isinstance(st, dict) and st.get("trial") else None
        self.started = now()

    @property
    def on_trial(self):
        return self.state is not None

    def tick(self, now_ms, sync):
        """`sync` (device/sync.py) says whether the firmware is healthy: connected,
        with the status of this connection sent (a bool stands in for tests)."""
        st = self.state
        if st is None:
            return None
        if sync is True or (
            sync is not False
            and sync.client.connected
            and sync._last_status is not None
            and not sync._status_dirty
        ):
            done = {
                "active": st["active"],
                "version": st["version"],
                "previous": st.get("previous"),
                "previous_version": st.get("previous_version"),
            }
            _write_small(self.path, json.dumps(done))
            self.state = None
            return "confirmed"
        if ticks_diff(now_ms, self.started) < st.get("health_s", 300) * 1000:
            return None
        back = {
            "active": st.get("previous"),
            "version": st.get("previous_version"),
            "rolled_back": st.get("version"),
            "reason": "not healthy within " + str(st.get("health_s")) + " s",
        }
        _write_small(self.path, json.dumps(back))
        self.state = None
        return "rollback"

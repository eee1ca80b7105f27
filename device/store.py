# The device's durable store: a power-loss-safe journal on flash.
#
# Files in the data folder (kept apart from the code, so re-flashing the app
# keeps them):
#   state    {"next_seq": n, "counts": {"1": .., "5": ..}, "known": true}
#            (written by rename; provisioning writes the first one)
#   journal  one line per change: 8 hex digits of CRC-32, a space, canonical
#            JSON of {"a": record} (added) or {"d": [seq, ...]} (acked), "\n".
# A record is appended to the journal before the state moves past its seq,
# and replay repairs a state write that a power cut interrupted, so a seq is
# never reused and a cumulative count never lost. A torn last line (power cut
# mid-write) fails its CRC and is cut off when the store opens.
# Only where each line is (seq, offset, length, 差评 flag) is kept in RAM, in
# arrays of about 11 bytes a record, so a long backlog costs little heap.
#
# A store that opens without a state file (a wiped or swapped board, a data
# folder lost) cannot know which seqs it already used: those acked and
# compacted away left no trace. It is not `known` and refuses to add records
# (SeqUnknown) until learn() moves it past the highest seq the collector
# holds for the device (docs/protocol.md §3.6). A state file from before the
# "known" flag was written by this firmware, so it counts as known.
#
# A full flash (ENOSPC, errno 28), a journal that would pass max_bytes, or
# max_pending records held (their index lives in RAM) makes add() raise
# StorageFull: the journal stays consistent (a torn partial line
# is cut off at once), the seq counter does not move, and `full` stays True
# until an ack frees space (remove() then rewrites the journal).
import binascii
import json
import os
from array import array

from protocols.canonical import dumps
from protocols.levels import is_bad

_STATE = "state"
_JOURNAL = "journal"
_COMPACT_BYTES = 65536  # rewrite the journal when it is this big and mostly acked
ENOSPC = 28  # errno "no space left on device" (Linux, MicroPython's littlefs and FAT)
_RECORD_START = 14  # a journal line: 8 hex digits, " ", '{"a":', the record, "}", "\n"


class StorageFull(OSError):
    """The store cannot keep another record until acknowledged ones are removed."""


class SeqUnknown(OSError):
    """The store does not know which seqs were used before it lost its state."""


def _errno(exc):
    return exc.args[0] if exc.args and isinstance(exc.args[0], int) else None


def _remove_quietly(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _sync(f):
    f.flush()
    try:
        os.fsync(f.fileno())  # CPython
    except (AttributeError, OSError):
        sync = getattr(os, "sync", None)  # some MicroPython ports
        if sync:
            sync()


def _replace(src, dst):
    try:
        os.rename(src, dst)
    except OSError:  # FAT refuses to rename onto an existing file
        os.remove(dst)
        os.rename(src, dst)


def _line(obj):
    body = dumps(obj)
    crc = binascii.crc32(body) & 0xFFFFFFFF
    return ("%08x " % crc).encode() + body + b"\n"


def _intact_a(line):
    """True for an "a" line that passes its CRC; checked in place, no JSON parsed."""
    if len(line) < 17 or line[8:14] != b' {"a":' or line[-2:] != b"}\n":
        return False
    try:
        crc = int(line[:8], 16)
    except ValueError:
        return False
    return crc == binascii.crc32(memoryview(line)[9:-1]) & 0xFFFFFFFF


def _parse(line):
    """Return the object of a journal line, or None if the line is damaged."""
    if len(line) < 11 or line[8:9] != b" " or line[-1:] != b"\n":
        return None
    body = line[9:-1]
    try:
        if int(line[:8], 16) != binascii.crc32(body) & 0xFFFFFFFF:
            return None
        return json.loads(body.decode())
    except ValueError:
        return None


_GONE = 0xFFFFFFFF  # an index slot whose record was acknowledged (or found damaged)
_MAX_LINE = 0xFFFF  # a journal line's length fits the index's 16 bits


class _Index:
    """Where each pending record's line is, in 11 bytes a record: parallel
    arrays sorted by seq (seq, offset, length) and a byte of flags (差评).
    Records come in seq order, so adding appends; an acknowledged record
    leaves a slot marked _GONE until the journal is rewritten. Dicts cost
    about 24 bytes a record on a 32-bit port and grow their tables in one
    piece; these arrays grow a little at a time."""

    def __init__(self):
        self.seqs = array("I")
        self.offsets = array("I")
        self.lengths = array("H")
        self.bad = bytearray()
        self.count = 0  # slots not _GONE
        self.live = 0  # bytes of the lines of pending records

    def add(self, seq, offset, length, bad):
        seqs = self.seqs
        if seqs and seq <= seqs[-1]:
            found = self.find(seq)
            if found >= 0:  # a line seen twice (a replay): the later one counts
                self.drop(found)
            self._insert(seq, offset, length, bad)
        else:
            seqs.append(seq)
            self.offsets.append(offset)
            self.lengths.append(length)
            self.bad.append(1 if bad else 0)
        self.count += 1
        self.live += length

    def _insert(self, seq, offset, length, bad):
        # out of order (never in a journal this firmware wrote): rebuild the arrays
        items = [(s, o, n, b) for s, o, n, b in self.items(True)]
        items.append((seq, offset, length, 1 if bad else 0))
        items.sort()
        self.seqs, self.offsets = array("I"), array("I")
        self.lengths, self.bad = array("H"), bytearray()
        for s, o, n, b in items:
            self.seqs.append(s)
            self.offsets.append(o)
            self.lengths.append(n)
            self.bad.append(b)
        self.count -= 1  # add() counts it
        self.live -= length

    def find(self, seq):
        """The slot of a pending seq, or -1."""
        seqs = self.seqs
        low, high = 0, len(seqs)
        while low < high:
            middle = (low + high) // 2
            if seqs[middle] < seq:
                low = middle + 1
            else:
                high = middle
        if low < len(seqs) and seqs[low] == seq and self.offsets[low] != _GONE:
            return low
        return -1

    def drop(self, slot):
        self.offsets[slot] = _GONE
        self.count -= 1
        self.live -= self.lengths[slot]

    def items(self, with_gone=False):
        """(seq, offset, length, bad) of each pending record, in seq order."""
        offsets = self.offsets
        for i in range(len(self.seqs)):
            if with_gone or offsets[i] != _GONE:
                yield self.seqs[i], offsets[i], self.lengths[i], self.bad[i]

    def chosen(self, limit):
        """Up to `limit` pending seqs: 差评 first, then the oldest, no sorting."""
        out = []
        for want_bad in (1, 0):
            for i in range(len(self.seqs)):
                if len(out) >= limit:
                    return out
                if self.offsets[i] != _GONE and (self.bad[i] == 1) == (want_bad == 1):
                    out.append(self.seqs[i])
        return out


def _read_state(path):
    """The state kept at `path`, or None when there is none or it does not
    parse as one (never an exception: a keypad must boot whatever is there)."""
    try:
        with open(path) as f:
            state = json.loads(f.read())
        if isinstance(state["next_seq"], int) and isinstance(state["counts"], dict):
            return state
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def seed(folder, next_seq=1, counts=None):
    """Write the first state of a provisioned store (known, from next_seq,
    with `counts` per level or zeros), unless the folder already has one: what
    provisioning does for a new board whose seqs start fresh, or for a wiped
    one that must start after seqs lost with it. Returns True when it wrote."""
    try:
        os.mkdir(folder)
    except OSError:
        pass
    path = folder + "/" + _STATE
    if _exists(path) or _read_state(path + ".tmp") is not None:
        return False  # (a .tmp that does not parse is a first write cut short)
    counts = counts or {"1": 0, "2": 0, "3": 0, "4": 0, "5": 0}
    with open(path + ".tmp", "w") as f:
        f.write(dumps({"counts": counts, "known": True, "next_seq": next_seq}).decode())
        _sync(f)
    _replace(path + ".tmp", path)
    return True


class Store:
    def __init__(self, folder, max_bytes=None, max_pending=None):
        self.folder = folder
        self.max_bytes = max_bytes  # bound on the journal's size; None: the flash's own
        # bound on the records held (their index is in RAM); None: no bound
        self.max_pending = max_pending
        try:
            os.mkdir(folder)
        except OSError:
            pass  # already there
        self._state_path = folder + "/" + _STATE
        self._journal_path = folder + "/" + _JOURNAL
        self.next_seq = 1
        self.counts = {"1": 0, "2": 0, "3": 0, "4": 0, "5": 0}
        self._index = _Index()  # where each pending record's line is
        self._size = 0
        self._full = False
        self.known = True  # whether next_seq is proved unused (see learn())
        self._open()

    # --- opening and replay ---
    def _open(self):
        path = self._state_path
        if not _exists(path) and _exists(path + ".tmp"):
            path = path + ".tmp"  # power cut between removing state and renaming
        state = _read_state(path)
        if state is not None:
            self.next_seq = state["next_seq"]
            self.counts.update(state["counts"])
            self.known = state.get("known", True) is True
        else:
            # none, or one cut short (a power cut in the very first write leaves
            # an empty state.tmp): the seqs are unknown until learned (§3.6),
            # the journal's records are replayed below, and the state rewritten
            self.known = False
        damaged = False
        if _exists(self._journal_path):
            damaged = self._replay()
        if damaged:
            self._compact()
        self._save_state()

    def _replay(self):
        offset = 0
        damaged = False
        with open(self._journal_path, "rb") as f:
            while True:
                line = f.readline()
                if not line:
                    break
                obj = _parse(line)
                if obj is None:
                    # A torn tail (power cut mid-write) or a damaged line: skip it,
                    # keep reading, and rewrite the journal without it afterwards.
                    damaged = True
                elif "a" in obj:
                    rec = obj["a"]
                    seq = rec["seq"]
                    self._index.add(seq, offset, len(line), is_bad(rec["stars"]))
                    if seq >= self.next_seq:  # the state write after it was lost
                        self.next_seq = seq + 1
                        key = str(rec["stars"])
                        self.counts[key] = self.counts[key] + 1
                else:
                    for seq in obj["d"]:
                        slot = self._index.find(seq)
                        if slot >= 0:
                            self._index.drop(slot)
                offset += len(line)
        self._size = offset
        return damaged

    def _save_state(self):
        # by a temporary file and a rename: a power cut leaves the old or the new state
        tmp = self._state_path + ".tmp"
        try:
            with open(tmp, "w") as f:
                state = {"next_seq": self.next_seq, "counts": self.counts, "known": self.known}
                f.write(dumps(state).decode())
                _sync(f)
        except OSError:
            _remove_quietly(tmp)
            raise
        _replace(tmp, self._state_path)

    # --- writing ---
    @property
    def full(self):
        """True after an add() was refused for want of space, until an ack frees some."""
        return self._full

    def _append_bytes(self, data):
        if self._full or (self.max_bytes is not None and self._size + len(data) > self.max_bytes):
            self._full = True
            raise StorageFull(ENOSPC, "store full")
        try:
            with open(self._journal_path, "ab") as f:
                f.write(data)
                _sync(f)
        except OSError as exc:
            self._cut_torn_tail()
            if _errno(exc) == ENOSPC:
                self._full = True
                raise StorageFull(ENOSPC, "no space left on the flash") from None
            raise
        offset = self._size
        self._size += len(data)
        return offset

    def _cut_torn_tail(self):
        """After a failed append: remove what part of the line reached the flash."""
        try:
            size = os.stat(self._journal_path)[6]
        except OSError:
            return
        if size <= self._size:
            return
        try:
            with open(self._journal_path, "r+b") as f:
                f.truncate(self._size)  # CPython; MicroPython's files cannot truncate
            return
        except (AttributeError, OSError):
            pass
        try:
            self._compact()  # a fresh copy of the pending lines, without the torn one
        except OSError:
            # no room even for that: the torn line stays (replay cuts it off at
            # the next start) and, as the store is full, nothing is appended
            # after it before remove() rewrites the journal
            self._full = True

    def add(self, record):
        """Keep a record (its seq must be next_seq) durably, then move the state on.

        Raises StorageFull (nothing kept, seq not moved) when there is no room."""
        if not self.known:
            raise SeqUnknown(0, "seq unknown: waiting for the collector")
        seq = record["seq"]
        if seq != self.next_seq:
            raise ValueError("seq " + str(seq) + " is not the next seq " + str(self.next_seq))
        if self.max_pending is not None and self._index.count >= self.max_pending:
            self._full = True  # as for a full flash: visible, and freed by an ack
            raise StorageFull(ENOSPC, "store full: " + str(self.max_pending) + " records held")
        data = _line({"a": record})
        if len(data) > _MAX_LINE:
            raise ValueError("record " + str(seq) + " is longer than a journal line may be")
        self._index.add(seq, self._append_bytes(data), len(data), is_bad(record["stars"]))
        self.next_seq = seq + 1
        key = str(record["stars"])
        self.counts[key] = self.counts[key] + 1
        try:
            self._save_state()
        except OSError as exc:
            # the record is durable in the journal, whose replay repairs the
            # state; only the next add must wait for space
            if _errno(exc) != ENOSPC:
                raise
            self._full = True

    def learn(self, highest, counts=None):
        """The collector's word on the highest seq it holds for this device
        (a signed down/seq): next_seq moves past it, never back. A store that
        was not known takes the collector's per-level counts too (its own were
        lost with its state) and is known from now on. Returns True when
        something changed."""
        changed = False
        if highest >= self.next_seq:
            self.next_seq = highest + 1
            changed = True
        if not self.known:
            if counts:
                for key in self.counts:
                    self.counts[key] = max(self.counts[key], counts.get(key, 0))
            self.known = True
            changed = True
        if changed:
            self._save_state()
        return changed

    def remove(self, seqs):
        """Forget records the collector has acknowledged; unknown seqs are ignored."""
        index = self._index
        known = [s for s in seqs if index.find(s) >= 0]
        if not known:
            return 0
        full = self._full
        if not full:
            try:
                self._append_bytes(_line({"d": known}))
            except StorageFull:
                full = True  # no room for the ack line: the rewrite below records it
        for seq in known:
            slot = index.find(seq)
            if slot >= 0:  # a seq named twice in one ack counts once
                index.drop(slot)
        # Rewrite when nothing is pending, or when the journal is big and more
        # than half of it is dead: each byte is rewritten a bounded number of
        # times, so a long backlog drains without wearing the flash. A full
        # store is rewritten at once: that frees the space of what was acked.
        if full or not index.count or (self._size > _COMPACT_BYTES and index.live * 2 < self._size):
            self._compact()
            self._full = False
        return len(known)

    def _compact(self):
        """Copy the lines of pending records, oldest first, into a fresh journal.

        Lines are copied as bytes, one at a time, so compaction needs no more
        RAM than a single record."""
        tmp = self._journal_path + ".tmp"
        fresh = _Index()
        size = 0
        try:
            with open(tmp, "wb") as out:
                if self._index.count:
                    with open(self._journal_path, "rb") as src:
                        for seq, offset, _length, bad in self._index.items():
                            src.seek(offset)
                            line = src.readline()
                            out.write(line)
                            fresh.add(seq, size, len(line), bad)
                            size += len(line)
                _sync(out)
        except OSError:
            _remove_quietly(tmp)
            raise
        _replace(tmp, self._journal_path)
        self._index = fresh
        self._size = size

    # --- reading ---
    def __len__(self):
        return self._index.count

    @property
    def last_seq(self):
        return self.next_seq - 1

    def _drop_damaged(self, seq):
        # a line that no longer passes its CRC (flash bit rot) is lost: replay
        # drops it at the next start too; forget it now so it does not block sync
        slot = self._index.find(seq)
        if slot >= 0:
            self._index.drop(slot)

    def batch_plan(self, limit):
        """What the next batch holds, without the records themselves in RAM:
        up to `limit` (seq, length of its canonical record bytes) pairs, 差评
        first, then oldest first. Each line is read and checked on the way."""
        plan = []
        chosen = self._index.chosen(limit)
        if not chosen:
            return plan
        index = self._index
        with open(self._journal_path, "rb") as f:
            for seq in chosen:
                f.seek(index.offsets[index.find(seq)])
                line = f.readline()
                if not _intact_a(line):
                    self._drop_damaged(seq)
                else:
                    plan.append((seq, len(line) - _RECORD_START - 2))
        return plan

    def record_bytes(self, plan):
        """Yield the canonical bytes of each record of a batch_plan(), reading
        one journal line at a time (the bytes are the journal's own, so they are
        exactly what protocols.canonical.dumps gives for the record)."""
        with open(self._journal_path, "rb") as f:
            for seq, length in plan:
                slot = self._index.find(seq)
                line = None
                if slot >= 0:
                    f.seek(self._index.offsets[slot])
                    line = f.readline()
                if line is None or len(line) - _RECORD_START - 2 != length or not _intact_a(line):
                    raise OSError("record " + str(seq) + " changed while its batch was sent")
                yield memoryview(line)[_RECORD_START:-2]

    def pending(self, limit):
        """Up to `limit` records not yet acked: 差评 first, then oldest first."""
        chosen = self._index.chosen(limit)
        out = []
        if not chosen:
            return out
        index = self._index
        with open(self._journal_path, "rb") as f:
            for seq in chosen:
                f.seek(index.offsets[index.find(seq)])
                out.append(_parse(f.readline())["a"])
        return out

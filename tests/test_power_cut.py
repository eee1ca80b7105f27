"""A power cut at every write boundary of the keypad's files.

The store's journal and state (device/store.py) and the small files of
device/main.py (the desired config that holds the keypad's assignment) are
written through a file layer that cuts the power at its N-th boundary: a
write, a flush, a rename or a remove. For every N the cut comes in three
ways: the bytes written since the file's last flush are lost, they all
reached the flash, or only half of the write in progress did (a torn write).
Then the keypad starts again from what is on disk, and:

- every record whose `add` returned is there, unless an ack that returned
  removed it; nothing is there that was never added;
- the next seq is above every seq that any record on disk or any returned
  `add` used, so a seq never repeats, and the per-level counts add up to it;
- the store still knows its seqs (it never has to ask the collector);
- the assignment (the desired config) is the last one written or the one
  being written, never lost once one was written.
"""

import json
import os
import shutil

import pytest

import device.main as device_main
import device.store as device_store
from device.store import Store, seed
from tests.harness.records import signed

LOST, KEPT, TORN = "lost", "kept", "torn"


class PowerCut(Exception):
    pass


class Power:
    """Counts write boundaries and cuts the power at the chosen one."""

    def __init__(self, cut_at=None, how=LOST):
        self.cut_at = cut_at
        self.how = how
        self.count = 0
        self.down = False

    def boundary(self):
        if self.down:
            raise PowerCut("the power is already off")
        self.count += 1
        if self.count == self.cut_at:
            self.down = True
            return True
        return False


class CutFile:
    """A file opened for writing, on a flash whose power may go."""

    def __init__(self, power, path, mode):
        self.power = power
        self.path = path
        self.file = open(path, mode.replace("t", "") if "b" in mode else mode)  # noqa: SIM115
        self.flushed = self.file.tell() if "a" in mode else 0

    def write(self, data):
        if self.power.boundary():
            if self.power.how == TORN:
                self.file.write(data[: len(data) // 2])
                self.file.flush()
            elif self.power.how == LOST:
                self.file.flush()
                self.file.truncate(self.flushed)
            else:
                self.file.write(data)
                self.file.flush()
            self.file.close()
            raise PowerCut("cut in a write to " + self.path)
        return self.file.write(data)

    def flush(self):
        if self.power.boundary():
            if self.power.how == LOST:
                self.file.flush()
                self.file.truncate(self.flushed)
            self.file.close()
            raise PowerCut("cut at a flush of " + self.path)
        self.file.flush()
        self.flushed = self.file.tell()

    def fileno(self):
        return self.file.fileno()

    def truncate(self, size):
        self.file.flush()
        self.file.truncate(size)
        self.flushed = size

    def seek(self, *args):
        return self.file.seek(*args)

    def tell(self):
        return self.file.tell()

    def close(self):
        if self.power.down:
            return
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            # closing flushes what the buffer holds: one more boundary
            self.flush()
        self.close()


class CutOS:
    """The os module as device code sees it, with rename and remove on the flash."""

    def __init__(self, power):
        self.power = power

    def __getattr__(self, name):
        return getattr(os, name)

    def rename(self, src, dst):
        if self.power.boundary():
            raise PowerCut("cut before a rename to " + dst)
        os.rename(src, dst)

    def remove(self, path):
        if self.power.boundary():
            raise PowerCut("cut before removing " + path)
        os.remove(path)


def powered(monkeypatch, power):
    def cut_open(path, mode="r", *args, **kwargs):
        if power.down:
            raise PowerCut("the power is off")
        if any(flag in mode for flag in "wa+"):
            return CutFile(power, path, mode)
        return open(path, mode, *args, **kwargs)  # noqa: SIM115

    for module in (device_store, device_main):
        monkeypatch.setattr(module, "open", cut_open, raising=False)
        monkeypatch.setattr(module, "os", CutOS(power))


# The keypad's life: ratings (差评 among them), acks that leave some pending
# and one that empties the store (a compaction), and new assignments.
PLAN = [
    ("config", {"version": 1, "window_id": "A01", "staff_id": "1001"}),
    ("add", 5),
    ("add", 1),
    ("add", 4),
    ("ack", [1, 3]),
    ("add", 2),
    ("config", {"version": 2, "window_id": "A02", "staff_id": "1002"}),
    ("add", 5),
    ("ack", [2, 4, 5]),
    ("add", 3),
    ("ack", [6]),
    ("add", 1),
]


class Life:
    """What the keypad was told had happened before the cut."""

    def __init__(self):
        self.added = {}  # seq -> record, add() returned
        self.acked = set()  # remove() returned
        self.config = None  # the last config write_small finished
        self.doing = None  # the step the cut came in


def live(folder, life):
    desired = folder + "/desired.json"
    store = Store(folder)
    for step, arg in PLAN:
        life.doing = (step, arg)
        if step == "add":
            record = signed(store.next_seq, arg)
            store.add(record)
            life.added[record["seq"]] = record
        elif step == "ack":
            store.remove(arg)
            life.acked.update(arg)
        else:
            device_main.write_small(desired, json.dumps(arg))
            life.config = arg
    life.doing = None


def boundaries(tmp_path, monkeypatch):
    folder = str(tmp_path / "count")
    seed(folder)
    power = Power()
    with monkeypatch.context() as patch:
        powered(patch, power)
        live(folder, Life())
    return power.count


def test_the_plan_crosses_many_write_boundaries(tmp_path, monkeypatch):
    assert boundaries(tmp_path, monkeypatch) > 40


def check_after(folder, life):
    store = Store(folder)
    assert store.known, "a power cut never makes a store forget its seqs"
    pending = {r["seq"]: r for r in store.pending(100)}
    doing = life.doing or (None, None)
    for seq, record in life.added.items():
        if seq not in life.acked and not (doing[0] == "ack" and seq in doing[1]):
            assert pending.get(seq) == record, f"record {seq} was lost"
    for seq, record in pending.items():
        if seq in life.added:
            assert record == life.added[seq]
        else:  # only the record whose add the cut interrupted
            assert doing[0] == "add" and seq == max(life.added, default=0) + 1
            assert record["stars"] == doing[1]
    used = set(life.added) | set(pending)
    assert store.next_seq > max(used, default=0), "a seq would be used twice"
    assert sum(store.counts.values()) == store.next_seq - 1
    desired = device_main.read_json(folder + "/desired.json")
    if doing[0] == "config":
        assert desired in (life.config, doing[1])
    else:
        assert desired == life.config, "the assignment was lost"
    # and the keypad goes on rating after it
    store.add(signed(store.next_seq, 5))
    assert Store(folder).next_seq == store.next_seq


@pytest.mark.parametrize("how", [LOST, KEPT, TORN])
def test_a_power_cut_at_every_boundary_loses_nothing_and_repeats_no_seq(tmp_path, monkeypatch, how):
    total = boundaries(tmp_path, monkeypatch)
    start = tmp_path / "start"
    seed(str(start))
    for cut_at in range(1, total + 1):
        folder = str(tmp_path / f"cut-{cut_at}")
        shutil.copytree(start, folder)
        life = Life()
        with monkeypatch.context() as patch:
            powered(patch, Power(cut_at, how))
            with pytest.raises(PowerCut):
                live(folder, life)
        try:
            check_after(folder, life)
        except AssertionError as exc:
            raise AssertionError(f"power cut {how} at boundary {cut_at} of {total}: {exc}") from exc

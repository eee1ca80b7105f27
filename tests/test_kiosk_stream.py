"""Contacts in a streamed batch (docs/protocol.md §3.1).

device.sync.batch_stream sends the signed contact entries a store offers for
a plan (the kiosk's store does; the keypad's has none) between "batch" and
"device_id", as canonical JSON orders the keys. The streamed bytes must be
exactly messages.encode(messages.batch(..., contacts)); the expected bytes
here come from that encoder, the keypad's bytes stay as they were."""

from device.sync import batch_stream
from protocols import messages
from protocols.canonical import dumps
from tests.harness import records


class ListStore:
    """The part of a store batch_stream uses, over records in a list; no
    contacts attribute, like the keypad's journal."""

    def __init__(self):
        self.records = {}

    def add(self, record):
        self.records[record["seq"]] = record

    def batch_plan(self, limit):
        return [(seq, len(dumps(rec))) for seq, rec in sorted(self.records.items())][:limit]

    def record_bytes(self, plan):
        for seq, _size in plan:
            yield dumps(self.records[seq])

    def pending(self, limit):
        return [rec for _seq, rec in sorted(self.records.items())][:limit]


class StoreWithContacts(ListStore):
    """... plus signed contact entries for a plan, as the kiosk's store offers them."""

    def __init__(self, phones):
        super().__init__()
        self.phones = phones  # seq -> phone number

    def contacts(self, plan):
        return [
            messages.contact(f"kp-01:{seq}", self.phones[seq], records.KEY)
            for seq, _size in plan
            if seq in self.phones
        ]


def streamed(store, number, limit):
    plan = store.batch_plan(limit)
    length, chunks = batch_stream(store, "kp-01", number, plan)
    data = b"".join(bytes(c) for c in chunks)
    assert len(data) == length
    return data


def fill(store, levels):
    for seq, stars in enumerate(levels, start=1):
        store.add(records.signed(seq, stars, comment="好" * seq))


def test_contacts_stream_between_batch_and_device_id():
    store = StoreWithContacts({2: "13800000000", 3: "+8613900000001"})
    fill(store, [5, 1, 4])
    data = streamed(store, 9, 50)
    plan = store.batch_plan(50)
    expected = messages.encode(messages.batch("kp-01", 9, store.pending(50), store.contacts(plan)))
    assert data == expected
    assert data.startswith(b'{"batch":9,"contacts":[{"consent":true,"contact":"13800000000"')
    decoded = messages.decode(data)
    assert [c["id"] for c in decoded["contacts"]] == ["kp-01:2", "kp-01:3"]


def test_only_the_contacts_of_the_plan_travel():
    store = StoreWithContacts({3: "13800000000"})
    fill(store, [5, 4, 3])
    data = streamed(store, 1, 2)  # seqs 1 and 2: no contact among them
    assert b"contacts" not in data
    assert data == messages.encode(messages.batch("kp-01", 1, store.pending(2)))


def test_the_keypad_store_streams_as_before():
    store = ListStore()
    fill(store, [5, 2])
    data = streamed(store, 3, 50)
    assert data.startswith(b'{"batch":3,"device_id":"kp-01","records":[')
    assert data == messages.encode(messages.batch("kp-01", 3, store.pending(50)))


def test_the_kiosk_store_streams_its_contacts(tmp_path):
    from kiosk.store import KioskStore

    store = KioskStore(tmp_path)
    phones = {1: None, 2: "13800000000", 3: "02712345678"}
    for seq in (1, 2, 3):
        store.add(
            lambda s: records.signed(s, 5 if s != 2 else 1, device_id="ks-01", channel="kiosk"),
            phones[seq],
            records.KEY,
        )
    plan = store.batch_plan(50)
    assert [seq for seq, _ in plan] == [2, 1, 3]  # 差评 first, then oldest first
    length, chunks = batch_stream(store, "ks-01", 4, plan)
    data = b"".join(bytes(c) for c in chunks)
    assert len(data) == length
    expected = messages.batch("ks-01", 4, store.pending(50), store.contacts(plan))
    assert data == messages.encode(expected)
    assert [c["id"] for c in messages.decode(data)["contacts"]] == ["ks-01:2", "ks-01:3"]
    store.remove([2])
    assert [c["id"] for c in store.contacts(store.batch_plan(50))] == ["ks-01:3"]
    assert store.last_seq == 3 and len(store) == 2
    assert store.counts == {"1": 1, "2": 0, "3": 0, "4": 0, "5": 2}

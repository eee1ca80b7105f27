"""The kiosk's SQLite store: durable settings, one transaction a record, seqs
never reused, records checked before they are kept."""

import pytest

from kiosk.store import KioskStore, StoreError
from protocols.record import RecordError
from tests.harness import records


def kiosk_record(seq, stars=5, **extra):
    return records.signed(seq, stars, device_id="ks-01", channel="kiosk", **extra)


def test_the_database_is_in_wal_mode_and_syncs_fully(tmp_path):
    store = KioskStore(tmp_path)
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_seqs_are_never_reused_after_acks_or_a_restart(tmp_path):
    store = KioskStore(tmp_path)
    for _ in range(3):
        store.add(kiosk_record)
    store.remove([1, 2, 3])
    assert len(store) == 0 and store.last_ack_at
    store.close()
    again = KioskStore(tmp_path)
    assert again.add(kiosk_record)["seq"] == 4


def test_a_record_that_breaks_the_contract_is_not_kept_and_uses_no_seq(tmp_path):
    store = KioskStore(tmp_path)
    with pytest.raises(RecordError) as err:
        store.add(lambda seq: kiosk_record(seq, stars=6))
    assert str(err.value) == "stars: must be an integer 1..5, got 6"
    with pytest.raises(StoreError) as err:
        store.add(lambda seq: kiosk_record(seq), "12", records.KEY)
    assert str(err.value) == "contact.contact: must be a phone number of 5..20 digits"
    assert store.last_seq == 0 and len(store) == 0
    assert store.counts == {"1": 0, "2": 0, "3": 0, "4": 0, "5": 0}
    assert store.add(kiosk_record)["seq"] == 1


def test_a_case_is_rated_once(tmp_path):
    store = KioskStore(tmp_path)
    store.add_case({"case_no": "QZ1", "service_no": "1"})
    assert store.case("QZ1") == ({"case_no": "QZ1", "service_no": "1"}, None)
    store.add(lambda seq: kiosk_record(seq, case_no="QZ1"))
    assert store.case("QZ1")[1] == "ks-01:1"
    store.add_case({"case_no": "QZ1", "service_no": "9"})  # handed over again: kept as rated
    assert store.case("QZ1") == ({"case_no": "QZ1", "service_no": "1"}, "ks-01:1")
    assert store.case("QZ2") is None


def test_settings_survive_a_restart(tmp_path):
    store = KioskStore(tmp_path)
    store.put_setting("config", {"version": 3, "texts": {"welcome": "欢迎"}})
    store.close()
    assert KioskStore(tmp_path).get_setting("config")["texts"]["welcome"] == "欢迎"

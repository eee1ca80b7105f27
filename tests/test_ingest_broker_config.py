"""The Mosquitto config hcp writes for its tests, bench and demo (hcp/broker.py)."""

from hcp.broker import MosquittoBroker


def test_the_broker_sends_each_packet_at_once_and_lets_a_group_wait(tmp_path):
    lines = MosquittoBroker(port=1883, workdir=tmp_path)._config_text().splitlines()
    # without it an ack to a keypad waited ~40 ms behind the keypad's delayed TCP ack
    assert "set_tcp_nodelay true" in lines
    assert "max_inflight_messages 1000" in lines and "max_queued_messages 0" in lines

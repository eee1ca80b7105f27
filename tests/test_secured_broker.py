"""The tests' broker with access control on (hcp.broker.SecuredMosquitto):
started from broker_auth's own files, nothing anonymous, each service its
own login, devices let in and out by a reload that has taken effect when
`allow` returns."""

import secrets

import pytest

from hcp.broker import AmqttBroker, SecuredMosquitto
from protocols import topics
from sync_server import broker_auth
from tests.harness.broker import (
    NOT_AUTHORIZED,
    assert_access_control,
    device_login,
    publish_answer,
    refusal,
    require_kind,
)


@pytest.fixture
def secured(tmp_path):
    require_kind("mosquitto")
    broker = SecuredMosquitto(workdir=tmp_path / "broker", collectors=2).start()
    yield broker
    broker.close()


def test_it_runs_on_broker_auths_files_and_lets_in_only_its_logins(secured):
    auth = secured.workdir / "auth"
    assert (auth / "acl").read_text() == broker_auth.acl_text(collectors=2, fleet=True)
    assert f"include_dir {auth.resolve()}" in secured.config_path.read_text()
    assert refusal(secured) == NOT_AUTHORIZED
    assert refusal(secured, secured.collector_login(1)) == 0
    assert refusal(secured, secured.collector_login(2)) == 0
    assert refusal(secured, secured.fleet_login()) == 0
    assert refusal(secured, ("hcp-collector", "not-the-password")) == NOT_AUTHORIZED
    with pytest.raises(ValueError, match=r"collector 3: this broker has logins for 1..2"):
        secured.collector_login(3)
    user, password = secured.collector_login()
    assert secured.url_with((user, password)) == (
        f"mqtt://hcp-collector:{password}@127.0.0.1:{secured.port}"
    )


def test_allow_lets_a_device_in_and_out_by_a_reload_without_a_restart(secured):
    key_hex = secrets.token_hex(32)
    login = device_login("kp-01", key_hex)
    pid = secured._proc.pid
    assert refusal(secured, login) == NOT_AUTHORIZED
    secured.allow([("kp-01", key_hex)])
    # no wait in between: the reload has been read when allow returns
    assert refusal(secured, login) == 0
    assert publish_answer(secured, login, topics.topic("kp-02", topics.UP_EV)) == NOT_AUTHORIZED
    assert_access_control(secured, ("kp-01", key_hex))
    secured.allow([])
    assert refusal(secured, login) == NOT_AUTHORIZED
    assert secured._proc.pid == pid, "reloaded, not restarted"
    assert secured.log_tail().count("Reloading config.") == 2
    # the files stay across a restart
    secured.allow([("kp-01", key_hex)])
    secured.restart()
    assert refusal(secured, login) == 0


def test_an_open_broker_needs_no_login_and_says_so(tmp_path):
    broker = AmqttBroker(workdir=tmp_path / "amqtt").start()
    try:
        assert broker.access_control is False
        assert broker.collector_login() == (None, None)
        assert broker.url_with(broker.collector_login()) == broker.url
        broker.allow([("kp-01", "00" * 32)])  # nothing to do
        assert refusal(broker) == 0
        assert_access_control(broker, ("kp-01", "00" * 32))
    finally:
        broker.close()

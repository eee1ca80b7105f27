"""The kiosk's additions to the contract: optional config fields (§3.4) and
the evaluate command (§3.5), each breach refused with the exact reason."""

import pytest

from kiosk import demo_content
from protocols import messages


def config(**fields):
    return messages.config(2, **fields)


def test_the_demo_kiosk_config_passes():
    msg = demo_content.config(1, "https://hcp.example.cn/followup")
    assert messages.decode(messages.encode(msg)) == msg


def test_a_keypad_config_without_kiosk_fields_still_passes():
    msg = config(window_id="A01", content_version="1", tags=[[2, "201", "等候时间长"]])
    assert messages.decode(messages.encode(msg))["window_id"] == "A01"


UNITS = [["u1", "区行政审批服务局"]]


@pytest.mark.parametrize(
    "fields,error",
    [
        ({"units": [["u1"]]}, "config.units: must be a list of [id, name]"),
        ({"units": "u1"}, "config.units: must be a list of [id, name]"),
        (
            {"units": [["u1", ""]]},
            "config.units: must be a list of [id, name] (name of row 0)",
        ),
        ({"units": [["u1", "a"], ["u1", "b"]]}, "config.units: 'u1' listed twice"),
        (
            {"units": UNITS, "windows": [["A01", "u2", "A01窗口"]]},
            "config.windows: unit 'u2' is not in config.units",
        ),
        (
            {"units": UNITS, "staff": [["1001", "u1", "张敏"]]},
            "config.staff: must be a list of [id, unit, name, number]",
        ),
        (
            {"units": UNITS, "items": [["D1", "u1", "身份证办理", "SFZ"]]},
            "config.items: must be a list of [code, unit, name, initials] (initials of row 0)",
        ),
        ({"texts": {"Welcome": "欢迎"}}, "config.texts: key 'Welcome' is not a-z 0-9 _"),
        ({"texts": {"welcome": "x" * 201}}, "config.texts.welcome: must be a string of 1..200"),
        (
            {"followup_url": "ftp://example.cn/f"},
            "config.followup_url: must be an http(s) URL of 1..200 without spaces, query or fragment",
        ),
        (
            {"followup_url": "https://example.cn/f?a=1"},
            "config.followup_url: must be an http(s) URL of 1..200 without spaces, query or fragment",
        ),
    ],
)
def test_a_kiosk_config_that_breaks_the_rules_is_refused(fields, error):
    with pytest.raises(messages.MessageError) as err:
        messages.encode(config(**fields))
    assert str(err.value) == error


def test_the_evaluate_command_carries_a_case():
    cmd = messages.command(
        "c-1",
        "evaluate",
        {
            "case_no": "QZ1",
            "service_no": "2",
            "item_code": "D-1",
            "staff_id": "1001",
            "org_id": "u1",
            "window_id": "A01",
            "handled_at": "2026-11-27T08:00:00Z",
            "attempt": 2,
            "follows": "ks-01:5",
            "timeout_s": 120,
        },
    )
    assert messages.decode(messages.encode(cmd))["args"]["case_no"] == "QZ1"


@pytest.mark.parametrize(
    "args,error",
    [
        ({}, "cmd.args.case_no: is required"),
        ({"case_no": "QZ1", "level": 5}, "cmd.args.level: unknown field"),
        ({"case_no": ""}, "cmd.args.case_no: must be a string of 1..64 without control characters"),
        (
            {"case_no": "QZ1", "handled_at": "2026-11-27"},
            "cmd.args.handled_at: must be UTC time as YYYY-MM-DDTHH:MM:SSZ",
        ),
        ({"case_no": "QZ1", "attempt": 3}, "cmd.args.attempt: must be an integer 1..2"),
        (
            {"case_no": "QZ1", "follows": "ks-01:5"},
            "cmd.args.follows: only on an appended rating (attempt 2)",
        ),
        (
            {"case_no": "QZ1", "attempt": 2, "follows": "no id"},
            "cmd.args.follows: must be a rating's record id",
        ),
        ({"case_no": "QZ1", "timeout_s": 5}, "cmd.args.timeout_s: must be an integer 10..600"),
    ],
)
def test_an_evaluate_command_that_breaks_the_rules_is_refused(args, error):
    with pytest.raises(messages.MessageError) as err:
        messages.encode(messages.command("c-1", "evaluate", args))
    assert str(err.value) == error

"""Every kiosk setting, text and config field is documented or translated."""

from pathlib import Path

import pytest

from kiosk import settings, texts
from protocols import messages

ROOT = Path(__file__).resolve().parent.parent
GUIDE = (ROOT / "docs" / "technician-guide.md").read_text()
KIOSK_SECTION = GUIDE[GUIDE.index("## The hall kiosk") :]
SPEC = (ROOT / "docs" / "protocol.md").read_text()


@pytest.mark.parametrize("key", list(settings.DEFAULTS))
def test_every_kiosk_setting_is_documented(key):
    assert f"`{key}`" in KIOSK_SECTION


@pytest.mark.parametrize("field", [f for f, _ in messages.KIOSK_ROWS] + ["texts", "followup_url"])
def test_every_kiosk_config_field_is_specified(field):
    assert f"| `{field}` |" in SPEC


def test_every_text_has_both_languages():
    assert set(texts.ZH) == set(texts.EN)


def test_a_hall_text_with_an_unknown_field_falls_back_to_ours():
    t = texts.Texts("zh", {"case_unknown": "查无 {number}", "welcome": "欢迎光临"})
    assert t("welcome") == "欢迎光临"
    assert (
        t("case_unknown", case_no="X1") == "未找到办件编号 X1，请核对后重新输入，或向工作人员咨询"
    )


@pytest.mark.parametrize(
    "overrides,error",
    [
        ({}, "device_id: is required (provisioned)"),
        ({"device_id": "ks-1", "key": "zz"}, "key: must be 64 hex digits"),
        (
            {"device_id": "ks-1", "key": "00" * 32, "technician_pin": "12"},
            "technician_pin: must be 4..8 digits",
        ),
        ({"device_id": "ks-1", "key": "00" * 32, "colour": "red"}, "unknown setting 'colour'"),
    ],
)
def test_bad_settings_are_refused_by_name(overrides, error):
    with pytest.raises(settings.SettingsError) as err:
        settings.load(None, overrides)
    assert str(err.value) == error

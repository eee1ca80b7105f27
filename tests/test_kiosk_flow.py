"""The kiosk's whole flows, headless (SDL dummy driver), driven by real pygame
events posted to pygame's queue, checked in the kiosk's SQLite store and on
screen (the texts the last frame drew, and the QR code decoded with zxing-cpp).

Each scene's screenshot goes to tests/artifacts/kiosk/ (not committed)."""

from __future__ import annotations

import os

os.environ["SDL_VIDEODRIVER"] = "dummy"

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pygame  # noqa: E402
import pytest  # noqa: E402
import zxingcpp  # noqa: E402

from kiosk import demo_content  # noqa: E402
from kiosk.app import KioskApp, followup_token  # noqa: E402
from kiosk.settings import load  # noqa: E402
from kiosk.store import KioskStore  # noqa: E402
from protocols import messages, record, sign  # noqa: E402

SCREENS = Path(__file__).resolve().parent / "artifacts" / "kiosk"
KEY_HEX = "11" * 32
KEY = bytes.fromhex(KEY_HEX)
DEVICE = "ks-01"
FOLLOWUP = "https://hcp.example.cn/followup"
PIN = "2468"
UNIT, WINDOW = "区行政审批服务局", "区行政审批服务局 A01 综合受理窗口"


def demo_config(**fields):
    return messages.decode(messages.encode(demo_content.config(3, FOLLOWUP, **fields)))


class Kiosk:
    """A KioskApp on the dummy display, with a finger, a keyboard and a scanner."""

    def __init__(self, folder, config=None, **settings):
        values = {"device_id": DEVICE, "key": KEY_HEX, "technician_pin": PIN, "http_port": 0}
        values.update(settings)
        self.settings = load(None, values)
        self.store = KioskStore(folder)
        if config is not None:
            self.store.put_setting("config", config)
        pygame.display.init()
        pygame.font.init()
        self.surface = pygame.display.set_mode((self.settings["width"], self.settings["height"]))
        pygame.event.clear()
        self.app = KioskApp(self.settings, self.store, self.surface)
        self.now = 1000
        self.step()

    def step(self, ms=20):
        self.now += ms
        self.app.step(self.now)

    @property
    def scene(self):
        return self.app.scene.name

    @property
    def visible(self):
        return self.app.visible

    def button(self, label):
        for button in self.app.scene.buttons:
            if button.label == label:
                return button
        labels = [b.label for b in self.app.scene.buttons]
        raise AssertionError(f"no button {label!r} on {self.scene}: {labels}")

    def tap(self, label, touch=False):
        """Press and release on a button: a mouse click, or a finger on the touchscreen."""
        x, y = self.button(label).rect.center
        if touch:
            w, h = self.surface.get_size()
            for kind in (pygame.FINGERDOWN, pygame.FINGERUP):
                pygame.event.post(
                    pygame.event.Event(kind, x=x / w, y=y / h, dx=0, dy=0, touch_id=1, finger_id=0)
                )
        else:
            pygame.event.post(pygame.event.Event(pygame.MOUSEBUTTONDOWN, button=1, pos=(x, y)))
            pygame.event.post(pygame.event.Event(pygame.MOUSEBUTTONUP, button=1, pos=(x, y)))
        self.step()

    def key(self, key):
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key, mod=0, unicode=""))
        self.step()

    def type(self, text, gap_ms=150):
        """A person typing: slower than a scanner, so it stays typed text."""
        for ch in text:
            pygame.event.post(pygame.event.Event(pygame.TEXTINPUT, text=ch))
            self.step(gap_ms)
        self.step(gap_ms)

    def scan(self, text, enter=True):
        """A keyboard-wedge barcode scanner: 5 ms a character, then Enter."""
        for ch in text:
            pygame.event.post(pygame.event.Event(pygame.TEXTINPUT, text=ch))
            self.step(5)
        if enter:
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_RETURN, mod=0))
            self.step(5)
        self.step(200)

    def shot(self, name):
        SCREENS.mkdir(parents=True, exist_ok=True)
        pygame.image.save(self.surface, str(SCREENS / f"{name}.png"))

    def qr_texts(self):
        """Decode the QR codes on screen (zxing-cpp), from the red channel."""
        w, h = self.surface.get_size()
        red = pygame.image.tobytes(self.surface, "RGB")[0::3]
        found = zxingcpp.read_barcodes(memoryview(red).cast("B", (h, w)))
        return [code.text for code in found]

    def rate(self, stars, tags=(), comment=(), phone=None, consent=True, touch=False):
        """The walk-up path through a unit's window to the thank-you."""
        self.tap("开始评价", touch)
        self.tap(UNIT, touch)
        self.tap(WINDOW, touch)
        self.tap(LEVELS[stars], touch)
        for tag in tags:
            self.tap(tag, touch)
        self.tap("下一步", touch)
        for phrase in comment:
            self.tap(phrase, touch)
        self.tap("下一步", touch)
        if phone:
            for digit in phone:
                self.tap(digit, touch)
            if consent:
                self.tap("□ 我同意将此号码仅用于本次评价的回访", touch)
            self.tap("提交评价", touch)
        else:
            self.tap("跳过", touch)

    def close(self):
        self.store.close()
        pygame.display.quit()


LEVELS = {5: "非常满意", 4: "满意", 3: "基本满意", 2: "不满意", 1: "非常不满意"}


@pytest.fixture
def kiosk(tmp_path):
    k = Kiosk(tmp_path / "data", demo_config())
    yield k
    k.close()


def only_record(store):
    pending = store.pending(10)
    assert len(pending) == 1
    rec = pending[0]
    record.validate(rec)
    assert sign.verify(rec, KEY)
    return rec


def test_a_walk_up_rating_with_a_reason_comment_and_phone(kiosk):
    kiosk.shot("01-attract")
    assert "欢迎评价（演示数据）：您的意见让服务更好" in kiosk.visible  # the hall's text
    kiosk.tap("开始评价")
    assert kiosk.scene == "find"
    kiosk.shot("02-find-units")
    kiosk.tap(UNIT)
    kiosk.shot("03-find-unit-targets")
    kiosk.tap(WINDOW)
    assert kiosk.scene == "level"
    kiosk.shot("04-level")
    kiosk.tap("不满意")
    assert kiosk.scene == "tags"
    assert "请选择不满意的原因（必选，可多选）" in kiosk.visible
    kiosk.tap("下一步")  # a 差评 needs its reason
    assert kiosk.scene == "tags"
    assert "请至少选择一项原因" in kiosk.visible
    kiosk.tap("等候时间长")
    kiosk.shot("05-tags")
    kiosk.tap("下一步")
    assert kiosk.scene == "comment"
    kiosk.tap("等候时间太长")
    kiosk.type("，希望增加窗口")
    kiosk.shot("06-comment")
    kiosk.tap("下一步")
    assert kiosk.scene == "phone"
    for digit in "13800000000":
        kiosk.tap(digit)
    kiosk.tap("□ 我同意将此号码仅用于本次评价的回访")
    kiosk.shot("07-phone")
    kiosk.tap("提交评价")
    assert kiosk.scene == "thanks"
    kiosk.shot("08-thanks")

    rec = only_record(kiosk.store)
    assert rec["id"] == "ks-01:1" and rec["seq"] == 1 and rec["channel"] == "kiosk"
    assert rec["stars"] == 2 and rec["tags"] == ["D201"] and rec["origin"] == "citizen"
    assert rec["content_version"] == "demo-1"
    assert rec["comment"] == "等候时间太长，希望增加窗口"
    assert rec["window_id"] == "A01" and rec["org_id"] == "370305-xzsp"
    assert "13800000000" not in json.dumps(rec)  # never inside the record
    contacts = kiosk.store.contacts(kiosk.store.batch_plan(10))
    assert contacts == [messages.contact("ks-01:1", "13800000000", KEY)]

    token = followup_token(KEY, "ks-01:1")
    assert kiosk.qr_texts() == [f"{FOLLOWUP}?id=ks-01:1&t={token}"]
    assert "感谢您的评价！" in kiosk.visible


@pytest.mark.parametrize("stars", [5, 4, 3, 2, 1])
def test_every_level_goes_through_the_same_scenes_and_the_same_thanks(tmp_path, stars):
    k = Kiosk(tmp_path / "data", demo_config())
    try:
        seen = []
        k.tap("开始评价")
        k.tap(UNIT)
        k.tap(WINDOW)
        k.tap(LEVELS[stars], touch=True)
        seen.append(k.scene)
        first_tag = k.app.content.tags_for(stars)[0][1]
        k.tap(first_tag, touch=True)
        k.tap("下一步", touch=True)
        seen.append(k.scene)
        k.tap("下一步", touch=True)
        seen.append(k.scene)
        k.tap("跳过", touch=True)
        seen.append(k.scene)
        assert seen == ["tags", "comment", "phone", "thanks"]
        thanks = [t for t in k.visible]
        assert thanks[:3] == [
            "政务服务好差评",
            "感谢您的评价！",
            "用手机扫码，可补充意见、查看办理进度",
        ]
        rec = only_record(k.store)
        assert rec["stars"] == stars
        # the thank-you lasts as long for every level, then the start screen
        k.step(k.settings["thanks_s"] * 1000 - 100)
        assert k.scene == "thanks"
        k.step(200)
        assert k.scene == "attract"
    finally:
        k.close()


def test_an_item_found_by_its_pinyin_initials(kiosk):
    kiosk.tap("开始评价")
    kiosk.tap("按事项")
    for letter in "sfz":
        kiosk.tap(letter)
    kiosk.shot("09-find-item")
    assert [b.label for b in kiosk.app.scene.buttons if "（" in b.label] == [
        "身份证办理（区行政审批服务局）"
    ]
    kiosk.tap("身份证办理（区行政审批服务局）")
    kiosk.tap("非常满意")
    kiosk.tap("下一步")  # a 好评 may skip its tags
    kiosk.tap("跳过")
    kiosk.tap("跳过")
    rec = only_record(kiosk.store)
    assert rec["item_code"] == "D-0001" and rec["org_id"] == "370305-xzsp"
    assert "tags" not in rec and rec["content_version"] == "demo-1"  # shown, none chosen


def test_a_staff_member_rated_with_the_keyboard_alone(kiosk):
    """Tab moves the focus, Enter presses: no touch at all."""

    def focus_and_press(label):
        target = kiosk.app.scene.buttons.index(kiosk.button(label))
        for _ in range(len(kiosk.app.scene.buttons) + 1):
            if kiosk.app.scene.focus == target:
                break
            kiosk.key(pygame.K_TAB)
        kiosk.key(pygame.K_RETURN)

    focus_and_press("开始评价")
    focus_and_press(UNIT)
    focus_and_press("区行政审批服务局 张敏（1001）")
    focus_and_press("满意")
    focus_and_press("下一步")
    focus_and_press("跳过")
    focus_and_press("跳过")
    assert kiosk.scene == "thanks"
    rec = only_record(kiosk.store)
    assert rec["staff_id"] == "1001" and rec["stars"] == 4


def test_idle_reset_discards_the_half_finished_rating(kiosk):
    kiosk.tap("开始评价")
    kiosk.tap(UNIT)
    kiosk.tap(WINDOW)
    kiosk.tap("非常不满意")
    kiosk.tap("服务态度差")
    kiosk.tap("下一步")
    assert kiosk.scene == "comment"
    kiosk.step(kiosk.settings["idle_s"] * 1000 - 100)
    assert kiosk.scene == "comment"
    kiosk.step(200)
    assert kiosk.scene == "attract"
    assert len(kiosk.store) == 0 and kiosk.store.last_seq == 0  # never submitted
    kiosk.rate(5, tags=["服务热情"])
    assert only_record(kiosk.store)["seq"] == 1


def test_going_home_midway_submits_nothing(kiosk):
    kiosk.tap("开始评价")
    kiosk.tap(UNIT)
    kiosk.tap(WINDOW)
    kiosk.tap("满意")
    kiosk.tap("首页")
    assert kiosk.scene == "attract" and len(kiosk.store) == 0


def test_large_type_and_english(kiosk):
    small = kiosk.button("开始评价").rect.height
    kiosk.tap("大字模式")
    assert kiosk.button("开始评价").rect.height > small
    kiosk.shot("10-attract-large")
    kiosk.tap("English")
    assert "Rate a service" in kiosk.visible
    kiosk.tap("Rate a service")
    assert kiosk.scene == "find"
    kiosk.shot("11-find-english-large")


def test_a_bad_phone_number_is_refused_with_a_clear_message(kiosk, caplog):
    caplog.set_level("INFO", logger="kiosk.app")
    kiosk.tap("开始评价")
    kiosk.tap(UNIT)
    kiosk.tap(WINDOW)
    kiosk.tap("满意")
    kiosk.tap("下一步")
    kiosk.tap("跳过")
    for digit in "1234567":
        kiosk.tap(digit)
    kiosk.tap("□ 我同意将此号码仅用于本次评价的回访")
    kiosk.tap("提交评价")
    assert kiosk.scene == "phone"
    assert "号码格式不正确：请输入11位手机号，或带区号的固定电话" in kiosk.visible
    kiosk.shot("12-phone-bad")
    assert "rejected phone input: 7 characters" in caplog.text
    assert "1234567" not in caplog.text  # the number itself is never logged
    kiosk.tap("清除")
    kiosk.type("1390000000x")  # typed on a keyboard: a letter is no phone number
    kiosk.tap("提交评价")
    assert "号码格式不正确：请输入11位手机号，或带区号的固定电话" in kiosk.visible
    kiosk.tap("清除")
    kiosk.type("13900000000")
    kiosk.tap("提交评价")
    assert kiosk.scene == "thanks"  # consent was ticked above
    assert kiosk.store.contacts(kiosk.store.batch_plan(5))[0]["contact"] == "13900000000"


def test_a_phone_number_without_consent_is_not_kept(kiosk):
    kiosk.tap("开始评价")
    kiosk.tap(UNIT)
    kiosk.tap(WINDOW)
    kiosk.tap("满意")
    kiosk.tap("下一步")
    kiosk.tap("跳过")
    kiosk.type("13900000000")
    kiosk.tap("提交评价")
    assert "请勾选同意回访后提交，或清除号码" in kiosk.visible
    kiosk.tap("跳过")  # leaves without the number
    assert kiosk.scene == "thanks"
    assert kiosk.store.contacts(kiosk.store.batch_plan(5)) == []


def test_a_config_without_a_tag_set_for_a_level(tmp_path):
    tags = [row for row in demo_content.TAGS if row[0] != 1]  # no reasons for 非常不满意
    k = Kiosk(tmp_path / "data", demo_config(tags=tags))
    try:
        k.tap("开始评价")
        k.tap(UNIT)
        k.tap(WINDOW)
        k.tap("非常不满意")
        assert k.scene == "tags"
        assert "该评价等级的评价内容暂未配置，请在下一步用文字说明原因" in k.visible
        k.shot("13-tags-missing")
        k.tap("下一步")
        assert k.scene == "comment"
        assert "跳过" not in [b.label for b in k.app.scene.buttons]
        k.tap("下一步")
        assert "请说明不满意的原因：选择常用语或输入文字" in k.visible
        k.tap("需要多次跑动")
        k.tap("下一步")
        k.tap("跳过")
        rec = only_record(k.store)
        assert rec["stars"] == 1 and rec["comment"] == "需要多次跑动"
        assert "tags" not in rec and "content_version" not in rec  # none shown, none invented
        # and the kiosk keeps working for the levels that have tags
        k.step(k.settings["thanks_s"] * 1000 + 10)
        k.rate(2, tags=["等候时间长"])
        assert [r.get("tags") for r in k.store.pending(5)] == [None, ["D201"]]
    finally:
        k.close()


def test_no_config_yet(tmp_path):
    k = Kiosk(tmp_path / "data")
    try:
        k.tap("开始评价")
        assert "暂无可评价的部门，请稍后再试或向工作人员咨询" in k.visible
    finally:
        k.close()


def register_case(k, **fields):
    fields.setdefault("case_no", "QZ2026112700017")
    k.store.add_case(fields)


def test_a_scanned_case_number_opens_its_rating(kiosk):
    register_case(kiosk, item_code="D-0002", staff_id="1002", org_id="370305-xzsp")
    kiosk.scan("QZ2026112700017")
    assert kiosk.scene == "level"
    assert "评价对象：办件编号 QZ2026112700017" in kiosk.visible
    kiosk.tap("基本满意")
    kiosk.tap("下一步")
    kiosk.tap("跳过")
    kiosk.tap("跳过")
    rec = only_record(kiosk.store)
    assert rec["case_no"] == "QZ2026112700017" and rec["item_code"] == "D-0002"
    assert rec["case_staff_id"] == "1002" and rec["case_org_id"] == "370305-xzsp"
    kiosk.tap("首页")
    kiosk.scan("QZ2026112700017")  # one rating per case
    assert kiosk.scene == "attract"
    assert "办件 QZ2026112700017 已经评价过，感谢您的参与" in kiosk.visible


def test_a_typed_case_number(kiosk):
    register_case(kiosk, case_no="QZ-17")
    kiosk.tap("输入或扫描办件编号")
    for ch in "QZ-17":  # on the screen's own keys: no keyboard needed
        kiosk.tap(ch)
    kiosk.shot("14-find-case")
    kiosk.tap("下一步")
    assert kiosk.scene == "level"


def test_an_unknown_case_number(kiosk):
    kiosk.tap("输入或扫描办件编号")
    kiosk.type("QZ999")
    kiosk.tap("下一步")
    assert kiosk.scene == "find"
    assert "未找到办件编号 QZ999，请核对后重新输入，或向工作人员咨询" in kiosk.visible
    kiosk.shot("15-case-unknown")
    kiosk.scan("QZ2026000001")
    assert "未找到办件编号 QZ2026000001，请核对后重新输入，或向工作人员咨询" in kiosk.visible
    assert kiosk.app.rejections == {"case_no": 2}


@pytest.mark.parametrize(
    "read,enter",
    [
        ("QZ2026%112700017", True),  # a character no case number holds
        ("Q" * 65, True),  # too long
        ("QZ20261127", False),  # cut short: no Enter
    ],
)
def test_a_malformed_scanner_read(kiosk, read, enter):
    kiosk.scan(read, enter=enter)
    assert kiosk.scene == "attract"
    assert "扫码内容无法识别，请重新扫描或手动输入" in kiosk.visible
    kiosk.shot("16-scan-bad")
    kiosk.step(15_000)
    assert "扫码内容无法识别，请重新扫描或手动输入" not in kiosk.visible  # gone by itself
    kiosk.rate(5, tags=["服务热情"])  # and the kiosk keeps working
    assert len(kiosk.store) == 1


def test_triggered_mode_opens_a_finished_case(kiosk):
    ok, result = kiosk.app.open_case({"case_no": "QZ1", "service_no": "1", "attempt": 1})
    assert (ok, result) == (True, {"opened": "QZ1"})
    kiosk.step()
    assert kiosk.scene == "level"
    assert "办件 QZ1 已办结，请您评价" in kiosk.visible
    assert kiosk.app.open_case({"case_no": "QZ2"}) == (False, "busy: a rating is in progress")
    kiosk.tap("满意")
    kiosk.tap("下一步")
    kiosk.tap("跳过")
    kiosk.tap("跳过")
    assert only_record(kiosk.store)["service_no"] == "1"
    assert kiosk.app.open_case({"case_no": "QZ1"}) == (
        False,
        "rated: case QZ1 already has a rating",
    )
    # an appended rating (追加评价) of the same case is a new record that follows the first
    kiosk.tap("首页")
    appended = {"case_no": "QZ1", "attempt": 2, "follows": "ks-01:1"}
    assert kiosk.app.open_case(appended) == (True, {"opened": "QZ1"})
    kiosk.tap("非常满意")
    kiosk.tap("下一步")
    kiosk.tap("跳过")
    kiosk.tap("跳过")
    second = [r for r in kiosk.store.pending(5) if r["seq"] == 2][0]
    assert second["attempt"] == 2 and second["follows"] == "ks-01:1"
    assert kiosk.store.case("QZ1")[1] == "ks-01:1"  # the first rating stays the case's


def closed_port():
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_case_handed_over_waits_longer_for_its_citizen(kiosk):
    assert kiosk.app.open_case({"case_no": "QZ5"})[0]
    kiosk.step(kiosk.settings["case_wait_s"] * 1000 - 100)
    assert kiosk.scene == "level"
    kiosk.step(200)
    assert kiosk.scene == "attract" and len(kiosk.store) == 0  # no rating without a touch
    # the case's own timeout_s, when the app gives one
    assert kiosk.app.open_case({"case_no": "QZ6", "timeout_s": 300})[0]
    kiosk.step(299_000)
    assert kiosk.scene == "level"
    kiosk.step(2000)
    assert kiosk.scene == "attract"


def test_the_technician_screen_behind_a_pin(tmp_path):
    kiosk = Kiosk(tmp_path / "data", demo_config(), broker_port=closed_port())
    try:
        technician_screen(kiosk)
    finally:
        kiosk.close()


def technician_screen(kiosk):
    port = kiosk.settings["broker_port"]
    kiosk.key(pygame.K_F12)
    assert kiosk.scene == "pin"
    kiosk.type("1111")
    kiosk.key(pygame.K_RETURN)
    assert "PIN 不正确" in kiosk.visible
    for digit in PIN:
        kiosk.tap(digit)
    kiosk.tap("OK")
    assert kiosk.scene == "technician"
    kiosk.step()
    shown = "\n".join(kiosk.visible)
    for expected in (
        "设备：ks-01 (kiosk, kiosk-0.1.0)",
        "待发送：0",
        "最后确认：-",
        f"服务器：127.0.0.1:{port} 未连接",
        "配置：版本 3，评价内容 demo-1",
    ):
        assert expected in shown
    kiosk.tap("网络测试")
    for _ in range(200):
        kiosk.step(20)
        if any(line.startswith("网络测试：连接") for line in kiosk.visible):
            break
    assert "网络测试：连接失败：Connection refused" in kiosk.visible
    kiosk.shot("17-technician")
    assert kiosk.app.open_case({"case_no": "QZ3"}) == (False, "busy: the technician screen is open")
    kiosk.tap("退出维护")
    assert kiosk.scene == "attract"


def test_the_network_test_reaches_a_listening_broker(tmp_path):
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        k = Kiosk(tmp_path / "data", demo_config(), broker_port=port)
        try:
            k.key(pygame.K_F12)
            k.type(PIN)
            k.key(pygame.K_RETURN)
            k.tap("网络测试")
            for _ in range(200):
                k.step(20)
                if any(line.startswith("网络测试：连接") for line in k.visible):
                    break
            assert [x for x in k.visible if x.startswith("网络测试：连接正常 ")]
        finally:
            k.close()


def test_five_taps_in_the_corner_open_the_pin(kiosk):
    w, _h = kiosk.surface.get_size()
    for _ in range(5):
        pygame.event.post(pygame.event.Event(pygame.MOUSEBUTTONUP, button=1, pos=(w - 10, 10)))
        kiosk.step(100)
    assert kiosk.scene == "pin"


def test_without_a_pin_the_technician_screen_stays_locked(tmp_path):
    k = Kiosk(tmp_path / "data", demo_config(), technician_pin=None)
    try:
        k.key(pygame.K_F12)
        assert "未设置技术人员PIN，无法进入维护界面" in k.visible
        k.type("0000")
        k.tap("OK")
        assert k.scene == "pin"
    finally:
        k.close()


def test_a_font_is_found_or_the_package_is_named(monkeypatch):
    from kiosk import assets

    assert assets.find_cjk_font()
    monkeypatch.setenv("HCP_KIOSK_FONT", "/nonexistent/font.ttc")
    with pytest.raises(assets.FontMissing) as err:
        assets.find_cjk_font()
    assert "fonts-wqy-microhei" in str(err.value)


def test_a_whole_rating_in_large_type(tmp_path):
    k = Kiosk(tmp_path / "data", demo_config(), large_type=True)
    try:
        assert k.app.assets.large
        k.shot("18-large-attract")
        k.tap("开始评价")
        k.tap(UNIT)
        k.tap(WINDOW)
        k.shot("19-large-level")
        # every level button lies inside the screen and below the texts above it
        for button in k.app.scene.buttons:
            assert k.surface.get_rect().contains(button.rect)
        k.tap("非常不满意")
        k.tap("多次跑动")
        k.shot("20-large-tags")
        k.tap("下一步")
        k.shot("21-large-comment")
        k.tap("下一步")
        k.shot("22-large-phone")
        k.tap("跳过")
        k.shot("23-large-thanks")
        assert only_record(k.store)["tags"] == ["D102"]
    finally:
        k.close()


def test_identify_shows_the_device_id(kiosk):
    kiosk.app.post("identify")
    kiosk.step()
    assert DEVICE in kiosk.visible
    kiosk.step(10_000)
    assert DEVICE not in kiosk.visible


def test_a_touch_counts_once():
    from kiosk.inputs import InputMapper

    mapper = InputMapper((1000, 500))
    finger = pygame.event.Event(pygame.FINGERUP, x=0.5, y=0.5, dx=0, dy=0, touch_id=1, finger_id=0)
    # SDL also sends a mouse event for the same touch: ignored
    emulated = pygame.event.Event(pygame.MOUSEBUTTONUP, button=1, pos=(500, 250), touch=True)
    assert mapper.feed(finger, 0) + mapper.feed(emulated, 0) == [("tap", (500, 250))]


def test_typing_stays_text_and_a_scan_is_a_scan():
    from kiosk.inputs import InputMapper

    mapper = InputMapper((1000, 500), scan_gap_ms=40)
    out = []
    for i, ch in enumerate("AB12"):  # a person: 150 ms apart
        out += mapper.feed(pygame.event.Event(pygame.TEXTINPUT, text=ch), i * 150)
    out += mapper.poll(1000)
    assert out == [("text", "A"), ("text", "B"), ("text", "1"), ("text", "2")]
    out = []
    for i, ch in enumerate("AB12"):  # a scanner: 5 ms apart, then Enter
        out += mapper.feed(pygame.event.Event(pygame.TEXTINPUT, text=ch), 2000 + i * 5)
    out += mapper.feed(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_RETURN), 2025)
    assert out == [("scan", "AB12")]
    # an input method commits a whole word at once: text at once
    assert mapper.feed(pygame.event.Event(pygame.TEXTINPUT, text="窗口"), 3000) == [
        ("text", "窗口")
    ]


def test_the_next_citizen_starts_in_the_halls_language_and_type(kiosk):
    kiosk.tap("大字模式")
    kiosk.tap("English")
    kiosk.tap("Rate a service")
    kiosk.tap("Back")
    assert kiosk.scene == "attract"
    assert "开始评价" in kiosk.visible and not kiosk.app.assets.large


def test_many_units_page_through_and_come_round_again(tmp_path):
    units = [[f"u{n:02d}", f"第{n:02d}服务点"] for n in range(1, 21)]
    k = Kiosk(tmp_path / "data", demo_config(units=units, windows=[], staff=[], items=[]))
    try:
        k.tap("开始评价")
        seen = []
        page = next(b.label for b in k.app.scene.buttons if b.action == ("page",))
        pages = int(page.split("/")[1].split()[0])
        assert pages > 1
        for _ in range(pages):
            seen += [b.label for b in k.app.scene.buttons if b.action[0] == "unit"]
            k.tap(next(b.label for b in k.app.scene.buttons if b.action == ("page",)))
        assert seen == [name for _id, name in units]  # each once, in order
        assert [b.label for b in k.app.scene.buttons if b.action[0] == "unit"][0] == "第01服务点"
        while "第20服务点" not in [b.label for b in k.app.scene.buttons]:
            k.tap(next(b.label for b in k.app.scene.buttons if b.action == ("page",)))
        k.tap("第20服务点")
        k.tap("评价本部门")
        k.tap("满意")
        k.tap("下一步")
        k.tap("跳过")
        k.tap("跳过")
        assert only_record(k.store)["org_id"] == "u20"
    finally:
        k.close()

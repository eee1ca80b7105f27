"""The demo's kiosk content: clearly labelled demo data, not the province's
tag table nor a real organisation (which the collector will publish from
its own tables). `hcp demo` publishes it as the kiosk's retained config."""

from __future__ import annotations

from protocols import messages

CONTENT_VERSION = "demo-1"

UNITS = [
    ["370305-xzsp", "区行政审批服务局"],
    ["370305-rsj", "区人力资源和社会保障局"],
    ["370305-scj", "区市场监督管理局"],
    ["370305-jx", "稷下街道便民服务中心"],
]
WINDOWS = [
    ["A01", "370305-xzsp", "A01 综合受理窗口"],
    ["A02", "370305-xzsp", "A02 不动产登记窗口"],
    ["B01", "370305-rsj", "B01 社保窗口"],
    ["C01", "370305-scj", "C01 企业开办窗口"],
    ["J01", "370305-jx", "J01 便民服务窗口"],
]
STAFF = [
    ["1001", "370305-xzsp", "张敏", "1001"],
    ["1002", "370305-xzsp", "李强", "1002"],
    ["2001", "370305-rsj", "王芳", "2001"],
    ["3001", "370305-scj", "赵磊", "3001"],
    ["4001", "370305-jx", "刘洋", "4001"],
]
ITEMS = [
    ["D-0001", "370305-xzsp", "身份证办理", "sfzbl"],
    ["D-0002", "370305-xzsp", "不动产登记", "bdcdj"],
    ["D-0003", "370305-rsj", "社保卡申领", "sbksl"],
    ["D-0004", "370305-rsj", "医保报销", "ybbx"],
    ["D-0005", "370305-scj", "营业执照办理", "yyzzbl"],
    ["D-0006", "370305-jx", "户口迁移", "hkqy"],
]
TAGS = [
    [5, "D501", "服务热情"],
    [5, "D502", "办事高效"],
    [4, "D401", "指引清楚"],
    [3, "D301", "基本顺利"],
    [2, "D201", "等候时间长"],
    [2, "D202", "办事指引不清"],
    [1, "D101", "服务态度差"],
    [1, "D102", "多次跑动"],
]


def config(version: int = 1, followup_url: str | None = None, **fields) -> dict:
    """The demo kiosk's config message (unsigned)."""
    values = {
        "org_id": "370305",
        "content_version": CONTENT_VERSION,
        "tags": TAGS,
        "units": UNITS,
        "windows": WINDOWS,
        "staff": STAFF,
        "items": ITEMS,
        "texts": {"welcome": "欢迎评价（演示数据）：您的意见让服务更好"},
    }
    if followup_url:
        values["followup_url"] = followup_url
    values.update(fields)
    return messages.config(version, **values)


DEMO_PIN = "2468"


def publish_config(host: str, port: int, device_id: str, key_hex: str, config_msg: dict) -> None:
    """Publish a kiosk config retained on its down/config, signed with its key,
    as the collector will (until it publishes org data from its own tables)."""
    import paho.mqtt.client as mqtt

    from protocols import topics

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hcp-demo-kiosk-config")
    client.connect(host, port)
    client.loop_start()
    info = client.publish(
        topics.topic(device_id, topics.DOWN_CONFIG),
        messages.encode_signed(config_msg, bytes.fromhex(key_hex)),
        qos=1,
        retain=True,
    )
    info.wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def start_demo_kiosk(stack, workdir):
    """One kiosk for `hcp demo`: provisioned (kind kiosk), its config
    published, started windowed where there is a display, else headless.
    Returns (kiosk process, device id, local API port)."""
    import json
    import os
    import secrets

    from hcp.broker import free_port
    from hcp.stack import Device

    path = workdir / "kiosk.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    if not known:
        known = {"device_id": "ks-demo-01", "key_hex": secrets.token_hex(32)}
        path.write_text(json.dumps(known))
    device = Device(known["device_id"], known["key_hex"], kind="kiosk")
    stack.provision([device])
    followup = (stack.web_url or "http://127.0.0.1") + "/followup"
    publish_config(
        stack.broker.host, stack.broker.port, device.device_id, device.key_hex,
        config(1, followup_url=followup),
    )  # fmt: skip
    port = free_port()
    headless = not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    kiosk = stack.start_kiosk(device, headless=headless, http_port=port, technician_pin=DEMO_PIN)
    return kiosk, device.device_id, port, headless

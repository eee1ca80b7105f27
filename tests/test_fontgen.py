"""The bitmap font tool (tools/fontgen.py, `hcp font build`): exactly the glyphs
asked for, bitmaps as pygame.freetype draws them, missing glyphs reported,
bad rosters refused with a message naming the problem."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hcp.cli import main as hcp_main
from tools import fontgen

ROOT = Path(__file__).resolve().parent.parent
FONT = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"
ROSTER = {
    "staff": [
        {"staff_name": "张敏", "staff_no": "1001", "window_id": "A01"},
        {"staff_name": "欧阳娜娜", "staff_no": "2002", "window_id": "B12"},
    ],
    "tags": [[1, "D101", "服务态度差"], [2, "D201", "等候时间长"]],
    "texts": ["叫号"],
}


@pytest.fixture(scope="module")
def font_path():
    if not Path(FONT).is_file():
        pytest.fail(f"{FONT} is missing: `make test` installs fonts-wqy-microhei")
    return FONT


def write_roster(tmp_path, data, name="roster.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data, ensure_ascii=False))
    return path


def test_the_firmware_texts_are_collected_from_the_device_code():
    texts = fontgen.firmware_texts()
    for screen in ("欢迎评价", "请您评价", "感谢您的评价", "暂停服务", "请选不满意原因"):
        assert screen in texts
    assert "存储已满，暂停评价" in texts and "安全模式" in texts and "设备编号" in texts
    # docstrings are not screen texts
    assert not any("index 0 = 非常满意" in t for t in texts)


def test_the_glyph_set_is_exactly_the_texts_plus_ascii(tmp_path, font_path):
    roster = write_roster(tmp_path, ROSTER)
    out = tmp_path / "font.bin"
    assert hcp_main(["font", "build", "--roster", str(roster), "--out", str(out)]) == 0
    glyphs = fontgen.read_font(out.read_bytes())
    wanted = set(fontgen.ASCII)
    for text in fontgen.firmware_texts() + ["张敏1001A01欧阳娜娜2002B12服务态度差等候时间长叫号"]:
        wanted.update(text)
    assert set(glyphs) == wanted
    assert "娜" in glyphs and "叫" in glyphs and "骗" not in glyphs
    codes = [ord(ch) for ch in glyphs]
    assert codes == sorted(codes)  # the index is sorted: the device binary-searches it


def test_the_same_inputs_give_the_same_bytes(tmp_path, font_path):
    texts = fontgen.firmware_texts() + fontgen.roster_texts(ROSTER)
    first, _, _ = fontgen.build(texts, font_path)
    second, _, _ = fontgen.build(list(reversed(texts)), font_path)
    assert first == second
    (tmp_path / "a.bin").write_bytes(first)
    run = subprocess.run(
        [sys.executable, "-m", "tools.fontgen", "--text", "服务态度差等候时间长叫号",
         "--text", "张敏1001A01欧阳娜娜2002B12", "--out", str(tmp_path / "b.bin")],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "b.bin").read_bytes() == first


def test_a_glyph_bitmap_matches_a_rendering_of_its_own(font_path):
    import pygame
    import pygame.freetype

    data, _, _ = fontgen.build(["敏"], font_path, 16)
    width, bits = fontgen.read_font(data)["敏"]
    assert width == 16 and len(bits) == 32
    # drawn again here, independently: pygame's own mono bitmap
    pygame.freetype.init()
    font = pygame.freetype.Font(font_path, 16)
    font.antialiased = False
    font.origin = True
    surface = pygame.Surface((16, 16), depth=8)
    surface.fill(0)
    asc, desc = font.get_sized_ascender(16), font.get_sized_descender(16)
    baseline = round(16 * asc / (asc - desc))
    font.render_to(surface, (0, baseline), "敏", fgcolor=(255, 255, 255))
    lit = {(x, y) for y in range(16) for x in range(16) if surface.get_at((x, y))[0]}
    ours = {(x, y) for y in range(16) for x in range(16) if bits[y * 2 + x // 8] & (0x80 >> x % 8)}
    assert ours == lit and len(lit) > 40
    # half-width ASCII is narrower than a Chinese glyph
    assert fontgen.read_font(data)["1"][0] < 16


def test_a_glyph_the_font_lacks_is_reported_and_left_out(tmp_path, font_path, capsys):
    out = tmp_path / "font.bin"
    code = hcp_main(["font", "build", "--text", "张𠀋", "--out", str(out)])
    assert code == 0
    assert capsys.readouterr().err == "not in the font, shown as a box: U+2000B(𠀋)\n"
    glyphs = fontgen.read_font(out.read_bytes())
    assert "张" in glyphs and "𠀋" not in glyphs


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"staff": [', "roster.json: not JSON (line 1, column 12: Expecting value)"),
        ('{"staff": {"name": "张敏"}}', "roster.json.staff: must be a list"),
        ('{"staff": [{"staff_name": 7}]}', "roster.json.staff[0].staff_name: must be a string"),
        ('{"tags": [[1, "D101"]]}', "roster.json.tags[0]: must be [level, code, text]"),
        ('{"staf": []}', 'roster.json: unknown key "staf"'),
        ('"张敏"', "roster.json: must be a JSON object or a list of staff"),
        (
            '{"window_id": "A01", "roster": [["1001"]]}',
            "roster.json.roster[0]: must be [staff_no, name]",
        ),
        ('{"window_id": "A01", "roster": {"1001": "张敏"}}', "roster.json.roster: must be a list"),
    ],
)
def test_a_malformed_roster_gets_an_exact_error(tmp_path, capsys, content, message):
    roster = write_roster(tmp_path, content)
    out = tmp_path / "font.bin"
    assert hcp_main(["font", "build", "--roster", str(roster), "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"hcp font: {message}\n"
    assert not out.exists()


def test_a_missing_font_names_the_package(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(fontgen, "DEFAULT_FONTS", (str(tmp_path / "none.ttc"),))
    assert hcp_main(["font", "build", "--out", str(tmp_path / "f.bin")]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"hcp font: no CJK font found (looked for {tmp_path / 'none.ttc'}): install the Debian "
        "package fonts-wqy-microhei (apt-get install fonts-wqy-microhei) or give --font PATH\n"
    )


def test_a_config_message_and_the_demo_devices_file_are_rosters():
    config = {"t": "config", "v": 1, "version": 3, "window_id": "A01", "staff_name": "王芳",
              "staff_no": "1003", "tags": [[1, "D101", "服务态度差"]]}  # fmt: skip
    assert fontgen.roster_texts(config) == ["A01", "王芳", "1003", "服务态度差"]
    # the window's roster and opening hours (docs/protocol.md §3.4): every name a sign-in shows
    config |= {
        "roster": [["1001", "张敏"], ["1002", "欧阳娜娜"]],
        "hours": [[1, 5, "08:30", "12:00"]],
    }
    assert fontgen.roster_texts(config) == [
        "A01",
        "王芳",
        "1003",
        "1001",
        "张敏",
        "1002",
        "欧阳娜娜",
        "服务态度差",
    ]
    devices = [{"device_id": "kp-demo-01", "key_hex": "00", "window_id": "A02",
                "staff_name": "李强", "staff_no": "1002"}]  # fmt: skip
    assert fontgen.roster_texts(devices) == ["李强", "1002", "A02"]

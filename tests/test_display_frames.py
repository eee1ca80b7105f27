"""The same screens give the same frame bytes on CPython (the simulators'
framebuf stand-in) and under the real MicroPython interpreter (its own
framebuf), from the same font file. Each distinct frame is saved as a PNG
under tests/artifacts/frames/ (not committed) for a person to look at."""

import binascii
import hashlib
from pathlib import Path

import pytest

from tests.harness.micropython import run_micropython
from tools import fontgen

ROOT = Path(__file__).resolve().parent.parent
FRAMES = ROOT / "tests" / "artifacts" / "frames"
ROSTER = {
    "staff": [{"staff_name": "张敏", "staff_no": "1001", "window_id": "A01"}],
    "tags": [[2, "D201", "等候时间长"], [2, "D202", "办事指引不清"], [1, "D101", "服务态度差"]],
}
# what Device.screen() shows, in the order a citizen meets it, and the odd cases
SCREENS = [
    ("A01 张敏 1001", "欢迎评价"),
    ("A01 张敏 1001", "请您评价"),
    ("请选不满意原因", "1 等候时间长", "2 办事指引不清"),
    ("满意之处(可不选)", "1 服务态度差"),
    ("感谢您的评价",),
    ("暂停服务",),
    ("存储已满，暂停评价",),
    ("安全模式", "暂停评价", "请联系技术人员"),
    ("设备编号", "kp-demo-01"),
    ("A01 欧阳𠀋 1001", "欢迎评价"),  # glyphs the font lacks: boxes
    ("一二三四五六七八九十一二三四五六七八九十", "x", "y", "z"),  # wrapped, cut at the bottom
]

# Drawn on both interpreters: the screens above, one frame (hex) a line.
SCRIPT = r"""
import binascii
from device.display import Font, Screen
try:
    import framebuf
except ImportError:
    from simulators import framebuf


class Panel:
    def __init__(self, width, height):
        self.width, self.height = width, height
        self.buffer = bytearray(width * height // 8)
        self.fb = framebuf.FrameBuffer(self.buffer, width, height, framebuf.MONO_VLSB)
        self.shown = 0

    def show(self):
        self.shown += 1


panel = Panel(128, 64)
screen = Screen(panel, Font(FONT))
for lines in SCREENS:
    screen.draw(lines)
    screen.draw(lines)  # the same lines again: not drawn again
    print(binascii.hexlify(panel.buffer).decode())
print("shown", panel.shown)
"""


@pytest.fixture(scope="module")
def font_file(tmp_path_factory):
    texts = fontgen.firmware_texts() + fontgen.roster_texts(ROSTER)
    texts += ["kp-demo-01", "欧阳一二三四五六七八九十"]
    data, _, missing = fontgen.build(texts)
    assert missing == []  # 𠀋 is not asked for: the screen shows a box
    path = tmp_path_factory.mktemp("font") / "font.bin"
    path.write_bytes(data)
    return path


def run_cpython(font_file):
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(SCRIPT, {"FONT": str(font_file), "SCREENS": SCREENS, "__name__": "frames"})
    return out.getvalue()


def test_the_frames_are_byte_identical_on_cpython_and_micropython(font_file):
    from simulators.display import SimDisplay

    on_cpython = run_cpython(font_file)
    code = "FONT = 'font.bin'\nSCREENS = " + repr(SCREENS) + "\n" + SCRIPT
    result = run_micropython(code, files={"font.bin": font_file.read_bytes()}, timeout=120)
    result.check()
    assert result.stdout == on_cpython
    *frames, shown = on_cpython.splitlines()
    assert shown == f"shown {len(SCREENS)}"  # each screen drawn once
    assert len(frames) == len(SCREENS) and len(set(frames)) == len(SCREENS)
    panel = SimDisplay()
    FRAMES.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        data = binascii.unhexlify(frame)
        assert any(data), f"screen {i} is blank"
        digest = hashlib.sha256(data).hexdigest()[:12]
        (FRAMES / f"{i:02d}-{digest}.png").write_bytes(panel.png(data, scale=4))


def test_the_renderer_imports_and_draws_in_a_small_heap(font_file):
    """The heap the renderer costs under MicroPython (from source: its bytecode
    is on the heap too), printed for device/README.md; generous budgets."""
    parts = [
        "import gc\ngc.collect()\nbase = gc.mem_alloc()",
        "from device.display import Font, Screen\nimport framebuf",
        "gc.collect()\nimported = gc.mem_alloc()",
        "buf = bytearray(1024)\n"
        "class Panel:\n"
        "    width, height = 128, 64\n"
        "    fb = framebuf.FrameBuffer(buf, 128, 64, framebuf.MONO_VLSB)\n"
        "    def show(self):\n"
        "        pass\n"
        "screen = Screen(Panel(), Font('font.bin'))\n"
        "gc.collect()\nready = gc.mem_alloc()",
        "for lines in SCREENS:\n    screen.draw(lines)",
        "gc.collect()\ndrawn = gc.mem_alloc()\n"
        "print(imported - base, ready - imported, drawn - ready)",
    ]
    parts[0] = "SCREENS = " + repr(SCREENS) + "\n" + parts[0]
    result = run_micropython(parts, files={"font.bin": font_file.read_bytes()}, timeout=120)
    result.check()
    imported, ready, drawn = (int(n) for n in result.stdout.split())
    print(f"\nheap: import {imported} B, panel+font {ready} B, after drawing {drawn} B more")
    assert imported < 12000 and ready < 3000 and drawn < 6000

"""device/display.py on CPython: glyphs found by seeking, a bounded cache,
boxes for missing glyphs, wrapping and cutting, drawing only on change, and
a failing panel tried again later instead of stopping the keypad."""

import math

import pytest

from device.display import _CACHE, Font, Screen
from simulators.display import SimDisplay
from tools import fontgen

TEXTS = ["A01 张敏 1001", "欢迎评价", "请选择不满意的原因", "一二三四五六七八九十"]


@pytest.fixture(scope="module")
def font_path(tmp_path_factory):
    data, _, _ = fontgen.build(TEXTS)
    path = tmp_path_factory.mktemp("font") / "font.bin"
    path.write_bytes(data)
    return path


def lit_columns(panel, y0, y1):
    return {x for x in range(panel.width) for y in range(y0, y1) if panel.lit(x, y)}


def test_a_glyph_is_found_by_a_binary_search_of_the_index(font_path):
    font = Font(str(font_path))
    glyphs = fontgen.read_font(font_path.read_bytes())
    width, fb = font.glyph(ord("敏"))
    assert width == glyphs["敏"][0] == 16
    assert bytes(fb.buffer) == glyphs["敏"][1]
    for ch in "张欢迎评价A~":
        before = font.reads
        assert font.glyph(ord(ch)) is not None
        assert font.reads - before <= math.ceil(math.log2(font.count)) + 1
    assert font.glyph(ord("骗")) is None  # not in the file
    font.close()


def test_the_glyph_cache_stays_bounded(font_path):
    font = Font(str(font_path))
    for code in range(0x20, 0x7F):
        font.glyph(code)
        assert len(font._cache) <= _CACHE
    font.close()


def test_a_file_that_is_no_font_is_refused(tmp_path):
    path = tmp_path / "font.bin"
    path.write_bytes(b"PK\x03\x04" + bytes(20))
    with pytest.raises(ValueError, match="not an hcp font file: " + str(path)):
        Font(str(path))


def test_a_missing_glyph_is_a_box_and_never_an_error(font_path):
    panel = SimDisplay()
    screen = Screen(panel, Font(str(font_path)))
    assert screen.draw(("骗",))  # not in the font
    # a 16x16 box outline one pixel in, centred: rows 24..39, columns 56..71
    assert panel.lit(57, 25) and panel.lit(70, 25) and panel.lit(57, 38) and panel.lit(70, 38)
    assert not panel.lit(63, 31)  # hollow
    assert lit_columns(panel, 0, 64) == set(range(57, 71))


def test_a_long_line_wraps_and_rows_below_the_panel_are_left_out(font_path):
    panel = SimDisplay()
    screen = Screen(panel, Font(str(font_path)))
    rows = screen.rows(("一二三四五六七八九十", "A01 张敏 1001"))
    assert [(n, start, end) for n, start, end, _ in rows] == [(0, 0, 8), (0, 8, 10), (1, 0, 11)]
    assert rows[0][3] == 128 and rows[1][3] == 32
    screen.draw(("一二三四五六七八九十", "1", "2", "3", "4"))  # 6 rows, 4 fit
    cut = panel.frame
    screen.draw(("一二三四五六七八九十", "1", "2"))  # the 4 rows that fit
    assert panel.frame == cut and screen.draws == 2


def test_it_draws_only_when_the_lines_change(font_path):
    panel = SimDisplay()
    screen = Screen(panel, Font(str(font_path)))
    assert screen.update(("欢迎评价",), 0)
    assert not screen.update(("欢迎评价",), 10)
    assert screen.update(("请选择不满意的原因",), 20)
    assert panel.shown == 2


class BrokenPanel(SimDisplay):
    def __init__(self):
        super().__init__()
        self.broken = True

    def show(self):
        if self.broken:
            raise OSError(5, "EIO")  # the I2C bus: no ACK from the panel
        super().show()


def test_a_failing_panel_is_tried_again_later_with_a_growing_pause(font_path):
    panel = BrokenPanel()
    screen = Screen(panel, Font(str(font_path)))
    with pytest.raises(OSError):
        screen.update(("欢迎评价",), 0)
    assert not screen.update(("欢迎评价",), 999)  # not before 1 s
    with pytest.raises(OSError):
        screen.update(("欢迎评价",), 1000)
    assert not screen.update(("欢迎评价",), 2999)  # then 2 s
    panel.broken = False
    assert screen.update(("欢迎评价",), 3000)
    assert panel.shown == 1 and screen.failures == 0

# SSD1306 monochrome OLED (128x64 or 128x32) on I2C. The bus is passed in
# (machine.I2C or SoftI2C, already on its pins), so the driver knows no pin
# numbers: those live in the board file (hardware/boards/).
#
# The frame buffer is the panel's own memory layout: 8 pages of 128 bytes,
# each byte a column of 8 pixels, top pixel in bit 0 (framebuf.MONO_VLSB),
# so show() sends it as it is.
try:
    import framebuf
except ImportError:  # CPython (tests): the simulators' stand-in
    from simulators import framebuf

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_CMD = const(0x80)  # control byte: one command byte follows
_DATA = const(0x40)  # control byte: display RAM data follows

# Power-on sequence (SSD1306 datasheet, section 10 and the application note's
# init flow), for the internal charge pump that 3.3 V modules use.
_INIT = (
    0xAE,  # display off while configuring
    0x20, 0x00,  # memory addressing: horizontal (pages fill left to right, top to bottom)
    0x40,  # start line 0
    0xA1,  # column 127 is SEG0: not mirrored on the usual modules
    0xC8,  # scan COM from the bottom: not upside down
    0xD3, 0x00,  # no vertical offset
    0xD5, 0x80,  # clock divide 1, default oscillator
    0xD9, 0xF1,  # pre-charge: 15 clocks phase 2, 1 clock phase 1 (internal VCC)
    0xDB, 0x30,  # VCOMH deselect about 0.83 VCC
    0x81, 0xCF,  # contrast
    0xA4,  # show the RAM (not all on)
    0xA6,  # not inverted: a set bit is a lit pixel
    0x8D, 0x14,  # charge pump on
)  # fmt: skip


class SSD1306:
    """The panel: .fb (framebuf.FrameBuffer), .width, .height, show(),
    power(on), contrast(level). i2c: a bus object with writeto()."""

    def __init__(self, i2c, width=128, height=64, addr=0x3C):
        self.i2c = i2c
        self.addr = addr
        self.width = width
        self.height = height
        self.pages = height // 8
        self.buffer = bytearray(width * self.pages)
        self.fb = framebuf.FrameBuffer(self.buffer, width, height, framebuf.MONO_VLSB)
        self._cmd = bytearray(2)
        self._cmd[0] = _CMD
        for c in _INIT:
            self.command(c)
        self.command(0xA8)  # multiplex ratio: one COM line a pixel row
        self.command(height - 1)
        self.command(0xDA)  # COM pins: alternative layout for 64 rows, sequential for 32
        self.command(0x12 if height == 64 else 0x02)
        self.show()  # clear the RAM before the panel lights up
        self.power(True)

    def command(self, byte):
        self._cmd[1] = byte
        self.i2c.writeto(self.addr, self._cmd)

    def power(self, on):
        self.command(0xAF if on else 0xAE)

    def contrast(self, level):
        self.command(0x81)
        self.command(level & 0xFF)

    def show(self):
        """Send the whole frame: the column and page window, then the RAM data."""
        for c in (0x21, 0, self.width - 1, 0x22, 0, self.pages - 1):
            self.command(c)
        writevto = getattr(self.i2c, "writevto", None)
        if writevto is not None:  # MicroPython: no 1 KB copy of the frame
            writevto(self.addr, (b"\x40", self.buffer))
        else:
            self.i2c.writeto(self.addr, bytes((_DATA,)) + bytes(self.buffer))

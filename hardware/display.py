# The board's display, made from what its board file names (hardware/boards/):
#
#   DISPLAY = "ssd1306"     the panel's driver (None or absent: no display)
#   DISPLAY_WIDTH, DISPLAY_HEIGHT, DISPLAY_ADDR
#   I2C_ID, I2C_SDA, I2C_SCL, I2C_FREQ (optional, default 400 kHz)
#
# The machine module is passed in, as to device.main.build().


def make(machine, board):
    """The panel (see device/display.py for its interface), or None when the
    board names no display. Raises when the bus or the panel does not answer."""
    kind = getattr(board, "DISPLAY", None)
    if not kind:
        return None
    if kind == "ssd1306":
        from hardware.ssd1306 import SSD1306

        i2c = machine.I2C(
            board.I2C_ID,
            scl=machine.Pin(board.I2C_SCL),
            sda=machine.Pin(board.I2C_SDA),
            freq=getattr(board, "I2C_FREQ", 400000),
        )
        return SSD1306(i2c, board.DISPLAY_WIDTH, board.DISPLAY_HEIGHT, board.DISPLAY_ADDR)
    raise ValueError("unknown display: " + str(kind))

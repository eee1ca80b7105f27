"""The SSD1306 driver and the boards' display wiring, with a recording I2C bus
in place of machine.I2C (the bytes the panel would receive), and the wiring
in device.main.build: a board that names a display draws on it, a display
that fails is noted and the keypad goes on."""

import importlib

import pytest

from device import config
from device.main import build
from hardware import display as panels
from hardware.ssd1306 import SSD1306
from simulators.display import SimDisplay
from simulators.machine import SimMachine
from simulators.network import SimNetwork
from tools import fontgen

BOARDS = ("esp32s3_keypad", "picow_keypad")


class RecordingI2C:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
        self.writes = []  # (address, bytes)
        self.fail = False

    def writeto(self, addr, data):
        if self.fail:
            raise OSError(19, "ENODEV")  # no ACK: the panel is unplugged
        self.writes.append((addr, bytes(data)))


def commands(bus):
    return [data[1] for addr, data in bus.writes if data[0] == 0x80]


def test_the_panel_is_switched_on_cleared_and_sent_whole():
    bus = RecordingI2C()
    panel = SSD1306(bus, 128, 64, 0x3C)
    sent = commands(bus)
    assert sent[0] == 0xAE and sent[-1] == 0xAF  # configured dark, lit last
    assert [0xA8, 63, 0xDA, 0x12] == sent[sent.index(0xA8) : sent.index(0xA8) + 4]
    assert 0x8D in sent and sent[sent.index(0x8D) + 1] == 0x14  # charge pump on
    data = [d for _, d in bus.writes if d[0] == 0x40]
    assert data == [b"\x40" + bytes(1024)]  # cleared before it lights up
    bus.writes.clear()
    panel.fb.pixel(0, 0, 1)
    panel.fb.pixel(127, 63, 1)
    panel.show()
    assert commands(bus) == [0x21, 0, 127, 0x22, 0, 7]
    (frame,) = [d[1:] for _, d in bus.writes if d[0] == 0x40]
    assert frame[0] == 0x01 and frame[1023] == 0x80 and sum(frame) == 0x81
    assert {addr for addr, _ in bus.writes} == {0x3C}


def test_a_32_row_panel_gets_its_own_multiplex_and_com_pins():
    bus = RecordingI2C()
    SSD1306(bus, 128, 32)
    sent = commands(bus)
    assert [0xA8, 31, 0xDA, 0x02] == sent[sent.index(0xA8) : sent.index(0xA8) + 4]


@pytest.mark.parametrize("name", BOARDS)
def test_each_board_names_its_display_bus_and_pins(name):
    board = importlib.import_module("hardware.boards." + name)
    machine = SimMachine()
    buses = []

    def i2c(*args, **kwargs):
        buses.append(RecordingI2C(*args, **kwargs))
        return buses[-1]

    machine.I2C = i2c
    panel = panels.make(machine, board)
    assert isinstance(panel, SSD1306) and (panel.width, panel.height) == (128, 64)
    (bus,) = buses
    assert bus.args == (board.I2C_ID,)
    assert bus.kwargs["sda"].id == board.I2C_SDA and bus.kwargs["scl"].id == board.I2C_SCL
    pins = set(board.KEY_PINS) | {board.I2C_SDA, board.I2C_SCL, board.UART_TX, board.UART_RX}
    assert len(pins) == len(board.KEY_PINS) + 4  # no pin used twice
    assert board.BUZZER_PIN not in pins


def test_the_sim_board_names_no_display():
    from hardware.boards import sim

    assert panels.make(SimMachine(), sim) is None


@pytest.fixture(scope="module")
def font_file(tmp_path_factory):
    data, _, _ = fontgen.build(fontgen.firmware_texts())
    path = tmp_path_factory.mktemp("font") / "font.bin"
    path.write_bytes(data)
    return str(path)


def make_device(tmp_path, font_file, machine=None, board=None, **kwargs):
    from hardware.boards import esp32s3_keypad

    settings = config.load(
        None,
        {"device_id": "kp-01", "key": "00" * 32, "broker_host": "192.0.2.1",
         "data_dir": str(tmp_path / "data")},
    )  # fmt: skip
    return build(
        machine or SimMachine(),
        SimNetwork(),
        board or esp32s3_keypad,
        settings,
        check_filesystem=False,
        font_file=font_file,
        **kwargs,
    )


def test_build_draws_on_the_boards_panel_over_i2c(tmp_path, font_file):
    machine = SimMachine()
    buses = []
    machine.I2C = lambda *a, **k: buses.append(RecordingI2C(*a, **k)) or buses[-1]
    device = make_device(tmp_path, font_file, machine)
    assert isinstance(device.display.panel, SSD1306)
    (bus,) = buses
    bus.writes.clear()
    device.run_once(0)
    frames = [d[1:] for _, d in bus.writes if d[0] == 0x40]
    assert len(frames) == 1 and any(frames[0])  # the screen, drawn once
    device.run_once(10)
    assert len([d for _, d in bus.writes if d[0] == 0x40]) == 1  # unchanged: not sent again
    assert device.crash_log.count == 0


def test_a_display_that_fails_is_noted_and_the_keypad_goes_on(tmp_path, font_file):
    machine = SimMachine()
    bus = RecordingI2C()
    machine.I2C = lambda *a, **k: bus
    device = make_device(tmp_path, font_file, machine)
    bus.fail = True
    for now in range(0, 500, 10):
        assert device.run_once(now) == 10  # the pass itself goes on
    assert device.crash_log.count == 1  # noted once, tried again after 1 s
    assert device.crash_log.last_error == "display: OSError: [Errno 19] ENODEV"
    bus.fail = False
    device.run_once(1000)
    assert device.display.failures == 0 and device.crash_log.count == 1


def test_a_missing_font_file_leaves_the_keypad_without_a_display(tmp_path):
    missing = str(tmp_path / "font.bin")
    device = make_device(tmp_path, missing, display=SimDisplay())
    assert device.display is None and device.app is not None
    assert device.crash_log.last_error.startswith(
        "display: FileNotFoundError: [Errno 2] No such file or directory"
    )


def test_a_port_without_i2c_has_no_display(tmp_path, font_file):
    device = make_device(tmp_path, font_file)  # SimMachine has no I2C
    assert device.display is None and device.crash_log.count == 0


def test_a_simulated_panel_shows_the_same_screen_as_the_device(tmp_path, font_file):
    panel = SimDisplay()
    device = make_device(tmp_path, font_file, display=panel)
    device.run_once(0)
    assert panel.shown == 1 and device.display.lines == device.screen()

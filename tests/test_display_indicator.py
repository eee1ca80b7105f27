"""hardware/indicator.py: LED, RGB LED and buzzer with their pin, NeoPixel
or PWM passed in; timed signals end from tick(), also across the tick wrap."""

from hardware.indicator import Buzzer, Led, RgbLed


class Pin:
    def __init__(self):
        self.levels = []

    def value(self, level=None):
        self.levels.append(level)


class Pixels(list):
    def __init__(self):
        super().__init__([None])
        self.writes = []

    def write(self):
        self.writes.append(self[0])


class PWM:
    def __init__(self):
        self.calls = []

    def freq(self, hz):
        self.calls.append(("freq", hz))

    def duty_u16(self, duty):
        self.calls.append(("duty", duty))


def test_an_active_low_led_is_off_at_start_and_lit_for_its_time():
    pin = Pin()
    led = Led(pin, active_high=False)
    assert pin.levels == [1]  # active-low: off is high
    led.on(1000, ms=200)
    led.tick(1199)
    assert pin.levels == [1, 0]
    led.tick(1200)
    assert pin.levels == [1, 0, 1]


def test_an_rgb_led_shows_a_colour_until_off():
    pixels = Pixels()
    led = RgbLed(pixels)
    led.on((0, 40, 0))
    led.tick(10**6)  # no time given: stays on
    assert pixels.writes == [(0, 0, 0), (0, 40, 0)]
    led.off()
    assert pixels.writes[-1] == (0, 0, 0)


def test_a_beep_is_a_half_duty_tone_that_ends_by_itself():
    pwm = PWM()
    buzzer = Buzzer(pwm)
    buzzer.beep(0, ms=80)
    assert pwm.calls == [("duty", 0), ("freq", 2700), ("duty", 32768)]
    buzzer.tick(79)
    assert pwm.calls[-1] == ("duty", 32768)
    buzzer.tick(80)
    assert pwm.calls[-1] == ("duty", 0)


MICROPYTHON = r"""
from device.compat import ticks_add
from hardware.indicator import Buzzer
class PWM:
    def __init__(self):
        self.duty = None
    def freq(self, hz):
        pass
    def duty_u16(self, d):
        self.duty = d
pwm = PWM()
b = Buzzer(pwm)
start = ticks_add(0, -30)  # 30 ms before the tick counter wraps
b.beep(start, ms=80)
b.tick(ticks_add(start, 79))
print(pwm.duty)
b.tick(ticks_add(start, 80))
print(pwm.duty)
"""


def test_a_beep_ends_on_time_across_the_tick_wrap_under_micropython():
    from tests.harness.micropython import run_micropython

    result = run_micropython(MICROPYTHON)
    result.check()
    assert result.stdout.split() == ["32768", "0"]

# The keypad's LED and buzzer, with the pin, PWM channel or NeoPixel object
# passed in (made from the board file's LED_PIN / BUZZER_PIN by the caller).
# Nothing blocks: on()/beep() start a signal, tick(now_ms) from the main
# loop ends it when its time is up (ticks_diff: safe across the tick wrap).
#
# Not yet driven by the firmware (device/main.py): the drivers are here for
# the reference boards, tested on their own.
from device.compat import ticks_add, ticks_diff


class _Timed:
    def __init__(self):
        self._until = None

    def _start(self, now_ms, ms):
        self._until = ticks_add(now_ms, ms) if ms else None

    def tick(self, now_ms):
        if self._until is not None and ticks_diff(now_ms, self._until) >= 0:
            self._until = None
            self.off()

    def off(self):
        raise NotImplementedError


class Led(_Timed):
    """A single LED on a pin (machine.Pin in OUT mode, or a Signal)."""

    def __init__(self, pin, active_high=True):
        super().__init__()
        self._pin = pin
        self._on = 1 if active_high else 0
        self.off()

    def on(self, now_ms=0, ms=0):
        """Light it, for `ms` milliseconds (0: until off())."""
        self._pin.value(self._on)
        self._start(now_ms, ms)

    def off(self):
        self._pin.value(1 - self._on)
        self._until = None


class RgbLed(_Timed):
    """One WS2812 (NeoPixel) LED, as on the ESP32-S3 DevKitC-1 (GPIO 48):
    `pixels` is a neopixel.NeoPixel(Pin(n), 1)."""

    def __init__(self, pixels):
        super().__init__()
        self._pixels = pixels
        self.off()

    def on(self, colour, now_ms=0, ms=0):
        self._pixels[0] = colour
        self._pixels.write()
        self._start(now_ms, ms)

    def off(self):
        self._pixels[0] = (0, 0, 0)
        self._pixels.write()
        self._until = None


class Buzzer(_Timed):
    """A passive buzzer on a PWM channel (machine.PWM(Pin(n)))."""

    def __init__(self, pwm):
        super().__init__()
        self._pwm = pwm
        self.off()

    def beep(self, now_ms, ms=80, freq=2700):
        """A tone of `freq` Hz for `ms` milliseconds (2.7 kHz: where the usual
        12 mm buzzers are loudest)."""
        self._pwm.freq(freq)
        self._pwm.duty_u16(32768)  # half the period: the loudest square wave
        self._start(now_ms, ms)

    def off(self):
        self._pwm.duty_u16(0)
        self._until = None

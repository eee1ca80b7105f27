# Time helpers that behave the same on MicroPython and on CPython (simulation).
# MicroPython has time.ticks_ms()/ticks_diff() with wrap-around; CPython has
# neither, so a monotonic millisecond counter stands in for them.
import time

try:
    ticks_ms = time.ticks_ms
    ticks_diff = time.ticks_diff
    ticks_add = time.ticks_add
    sleep_ms = time.sleep_ms
except AttributeError:  # CPython

    def ticks_ms():
        return int(time.monotonic() * 1000)

    def ticks_diff(later, earlier):
        return later - earlier

    def ticks_add(ticks, delta):
        return ticks + delta

    def sleep_ms(ms):
        time.sleep(ms / 1000)

# Debounced keys. The scanner only calls the pin callables it is given
# (machine.Pin objects are callable and return 0/1), so a real pin, a Signal
# or a simulator pin all work the same.
try:
    from micropython import const
except ImportError:  # CPython simulation

    def const(x):
        return x


from device.compat import ticks_diff

_DEBOUNCE_MS = const(30)


class Keys:
    def __init__(self, pins, active_low=True, debounce_ms=_DEBOUNCE_MS):
        self._pins = pins
        self._active = 0 if active_low else 1  # active-low: pressed reads 0
        self._debounce = debounce_ms
        self._stable = [False] * len(pins)  # debounced state: pressed?
        self._since = [None] * len(pins)  # when the raw state started to differ

    def scan(self, now_ms):
        """Return the indexes of keys that became pressed (stable for debounce_ms)."""
        pressed = []
        for i, pin in enumerate(self._pins):
            raw = pin() == self._active
            if raw == self._stable[i]:
                self._since[i] = None
                continue
            if self._since[i] is None:
                self._since[i] = now_ms
            elif ticks_diff(now_ms, self._since[i]) >= self._debounce:  # wraps on a board
                self._stable[i] = raw
                self._since[i] = None
                if raw:
                    pressed.append(i)
        return pressed

    def down(self, index):
        """Whether key `index` is pressed, debounced (for simulators and tests)."""
        return self._stable[index]

"""Heap use of the firmware under the real MicroPython interpreter.

Prints the figures recorded in device/README.md; the budgets are generous
ceilings that catch a regression (say, records kept in RAM), not timings."""

import pytest

from tests.harness.micropython import run_micropython

STEPS = [
    "import gc\ngc.collect()\nbase = gc.mem_alloc()",
    "import device.main, device.config\nfrom hardware.boards import esp32s3_keypad",
    "gc.collect()\nafter_import = gc.mem_alloc()\nprint('import', after_import - base)",
    """
import os
os.mkdir('/work/d')
from device.store import Store
from device.app import KeypadApp
store = Store('/work/d')
app = KeypadApp('kp-01', bytes(32), store, lambda: (1764145800, 'ntp'), 'b00t', 0, 3000)
now = 0
for i in range(300):
    now += 5000
    app.press(i % 5, now)
    app.tick(now + 4000)
""",
    "gc.collect()\nafter_store = gc.mem_alloc()\nprint('pending300', after_store - after_import, len(store))",
    "from protocols import messages\nbatch = store.pending(50)\npayload = messages.encode(messages.batch('kp-01', 1, batch))",
    "gc.collect()\nprint('batch50', gc.mem_alloc() - after_store, len(payload))",
]


@pytest.mark.micropython
def test_heap_use_stays_within_its_budget():
    result = run_micropython(STEPS)
    result.check()
    figures = {
        line.split()[0]: [int(x) for x in line.split()[1:]] for line in result.stdout.splitlines()
    }
    print(figures)
    assert figures["pending300"][1] == 300
    assert figures["import"][0] < 80_000
    assert figures["pending300"][0] < 80_000  # offsets and lengths only: about 130 bytes a record
    assert figures["batch50"][0] < 64_000

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
from device.store import Store, seed
from device.app import KeypadApp
seed('/work/d')
store = Store('/work/d')
app = KeypadApp('kp-01', bytes(32), store, lambda: (1764145800, 'ntp'), 'b00t', 0, 3000)
now = 0
for i in range(300):
    now += 5000
    app.press(i % 5, now)
    app.tick(now + 4000)
""",
    "gc.collect()\nafter_store = gc.mem_alloc()\nprint('pending300', after_store - after_import, len(store))",
    # A 50-record batch as device/sync.py sends it: streamed from the journal
    # into a socket (a sink that keeps nothing). gc.collect() frees nothing
    # while a part runs, so the growth over the part is every byte allocated
    # while streaming: an upper bound of the peak.
    """
from device.sync import batch_stream
from device import mqtt
class Sink:
    def __init__(self):
        self.n = 0
    def settimeout(self, t):
        pass
    def send(self, data):
        self.n += len(data)
        return len(data)
    def close(self):
        pass
sink = Sink()
client = mqtt.MQTTClient('kp-01', 'h')
client.sock = sink
client.connected = True
gc.collect()
before_stream = gc.mem_alloc()
""",
    """
plan = store.batch_plan(50)
length, chunks = batch_stream(store, 'kp-01', 1, plan)
client.publish_stream('hcp/v1/dev/kp-01/up/ev', length, chunks, 0)
print('stream50', gc.mem_alloc() - before_stream, sink.n, len(plan))
""",
    "gc.collect()\nprint('stream50_kept', gc.mem_alloc() - before_stream)",
    # The same batch built as one string (what sync did before streaming), for comparison
    "gc.collect()\nbefore_built = gc.mem_alloc()",
    "from protocols import messages\nbatch = store.pending(50)\npayload = messages.encode(messages.batch('kp-01', 1, batch))\nprint('built50', gc.mem_alloc() - before_built, len(payload))",
    "gc.collect()\nprint('built50_kept', gc.mem_alloc() - before_built)",
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
    # the store's array index is 1.6 KB of code and saves about 16 bytes a pending record
    assert figures["import"][0] < 82_000
    assert figures["pending300"][0] < 9_000  # the index: about 11 bytes a record, and the app
    assert figures["stream50"][2] == 50
    assert figures["stream50"][1] == figures["built50"][1] + 27  # the PUBLISH header and topic
    # every allocation while streaming, garbage included (the lines read back
    # from flash, slices): collectable; what stays afterwards is small
    assert figures["stream50"][0] < 120_000
    assert figures["stream50_kept"][0] < 4_000

"""Stand-ins for boards and peers, for tests and the demo: a simulated keypad
(keypad.py) and the `machine` and `network` modules it gives the firmware.
Runs of the whole system (demo, bench, fault run) live in hcp/."""

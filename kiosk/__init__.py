"""The hall self-service kiosk (大厅自助机): a pygame-ce scene machine that
makes signed evaluation records and delivers them with the keypad's own sync."""

import os

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # no banner on the technician's console

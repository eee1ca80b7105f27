# MicroPython manifest of a keypad board's image: the port's own frozen modules
# and the keypad firmware (tools/manifest.py). From a MicroPython checkout:
#
#   make -C ports/esp32 BOARD=ESP32_GENERIC_S3 FROZEN_MANIFEST=/path/to/hcp/tools/board_manifest.py
#   make -C ports/rp2 BOARD=RPI_PICO_W FROZEN_MANIFEST=/path/to/hcp/tools/board_manifest.py
#
# The port's manifest is needed: on the ESP32 its _boot.py and inisetup.py
# mount (and on first boot create) the littlefs file system the keypad's
# journal lives on. See docs/technician-guide.md, "Building a board image".
include("$(PORT_DIR)/boards/manifest.py")  # noqa: F821 (a makemanifest function)
include("manifest.py")  # noqa: F821

# Boot-time helpers of device/main.py's build(): imported while the keypad
# starts and dropped from sys.modules when it has started (forget()), so their
# code takes no heap while the keypad runs.
import sys

from device.compat import sleep_ms, ticks_diff, ticks_ms

# machine.reset_cause() values as the ESP32 port numbers them
_RESET_CAUSES = {1: "power_on", 2: "hard", 3: "watchdog", 4: "deep_sleep", 5: "soft"}


def filesystem_problem(folder):
    """Why `folder` cannot hold the journal, or None.

    Only littlefs renames over a file atomically; on FAT a power cut during
    a rename can lose the state file. MicroPython 1.23+ lists the mounted
    filesystems with vfs.mount() (no arguments): (filesystem, mount point)
    pairs; the type name of the one holding the folder says what it is
    (VfsLfs2 / VfsLfs1 / VfsFat). A port that cannot tell (older firmware,
    the unix port) is let through: only a FAT mount is refused."""
    try:
        import vfs

        mounts = vfs.mount()
    except (ImportError, AttributeError, TypeError, OSError):
        return None
    best, kind = -1, None
    for fs, point in mounts:
        point = point.rstrip("/")
        if (folder == point or folder.startswith(point + "/")) and len(point) > best:
            best, kind = len(point), type(fs).__name__
    if kind and "fat" in kind.lower():
        return "data folder on FAT (" + kind + "): littlefs required"
    return None


def held_at_boot(pin, active, hold_ms):
    """True when the key on `pin` is held for hold_ms from now (safe mode).
    Returns at once when it is not pressed, so a normal boot does not wait."""
    if hold_ms <= 0:
        return False
    start = ticks_ms()
    while pin() == active:
        if ticks_diff(ticks_ms(), start) >= hold_ms:
            return True
        sleep_ms(10)
    return False


def window_uart(machine, board, settings):
    """The UART to the window PC, on the board's pins where the board names them."""
    pins = {}
    if getattr(board, "UART_TX", None) is not None:
        pins = {"tx": board.UART_TX, "rx": board.UART_RX}
    return machine.UART(settings["window_uart"], baudrate=settings["window_baud"], **pins)


def reset_cause(machine):
    """Why the board started, by name (None where the port cannot tell)."""
    read = getattr(machine, "reset_cause", None)
    return _RESET_CAUSES.get(read(), "other") if read else None


def running_firmware(data_dir, default):
    """The version of the firmware running: the active slot's (/data/fw.json,
    device/update.py), else `default` (the settings', i.e. the factory one's).
    Status, the offline will and the window PC's `info` all report it."""
    from device.main import read_json

    st = read_json(data_dir + "/fw.json")
    if isinstance(st, dict) and st.get("active") and st.get("version"):
        return st["version"]
    return default


def forget():
    """Drop this module once the keypad has started (its code is garbage then)."""
    sys.modules.pop("device.startup", None)
    try:
        import device

        del device.startup
    except (AttributeError, ImportError, TypeError):
        pass

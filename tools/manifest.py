# MicroPython manifest of the keypad firmware: the modules a board runs, frozen
# into a MicroPython image. A frozen module keeps its bytecode and constant
# strings in the image (flash); importing it puts only its globals, functions
# and classes on the heap, where a module loaded from a .mpy file also holds
# its bytecode (about 75 KB for the whole firmware).
#
# The modules are exactly the files of package.json, which is what
# `mpremote mip install` puts under /lib: one list for both ways of installing
# (tools/mip_package.py writes it, tests/test_packaging.py keeps it current,
# tests/test_micropython_unix.py checks that this manifest freezes the same files).
#
# Used directly for MicroPython's unix port in the tests
# (tests/harness/micropython_unix.py); a board image uses
# tools/board_manifest.py, which adds the port's own frozen modules. Read by
# MicroPython's tools/makemanifest.py, which runs it with this folder as the
# current directory and provides module().
import json

with open("../package.json") as listing:
    for target, source in json.load(listing)["urls"]:
        if target != source:
            raise ValueError(f"package.json installs {source} as {target}: not a module path")
        module(target, base_path="..")  # noqa: F821 (a makemanifest function)

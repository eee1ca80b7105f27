"""Write package.json, the firmware's package for mip (micropython-lib convention).

It lists every file a keypad needs: protocols/, hardware/ and device/. Run it
after adding or removing a device-side file; tests/test_packaging.py fails
while package.json is out of date.
"""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEVICE_PACKAGES = ("protocols", "hardware", "device")


def device_files() -> list[str]:
    files = []
    for package in DEVICE_PACKAGES:
        files += [p.relative_to(ROOT).as_posix() for p in sorted((ROOT / package).rglob("*.py"))]
    return files


def package() -> dict:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    # mip resolves relative sources against this file's location
    return {"urls": [[path, path] for path in device_files()], "deps": [], "version": version}


def render() -> str:
    return json.dumps(package(), indent=2) + "\n"


if __name__ == "__main__":
    (ROOT / "package.json").write_text(render())
    sys.stdout.write(f"package.json: {len(package()['urls'])} files\n")

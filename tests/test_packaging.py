"""The firmware package for mip lists exactly the device-side files."""

import json
from pathlib import Path

from tools import mip_package

ROOT = Path(__file__).resolve().parent.parent


def test_package_json_is_up_to_date():
    on_disk = (ROOT / "package.json").read_text()
    assert on_disk == mip_package.render(), "run `python tools/mip_package.py` to regenerate"


def test_every_listed_file_exists_and_lands_under_its_package():
    urls = json.loads((ROOT / "package.json").read_text())["urls"]
    assert urls, "the package lists no files"
    for target, source in urls:
        assert (ROOT / source).is_file(), source
        assert target.split("/")[0] in ("protocols", "hardware", "device")
    listed = {target for target, _ in urls}
    assert "device/main.py" in listed and "protocols/record.py" in listed
    assert not any(path.startswith(("sync_server", "simulators", "tests")) for path in listed)

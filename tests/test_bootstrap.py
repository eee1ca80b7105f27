"""The system bootstrap tells a non-root user the exact command to run."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "bootstrap-system.sh"


def test_a_user_who_is_not_root_gets_the_exact_command(tmp_path):
    # a PATH with the basics but without node, npm and chromium, and an `id`
    # that says we are not root
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "cat"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    (bin_dir / "python3").symlink_to(os.path.realpath(sys.executable))
    (bin_dir / "id").write_text("#!/bin/sh\necho 1000\n")
    (bin_dir / "id").chmod(0o755)
    result = subprocess.run(
        [str(bin_dir / "bash"), str(SCRIPT), "test"],
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "bootstrap: missing system packages: nodejs npm chromium"
    assert lines[-1].strip() == (
        "sudo sh -c 'apt-get update && apt-get install -y nodejs npm chromium'"
    )


def test_nothing_is_asked_when_everything_is_there():
    result = subprocess.run(
        ["bash", str(SCRIPT), "demo"], capture_output=True, text=True, timeout=60, env=os.environ
    )
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""

"""The .deb as scripts/packaging/build-deb.sh makes it, built once per test session for the tests
that install it (tests/test_package.py in a chroot, tests/test_service.py under a booted
systemd): the package as it is, and a rebuilt one of a higher version whose shipped
example config differs."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VERSION = re.findall(r'^version = "(.+)"$', (REPO / "pyproject.toml").read_text(), re.M)[0]
UPGRADE = f"{VERSION}+1"  # dpkg orders it after VERSION
SHIPPED_CHANGE = ("stats_interval_s: 30\n", "stats_interval_s: 15\n")


def build(out: Path, *args: str) -> Path:
    done = subprocess.run([str(REPO / "scripts/packaging/build-deb.sh"), "--out", str(out),
                           *args],
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return Path(done.stdout.strip().splitlines()[-1])


def build_both(out: Path) -> tuple[Path, Path]:
    first = build(out)
    changed = out / "edged.yaml"
    text = (REPO / "systemd/edged.yaml").read_text()
    assert SHIPPED_CHANGE[0] in text
    changed.write_text(text.replace(*SHIPPED_CHANGE))
    return first, build(out, "--version", UPGRADE, "--config", str(changed))

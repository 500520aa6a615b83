"""scripts/build-deb.sh, tested the way a field engineer uses its package: built here,
installed with apt into a fresh Debian 12 root (debootstrap, from the Debian registry),
checked inside (``edged check``, ``systemd-analyze verify``), upgraded to a rebuilt package
with a changed shipped config over a locally edited one, removed, and purged."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.debroot import DebianRoot, cached_tarball
from tests.support.tools import require_root, require_tool

REPO = Path(__file__).resolve().parents[1]
VERSION = re.findall(r'^version = "(.+)"$', (REPO / "pyproject.toml").read_text(), re.M)[0]
UPGRADE = f"{VERSION}+1"  # dpkg orders it after VERSION
LOCAL_EDIT = ("device_id: edge-01 ", "device_id: box-42  ")
SHIPPED_CHANGE = ("stats_interval_s: 30\n", "stats_interval_s: 15\n")
UNIT = "/lib/systemd/system/edged.service"
KEEP_OLD_CONFIG = ["-o", "Dpkg::Options::=--force-confdef",
                   "-o", "Dpkg::Options::=--force-confold"]

pytestmark = [pytest.mark.integration, pytest.mark.package, pytest.mark.timeout(2400)]


def build(out: Path, *args: str) -> Path:
    done = subprocess.run([str(REPO / "scripts/build-deb.sh"), "--out", str(out), *args],
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The package as it is, and a rebuilt one of a higher version whose shipped
    edged.yaml differs."""
    require_tool("dpkg-deb", "dpkg")
    out = tmp_path_factory.mktemp("debs")
    first = build(out)
    changed = out / "edged.yaml"
    text = (REPO / "systemd/edged.yaml").read_text()
    assert SHIPPED_CHANGE[0] in text
    changed.write_text(text.replace(*SHIPPED_CHANGE))
    return first, build(out, "--version", UPGRADE, "--config", str(changed))


@pytest.fixture
def box(tmp_path: Path) -> Iterator[DebianRoot]:
    require_root("chroot, mount")
    tarball = cached_tarball(require_tool("debootstrap", "debootstrap"))
    root = DebianRoot.unpack(tarball, tmp_path / "root")
    try:
        with root.mounted():
            root.run("apt-get", "update", "-qq")
            yield root
    finally:
        root.remove()


def status(box: DebianRoot) -> str:
    done = box.run("dpkg-query", "-W", "-f", "${Status} ${Version}", "edged", check=False)
    return done.stdout.strip() if done.returncode == 0 else "not known"


def test_the_package_installs_upgrades_keeping_the_config_and_purges(
    box: DebianRoot, debs: tuple[Path, Path]
) -> None:
    first, upgrade = debs
    for deb in debs:
        (box.file("/tmp") / deb.name).write_bytes(deb.read_bytes())
    assert first.name == f"edged_{VERSION}_{first.name.rsplit('_', 1)[1]}"

    # Install, as on a box: apt brings Python from the Debian registry.
    box.run("apt-get", "install", "-y", f"/tmp/{first.name}")
    assert status(box) == f"install ok installed {VERSION}"
    check = box.run("edged", "check", "--config", "/etc/edged/edged.yaml")
    assert "valid" in check.stdout and check.stdout.rstrip().endswith("ok"), check.stdout
    assert box.run("/opt/edged/bin/python", "-c", "import sys; print(sys.base_prefix)"
                   ).stdout.strip() == "/usr"  # the box's own Python, not the build's
    verify = box.run("systemd-analyze", "verify", "--man=no", UNIT, check=False)
    assert verify.returncode == 0 and not (verify.stdout + verify.stderr).strip(), verify
    # No systemd runs in a chroot: the service is neither enabled nor started there.
    assert not box.file("/etc/systemd/system/multi-user.target.wants/edged.service").exists()

    # A field engineer's edit, and a spool, then an upgrade whose shipped config changed.
    config = box.file("/etc/edged/edged.yaml")
    config.write_text(config.read_text().replace(*LOCAL_EDIT))
    spool = box.file("/var/lib/private/edged/outbox.sqlite")
    spool.parent.mkdir(parents=True)
    spool.write_bytes(b"results waiting for the broker")
    # Without a network: the postinst makes the new virtualenv from the package alone.
    box.run("apt-get", "install", "-y", *KEEP_OLD_CONFIG, f"/tmp/{upgrade.name}",
            network=False)
    assert status(box) == f"install ok installed {UPGRADE}"
    assert LOCAL_EDIT[1] in config.read_text() and SHIPPED_CHANGE[0] in config.read_text()
    shipped = box.file("/etc/edged/edged.yaml.dpkg-dist").read_text()
    assert SHIPPED_CHANGE[1] in shipped and LOCAL_EDIT[0] in shipped
    assert "box-42" in box.run("edged", "check", "--config", "/etc/edged/edged.yaml").stdout

    # Remove: the program goes, the config and the spool stay.
    box.run("apt-get", "remove", "-y", "edged")
    assert status(box).startswith("deinstall ok config-files")
    assert not box.file("/opt/edged").exists() and not box.file("/usr/bin/edged").exists()
    assert LOCAL_EDIT[1] in config.read_text() and spool.exists()

    # Purge: they go too.
    box.run("apt-get", "purge", "-y", "edged")
    assert status(box) == "not known" or status(box).startswith("unknown ok not-installed")
    assert not box.file("/etc/edged").exists() and not spool.parent.exists()

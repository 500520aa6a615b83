"""scripts/packaging/build-deb.sh, tested the way a field engineer uses its package: built here,
installed with apt into a fresh Debian 12 root (debootstrap, from the Debian registry),
checked inside (``edged check``, ``systemd-analyze verify``), upgraded unattended to a
rebuilt package with a changed shipped config over a locally edited one, removed, and
purged. A chroot runs no systemd: tests/test_service.py boots one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.debroot import DebianRoot, cached_tarball
from tests.support.packages import SHIPPED_CHANGE, UPGRADE, VERSION
from tests.support.tools import require_root, require_tool

LOCAL_EDIT = ("device_id: edge-01 ", "device_id: box-42  ")
UNIT = "/lib/systemd/system/edged.service"
SPOOL = "/var/lib/private/edged/outbox.sqlite"  # under DynamicUser=yes

pytestmark = [pytest.mark.integration, pytest.mark.package, pytest.mark.timeout(2400)]


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
    for deb in debs:
        (box.file("/tmp") / deb.name).write_bytes(deb.read_bytes())
    install_and_check(box, debs[0])
    upgrade_over_a_local_edit(box, debs[1])
    remove_then_purge(box)
    maintainer_scripts_where_systemd_runs(box, debs)


def install_and_check(box: DebianRoot, deb: Path) -> None:
    """Install, as on a box: apt brings Python from the Debian registry."""
    box.run("apt-get", "install", "-y", f"/tmp/{deb.name}")
    assert status(box) == f"install ok installed {VERSION}"
    check = box.run("edged", "check", "--config", "/etc/edged/edged.yaml")
    assert "valid" in check.stdout and check.stdout.rstrip().endswith("ok"), check.stdout
    assert box.run("/opt/edged/bin/python", "-c", "import sys; print(sys.base_prefix)"
                   ).stdout.strip() == "/usr"  # the box's own Python, not the build's
    verify = box.run("systemd-analyze", "verify", "--man=no", UNIT, check=False)
    assert verify.returncode == 0 and not (verify.stdout + verify.stderr).strip(), verify
    # No systemd runs in a chroot, as in an image build: the unit is enabled there (it
    # starts at the image's first boot), not started.
    assert box.file("/etc/systemd/system/multi-user.target.wants/edged.service").is_symlink()
    # The daemon's version is the package's.
    assert box.run("edged", "--version").stdout.split() == ["edged", VERSION]
    # The user and groups the unit runs with, which DynamicUser= needs to exist.
    for group in ("edged", "plugdev", "apex"):
        box.run("getent", "group", group)
    assert box.run("id", "-un", "edged").stdout.strip() == "edged"


def upgrade_over_a_local_edit(box: DebianRoot, deb: Path) -> None:
    """A field engineer's edit, and a spool, then an upgrade whose shipped config changed:
    unattended (no dpkg option, no answer on standard input), it keeps the engineer's
    config and puts the new example beside the old one's place, in /usr/share/edged."""
    config = box.file("/etc/edged/edged.yaml")
    config.write_text(config.read_text().replace(*LOCAL_EDIT))
    spool = box.file(SPOOL)
    spool.parent.mkdir(parents=True)
    spool.write_bytes(b"results waiting for the broker")
    # A password where earlier releases' unit read it: the upgrade moves it along.
    password = box.file("/etc/edged/mqtt-password")
    password.write_text("s3cret\n")
    password.chmod(0o600)
    # Without a network: the postinst makes the new virtualenv from the package alone.
    box.run("apt-get", "install", "-y", f"/tmp/{deb.name}", network=False)
    kept = box.file("/etc/credstore/edged.mqtt-password")
    assert kept.read_text() == "s3cret\n" and kept.stat().st_mode & 0o777 == 0o600
    assert status(box) == f"install ok installed {UPGRADE}"
    assert LOCAL_EDIT[1] in config.read_text() and SHIPPED_CHANGE[0] in config.read_text()
    assert not box.file("/etc/edged/edged.yaml.dpkg-dist").exists()
    shipped = box.file("/usr/share/edged/edged.yaml").read_text()
    assert SHIPPED_CHANGE[1] in shipped and LOCAL_EDIT[0] in shipped
    assert "box-42" in box.run("edged", "check", "--config", "/etc/edged/edged.yaml").stdout
    assert box.run("edged", "--version").stdout.split() == ["edged", UPGRADE]


def remove_then_purge(box: DebianRoot) -> None:
    """Remove: the program goes, the config and the spool stay. Purge: they go too."""
    config, spool = box.file("/etc/edged/edged.yaml"), box.file(SPOOL)
    box.run("apt-get", "remove", "-y", "edged")
    assert status(box).startswith("deinstall ok config-files")
    assert not box.file("/opt/edged").exists() and not box.file("/usr/bin/edged").exists()
    assert LOCAL_EDIT[1] in config.read_text() and spool.exists()
    box.run("apt-get", "purge", "-y", "edged")
    assert status(box) == "not known"
    assert not box.file("/etc/edged").exists() and not spool.parent.exists()


# Where systemd runs (/run/systemd/system exists), what the maintainer scripts ask of it. A
# chroot cannot run systemd, so a stand-in systemctl records the calls (and says edged is
# active); systemd-analyze above checked the unit itself.
FAKE_SYSTEMCTL = """#!/bin/sh
echo "$*" >> /run/systemctl.calls
exit 0
"""
CALLS = {
    "install": ["daemon-reload", "enable edged.service", "start edged.service"],
    "upgrade": ["is-active --quiet edged.service", "stop edged.service",
                "daemon-reload", "start edged.service"],
    "remove": ["stop edged.service", "disable edged.service", "daemon-reload"],
    "purge": ["daemon-reload"],
}


def maintainer_scripts_where_systemd_runs(box: DebianRoot, debs: tuple[Path, Path]) -> None:
    box.file("/run/systemd/system").mkdir(parents=True)
    # Diverted, as Debian moves a file aside: systemctl.distrib keeps the real one.
    box.run("dpkg-divert", "--local", "--rename", "--add", "/usr/bin/systemctl")
    fake = box.file("/usr/bin/systemctl")
    fake.write_text(FAKE_SYSTEMCTL)
    fake.chmod(0o755)
    calls = box.file("/run/systemctl.calls")
    steps = {"install": ["install", "-y", f"/tmp/{debs[0].name}"],
             "upgrade": ["install", "-y", f"/tmp/{debs[1].name}"],
             "remove": ["remove", "-y", "edged"], "purge": ["purge", "-y", "edged"]}
    for step, args in steps.items():
        calls.write_text("")
        box.run("apt-get", *args, network=False)
        assert calls.read_text().splitlines() == CALLS[step], step

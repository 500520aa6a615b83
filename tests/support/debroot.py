"""A fresh Debian 12 root to install edged's .deb into, as on a box: made by debootstrap
(minbase, plus systemd for ``systemd-analyze``) from the Debian registry, cached as a
tarball between runs, unpacked afresh for each test and entered with chroot.

``TEST_CACHE_DIR`` moves the cache (default ~/.cache/edged-tests), ``TEST_DEBIAN_MIRROR``
the mirror (not EDGED_ names: the tests clear those from the environment)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

MIRROR = os.environ.get("TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"
CACHE_MAX_AGE_S = 7 * 24 * 3600  # older roots are made afresh, with that week's packages
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
       "HOME": "/root", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
PROXIES = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("TEST_CACHE_DIR", Path(base) / "edged-tests"))


def _arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()


# A root that boots with systemd as PID 1 under systemd-nspawn (tests/test_service.py), with
# everything installing the .deb and talking to a broker needs, since the booted container
# has no network: the package's dependencies, mosquitto and its clients.
BOOTABLE = ("systemd-sysv", "dbus", "python3", "procps", "ca-certificates", "mosquitto",
            "mosquitto-clients")


def cached_tarball(debootstrap: str, extra: tuple[str, ...] = (), flavour: str = "",
                   arch: str | None = None) -> Path:
    """The cached root tarball, made first if missing or older than a week; ``extra``
    packages go in too, and ``flavour`` names that variant's tarball. A foreign ``arch``
    (arm64 here) needs qemu-user-static's binfmt handler (``emulation.require``): the
    second stage of debootstrap runs the root's own binaries, and takes minutes."""
    name = f"minbase-systemd{'-' + flavour if flavour else ''}"
    tarball = cache_dir() / f"debian-{SUITE}-{name}-{arch or _arch()}.tar"
    if tarball.exists() and time.time() - tarball.stat().st_mtime < CACHE_MAX_AGE_S:
        return tarball
    tarball.parent.mkdir(parents=True, exist_ok=True)
    # Names of this run's own: test runs of other checkouts may share the cache.
    work = Path(tempfile.mkdtemp(prefix="making-", dir=tarball.parent))
    try:
        subprocess.run([debootstrap, "--variant=minbase", *(["--arch", arch] if arch else []),
                        f"--include={','.join(('systemd', *extra))}", SUITE,
                        str(work / "root"), MIRROR], check=True, capture_output=True,
                       text=True, timeout=1800)
        subprocess.run(["tar", "--numeric-owner", "-C", str(work / "root"), "-cf",
                        str(work / "root.tar"), "."], check=True, timeout=600)
        os.replace(work / "root.tar", tarball)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return tarball


class DebianRoot:
    """An unpacked root at ``path``; ``mounted()`` gives it /proc, /sys and /dev."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.env: dict[str, str] = {}
        """Set for every command run inside (``QEMU_CPU``, the CPU an emulator plays)."""
        self._mounts: list[Path] = []

    @classmethod
    def unpack(cls, tarball: Path, path: Path) -> DebianRoot:
        path.mkdir(parents=True)
        subprocess.run(["tar", "--numeric-owner", "-C", str(path), "-xpf", str(tarball)],
                       check=True, timeout=600)
        # Names and certificates as the host has them, as on a box that has a network.
        shutil.copy("/etc/resolv.conf", path / "etc" / "resolv.conf")
        certs = Path("/etc/ssl/certs/ca-certificates.crt")
        if certs.exists():
            (path / "etc/ssl/certs").mkdir(parents=True, exist_ok=True)
            shutil.copy(certs, path / "etc/ssl/certs/ca-certificates.crt")
        return cls(path)

    @contextlib.contextmanager
    def mounted(self) -> Iterator[DebianRoot]:
        try:
            self._mount(["-t", "proc", "proc"], "proc")
            self._mount(["-t", "sysfs", "sysfs"], "sys")
            self._mount(["--rbind", "/dev"], "dev")
            subprocess.run(["mount", "--make-rslave", str(self.path / "dev")], check=True)
            yield self
        finally:
            self.unmount()

    def bind(self, source: Path, where: str) -> None:
        """Bind ``source`` (a file or folder of this machine) over ``where`` in the root
        (made first if missing) until ``unbind`` or unmount: a file over /proc/cpuinfo, or
        a folder at the same path inside as outside."""
        target = self.file(where)
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
        self._mount(["--bind", str(source)], where.lstrip("/"))

    def unbind(self, where: str) -> None:
        target = self.file(where)
        subprocess.run(["umount", str(target)], check=True, timeout=60)
        self._mounts.remove(target)

    def _mount(self, how: list[str], where: str) -> None:
        target = self.path / where
        subprocess.run(["mount", *how, str(target)], check=True, timeout=60)
        self._mounts.append(target)

    def unmount(self) -> None:
        for target in reversed(self._mounts):
            subprocess.run(["umount", "-R", str(target)], check=False, timeout=60)
        still = [m for m in self._mounts if os.path.ismount(m)]
        for target in still:  # busy: detach it, so the root can never be deleted through it
            subprocess.run(["umount", "-R", "-l", str(target)], check=False, timeout=60)
        self._mounts.clear()

    def remove(self) -> None:
        """Delete the root, never through a mount still in it."""
        with open("/proc/mounts") as mounts:
            inside = [line.split()[1] for line in mounts
                      if line.split()[1].startswith(str(self.path) + "/")]
        if inside:
            raise RuntimeError(f"still mounted in {self.path}: {inside}")
        shutil.rmtree(self.path)

    def run(self, *command: str, network: bool = True, check: bool = True,
            timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """``command`` inside the root, as root, with a clean environment; without
        ``network``, in a network namespace of its own (no interface but loopback)."""
        env = dict(ENV, **{k: v for k, v in os.environ.items() if k in PROXIES}, **self.env)
        argv = ["chroot", str(self.path), "env", "-i",
                *(f"{k}={v}" for k, v in env.items()), *command]
        if not network:
            argv = ["unshare", "--net", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(command)} exited {done.returncode}:\n"
                                 f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done

    def file(self, path: str) -> Path:
        return self.path / path.lstrip("/")

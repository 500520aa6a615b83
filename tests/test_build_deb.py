"""scripts/packaging/build-deb.sh's choice of target: what it refuses, and how it names a dependency
that has no wheel for the box (the packages it builds are installed and run by
tests/test_package.py, amd64, and tests/test_package_arm64.py, arm64)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def build(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(REPO / "scripts/packaging/build-deb.sh"), "--out", str(tmp_path),
                           *args], capture_output=True, text=True, timeout=1200, check=False)


def test_a_release_whose_python_is_too_old_is_refused_at_once(tmp_path: Path) -> None:
    done = build(tmp_path, "--arch", "arm64", "--release", "bullseye")
    assert done.returncode == 1
    assert done.stderr == "build-deb: bullseye's Python is older than 3.10, which edged needs\n"


def test_an_unknown_architecture_or_release_says_what_is_known(tmp_path: Path) -> None:
    done = build(tmp_path, "--arch", "riscv64", "--release", "bookworm")
    assert done.returncode == 1
    assert done.stderr == ("build-deb: unknown architecture 'riscv64': say --arch amd64 or "
                           "arm64 (armhf has no runtime)\n")
    done = build(tmp_path, "--arch", "arm64", "--release", "buster")
    assert done.stderr == ("build-deb: unknown release 'buster': say --release bookworm, "
                           "trixie, jammy or noble\n")


@pytest.mark.integration
@pytest.mark.package
def test_armhf_fails_naming_each_dependency_without_a_wheel(tmp_path: Path) -> None:
    """PyPI has no armv7l wheels of NumPy, Pillow, PyYAML, simplejpeg or ai-edge-litert
    (tflite-runtime 2.14 has one): the build says so instead of compiling anything."""
    done = build(tmp_path, "--arch", "armhf", "--release", "bookworm")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("build-deb: no cp311 wheel for armv7l (manylinux, glibc 2.36) of: ")
    named = last.split(" of: ", 1)[1].split()
    for dependency in ("numpy>=1.23", "Pillow>=10.1", "PyYAML>=6.0", "simplejpeg>=1.7",
                       "ai-edge-litert>=1.2"):
        assert dependency in named, last
    assert not any(name.startswith(("pydantic", "structlog")) for name in named), last
    assert not list(tmp_path.glob("*.deb"))

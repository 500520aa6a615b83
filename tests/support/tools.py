"""Tools from outside Python that some tests need (a C compiler, systemd-analyze,
debootstrap, ...). ``scripts/setup.sh test`` installs every one of them (the list is
there, in one place). A test that finds one missing skips on a developer's machine, but
fails under CI (``CI=true``): there a missing tool is a gap in setup.sh, not a reason to
test less. The few skips that mean "this machine cannot have it" go through
``cannot_have`` and are the only ones CI lets through (tests/conftest.py)."""

from __future__ import annotations

import os
import shutil

import pytest

CANNOT_HAVE = "this machine cannot have it: "
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")  # not on a non-root user's PATH


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing(message: str) -> None:
    """Skip the test, or fail it under CI."""
    if under_ci():
        pytest.fail(f"CI=true, and {message}", pytrace=False)
    pytest.skip(message)


def require_tool(name: str, package: str) -> str:
    """The path of the program ``name`` (from Debian package ``package``)."""
    path = shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN))
    if path is None:
        missing(f"{name} is not installed (Debian package {package!r}; "
                "scripts/setup.sh test installs it)")
        raise AssertionError("unreachable")  # skip and fail raise
    return path


def require_root(why: str) -> None:
    if os.geteuid() != 0:
        missing(f"this test runs as root ({why})")


def cannot_have(reason: str) -> None:
    """Skip because this machine cannot have what the test needs, said in the summary;
    the one kind of skip CI accepts."""
    pytest.skip(CANNOT_HAVE + reason)

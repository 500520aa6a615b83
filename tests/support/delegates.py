"""Build the test delegates in tests/delegates/*.c with the system C compiler."""

from __future__ import annotations

import subprocess
from pathlib import Path

SOURCES = Path(__file__).resolve().parents[1] / "delegates"
VARIANTS = ("passthrough", "null", "failing")


def build(out: Path, cc: str = "cc") -> dict[str, Path]:
    """Compile every variant into ``out`` with the C compiler ``cc``; return variant name
    -> shared library path."""
    libs = {}
    for name in VARIANTS:
        lib = out / f"libedged_test_{name}.so"
        subprocess.run(
            [cc, "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror",
             "-o", str(lib), str(SOURCES / f"{name}.c")],
            check=True, capture_output=True, text=True,
        )
        libs[name] = lib
    return libs

"""Build the test delegates in tests/delegates/*.c with the system C compiler."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SOURCES = Path(__file__).resolve().parents[1] / "delegates"
VARIANTS = ("passthrough", "null", "failing")


def build(out: Path) -> dict[str, Path]:
    """Compile every variant into ``out``; return variant name -> shared library path."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError("no C compiler (cc): apt-get install gcc")
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

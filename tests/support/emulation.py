"""Foreign binaries (an arm64 Debian root) run here under qemu-user: the kernel's binfmt_misc
hands each arm64 ELF file to qemu-aarch64-static (Debian's qemu-user-static registers it
with the F flag, so the emulator is opened here and need not be inside the root).

qemu-user gives the guest this machine's /proc/cpuinfo, with x86 fields and no ``CPU
architecture`` line. ai-edge-litert's bundled cpuinfo library then writes through a NULL
pointer as it opens any model with a FULLY_CONNECTED op (SIGSEGV): an artefact of the
emulation, not of arm64 (docs/packaging.md). ``PI4_CPUINFO``, bound over the root's
/proc/cpuinfo, is what a Raspberry Pi 4's kernel gives, and ``PI4_CPU`` its core: with both
the runtime runs as on the board. Times measured under emulation say nothing about an arm64 core."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.tools import cannot_have, require_root, require_tool

BINFMT = Path("/proc/sys/fs/binfmt_misc")
HANDLERS = {"arm64": "qemu-aarch64"}
PI4_CPUINFO = Path(__file__).resolve().parents[1] / "data" / "cpuinfo-pi4-arm64.txt"
PI4_CPU = "cortex-a72"
"""The CPU qemu plays (``QEMU_CPU``). Its default, "max", has every extension a real core
may have and more (SVE, SME, I8MM...): under it, with PI4_CPUINFO, ai-edge-litert 2.3.0
runs but XNNPACK's kernels answer wrong (qemu 7.2); as a Cortex-A72 or A76 they answer
right, as LiteRT's own kernels do under either."""


def require(arch: str) -> None:
    """Make sure ``arch`` binaries run here (mounting binfmt_misc and enabling the handler
    as root, as setup.sh's packages leave them on a machine whose PID 1 is not systemd);
    skip, or fail under CI, when a tool is missing."""
    require_root("binfmt_misc, chroot and mount")
    handler = HANDLERS[arch]
    require_tool(f"{handler}-static", "qemu-user-static")
    update = require_tool("update-binfmts", "binfmt-support")
    if not (BINFMT / "status").exists():
        done = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            cannot_have(f"binfmt_misc cannot be mounted here ({done.stderr.strip()})")
    entry = BINFMT / handler
    if not entry.exists() or not entry.read_text().startswith("enabled"):
        subprocess.run([update, "--enable", handler], capture_output=True, check=False)
    if not entry.exists() or not entry.read_text().startswith("enabled"):
        cannot_have(f"the binfmt handler {handler} cannot be enabled here")
    flags = [line for line in entry.read_text().splitlines() if line.startswith("flags:")]
    if not flags or "F" not in flags[0].split(":", 1)[1]:
        cannot_have(f"the binfmt handler {handler} lacks the F flag: the emulator would "
                    "have to be inside the root")

"""What ``edged devices`` finds on a box: Edge TPUs on PCIe and USB, a Jetson board, the
delegate libraries the dynamic loader can open, and the TFLite runtime in use.

Everything is read from the file system under ``root`` (``/`` on a box, a fake tree in
tests). Nothing is opened that a running edged might be using: libraries are loaded to
see that they resolve and export the delegate ABI, but no delegate is created.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from edged.errors import RuntimeUnavailableError
from edged.runtime.backend import CANDIDATES
from edged.runtime.delegates import DEFAULT_LIBRARIES
from edged.runtime.edgetpu import USB_IDS
from edged.runtime.probe import choose_backend

PLUGIN_SYMBOL = "tflite_plugin_create_delegate"


@dataclass(frozen=True)
class Found:
    """One line of the report: a kind, what it is called, and what was seen."""

    kind: str  # runtime | edgetpu | jetson | library
    name: str
    detail: str


@dataclass(frozen=True)
class Inventory:
    items: tuple[Found, ...] = field(default_factory=tuple)

    def of(self, kind: str) -> list[Found]:
        return [f for f in self.items if f.kind == kind]

    def lines(self) -> list[str]:
        return [f"{f.kind:<9} {f.name:<36} {f.detail}".rstrip() for f in self.items]

    def as_dict(self) -> dict[str, list[dict[str, str]]]:
        out: dict[str, list[dict[str, str]]] = {}
        for f in self.items:
            out.setdefault(f.kind, []).append({"name": f.name, "detail": f.detail})
        return out


def scan(root: Path = Path("/"), libraries: tuple[str, ...] = ()) -> Inventory:
    """Look for accelerators under ``root``; also try ``libraries`` (configured ones)."""
    items = [*_runtimes(), *pcie_edgetpus(root), *usb_edgetpus(root), *_jetson(root)]
    if not any(f.kind == "edgetpu" for f in items):
        items.append(Found("edgetpu", "none", "no /dev/apex_N and no Coral USB IDs"))
    if not any(f.kind == "jetson" for f in items):
        items.append(Found("jetson", "none", "no /etc/nv_tegra_release or Jetson model"))
    wanted = dict.fromkeys([*DEFAULT_LIBRARIES.values(), *libraries])
    items += [library_status(lib) for lib in wanted]
    return Inventory(tuple(items))


def _runtimes() -> list[Found]:
    try:
        choice = choose_backend()
    except RuntimeUnavailableError as exc:
        return [Found("runtime", "none", str(exc))]
    found = []
    for dist, _module in CANDIDATES:
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
        failed = [a.detail for a in choice.attempts if not a.ok and a.runtime.startswith(dist)]
        note = ("in use" if dist == choice.backend.name else
                f"installed, but {failed[0]}" if failed else "installed")
        found.append(Found("runtime", f"{dist} {version}", note))
    return found


def pcie_edgetpus(root: Path) -> list[Found]:
    """PCIe and M.2 Edge TPUs: the apex driver makes /dev/apex_N; libedgetpu calls it pci:N."""
    nodes = sorted((root / "dev").glob("apex_*"), key=lambda p: _number(p.name))
    return [Found("edgetpu", f"pci:{i}", f"/dev/{n.name}") for i, n in enumerate(nodes)]


def usb_edgetpus(root: Path) -> list[Found]:
    """USB accelerators by vendor:product, before (1a6e:089a) and after (18d1:9302) their
    firmware is loaded. ``usb:N`` numbers them in bus order, which is libedgetpu's."""
    found: list[Found] = []
    base = root / "sys" / "bus" / "usb" / "devices"
    for dev in sorted(base.glob("*"), key=lambda p: p.name) if base.is_dir() else []:
        vendor, product = _read(dev / "idVendor"), _read(dev / "idProduct")
        state = USB_IDS.get((vendor or "", product or ""))
        if state is None:
            continue
        speed = _read(dev / "speed")
        slow = " - on a USB 2 port: use USB 3 for full speed" if speed == "480" else ""
        found.append(Found("edgetpu", f"usb:{len(found)}",
                           f"{vendor}:{product} at {dev.name}, {state}{slow}"))
    return found


def _jetson(root: Path) -> list[Found]:
    release = _read(root / "etc" / "nv_tegra_release")
    model = _read(root / "proc" / "device-tree" / "model")
    if model is not None:
        model = model.rstrip("\0")
    if release is None and not (model and "jetson" in model.lower()):
        return []
    # "# R36 (release), REVISION: 3.0, GCID: ..., BOARD: generic, EABI: aarch64, ..."
    l4t = ""
    if release:
        parts = [p.strip() for p in release.splitlines()[0].lstrip("# ").split(",")]
        l4t = "L4T " + ", ".join(parts[:2])
    return [Found("jetson", model or "NVIDIA Tegra board", l4t)]


def library_status(library: str) -> Found:
    """Whether the loader can open ``library`` and it exports the external delegate ABI."""
    try:
        lib = ctypes.CDLL(library)
    except OSError as exc:
        return Found("library", library, f"cannot be loaded: {str(exc).strip()}")
    if not hasattr(lib, PLUGIN_SYMBOL):
        return Found("library", library, f"loads, but does not export {PLUGIN_SYMBOL}")
    return Found("library", library, "loads (external delegate ABI)")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return None


def _number(name: str) -> int:
    tail = name.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 1 << 30

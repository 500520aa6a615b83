"""What edged's systemd unit does to the files edged opens, read from the unit file itself
and its drop-ins: the user and groups the service runs as, and the paths its sandbox hides
or makes read-only (systemd.exec(5): DynamicUser=, SupplementaryGroups=, ProtectSystem=,
ProtectHome=, PrivateTmp=, ReadWritePaths=, InaccessiblePaths=, StateDirectory= ...).

Pure: ``parse`` takes the texts; ``find`` reads them from the places systemd looks.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

UNIT = "edged.service"
# Where systemd looks for a system unit, most important first (systemd.unit(5)).
UNIT_DIRS = (Path("/etc/systemd/system"), Path("/run/systemd/system"),
             Path("/usr/local/lib/systemd/system"), Path("/usr/lib/systemd/system"),
             Path("/lib/systemd/system"))
# The *Directory= settings and the folder each one's names live under.
MANAGED = {"StateDirectory": "/var/lib", "RuntimeDirectory": "/run",
           "CacheDirectory": "/var/cache", "LogsDirectory": "/var/log",
           "ConfigurationDirectory": "/etc"}
LISTS = ("SupplementaryGroups", "ReadWritePaths", "ReadOnlyPaths", "InaccessiblePaths",
         *MANAGED)
HOME_DIRS = ("/home", "/root", "/run/user")
TMP_DIRS = ("/tmp", "/var/tmp")


@dataclass(frozen=True)
class Sandbox:
    """The parts of a unit's [Service] section that decide what edged can open."""

    source: str
    name: str = "edged"
    user: str | None = None
    dynamic_user: bool = False
    groups: tuple[str, ...] = ()
    protect_system: str = "no"
    protect_home: str = "no"
    private_tmp: bool = False
    read_write: tuple[str, ...] = ()
    read_only: tuple[str, ...] = ()
    inaccessible: tuple[str, ...] = ()
    managed: tuple[str, ...] = ()
    """Absolute paths of the unit's StateDirectory=, RuntimeDirectory= ... (writable)."""
    config: str | None = None
    """The file ExecStart= passes as --config."""
    settings: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def account(self) -> str:
        """The user name the service runs as (DynamicUser= names it after the unit)."""
        return self.user or (self.name if self.dynamic_user else "root")

    def hidden(self, path: str) -> str | None:
        """Why the service cannot see ``path`` at all, or None."""
        for prefix in self.inaccessible:
            if _under(path, prefix):
                return f"InaccessiblePaths={prefix} hides it"
        if self.protect_home in ("yes", "tmpfs", "true", "1") and any(
                _under(path, d) for d in HOME_DIRS):
            return f"ProtectHome={self.protect_home} hides /home, /root and /run/user"
        if self.private_tmp and any(_under(path, d) for d in TMP_DIRS):
            return "PrivateTmp=yes gives the service a /tmp and /var/tmp of its own, empty"
        return None

    def read_only_reason(self, path: str) -> str | None:
        """Why the service cannot write under ``path``, or None when it may (permissions
        aside)."""
        if any(_under(path, p) for p in (*self.read_write, *self.managed)):
            return None
        for prefix in self.read_only:
            if _under(path, prefix):
                return f"ReadOnlyPaths={prefix} makes it read-only"
        system = self.protect_system
        if system == "strict":
            return "ProtectSystem=strict makes every path read-only but its *Directory= ones"
        if system in ("full", "yes", "true", "1") and any(
                _under(path, d) for d in ("/usr", "/boot", "/efi")):
            return f"ProtectSystem={system} makes /usr and /boot read-only"
        if system == "full" and _under(path, "/etc"):
            return "ProtectSystem=full makes /etc read-only"
        if self.protect_home == "read-only" and any(_under(path, d) for d in HOME_DIRS):
            return "ProtectHome=read-only makes /home, /root and /run/user read-only"
        return None

    def managed_by_systemd(self, path: str) -> bool:
        """Under a *Directory= that systemd makes and gives to the service at start."""
        return any(_under(path, p) for p in self.managed)

    def describe(self) -> str:
        groups = f", groups {' '.join(self.groups)}" if self.groups else ""
        kind = "DynamicUser=yes" if self.dynamic_user else "User="
        return (f"{self.source}: runs as {self.account} ({kind}{groups}); "
                f"ProtectSystem={self.protect_system}, ProtectHome={self.protect_home}, "
                f"PrivateTmp={'yes' if self.private_tmp else 'no'}")


def _under(path: str, prefix: str) -> bool:
    prefix = prefix.rstrip("/") or "/"
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


def _yes(value: str) -> bool:
    return value.strip().lower() in ("yes", "true", "1", "on")


def _service_lines(text: str) -> list[tuple[str, str]]:
    """The [Service] section's assignments in order, continuation lines joined."""
    out: list[tuple[str, str]] = []
    section = ""
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if section == "Service" and "=" in line:
            key, value = line.split("=", 1)
            out.append((key.strip(), value.strip()))
    return out


def parse(texts: Sequence[tuple[str, str]]) -> Sandbox:
    """The sandbox of a unit given as (name, text) pairs: the unit file, then its drop-ins
    in the order systemd applies them. An empty assignment empties a list, as in systemd."""
    single: dict[str, str] = {}
    lists: dict[str, list[str]] = {key: [] for key in LISTS}
    for _, text in texts:
        for key, value in _service_lines(text):
            if key in lists:
                if not value:
                    lists[key] = []
                else:
                    lists[key].extend(shlex.split(value))
            else:
                single[key] = value
    managed = tuple(f"{MANAGED[key]}/{name.split(':')[0]}" for key in MANAGED
                    for name in lists[key])
    if _yes(single.get("DynamicUser", "no")):
        managed += tuple(f"/var/lib/private/{name.split(':')[0]}"
                         for name in lists["StateDirectory"])
    protect_system = single.get("ProtectSystem", "no").lower()
    protect_home = single.get("ProtectHome", "no").lower()
    return Sandbox(
        source=texts[0][0] if texts else UNIT,
        user=single.get("User") or None,
        dynamic_user=_yes(single.get("DynamicUser", "no")),
        groups=tuple(lists["SupplementaryGroups"]),
        protect_system="yes" if protect_system in ("true", "1", "on") else protect_system,
        protect_home="yes" if protect_home in ("true", "1", "on") else protect_home,
        private_tmp=_yes(single.get("PrivateTmp", "no")) or _yes(
            single.get("DynamicUser", "no")),  # DynamicUser= implies PrivateTmp=
        read_write=tuple(_paths(lists["ReadWritePaths"])),
        read_only=tuple(_paths(lists["ReadOnlyPaths"])),
        inaccessible=tuple(_paths(lists["InaccessiblePaths"])),
        managed=managed,
        config=_config_of(single.get("ExecStart", "")),
        settings=single,
    )


def _paths(values: list[str]) -> list[str]:
    # "-" (ignore if missing) and "+" (relative to RootDirectory=) prefixes.
    return [v.lstrip("-+") for v in values]


def _config_of(exec_start: str) -> str | None:
    try:
        words = shlex.split(exec_start.lstrip("-@:+!"))
    except ValueError:
        return None
    for i, word in enumerate(words):
        if word in ("--config", "-c") and i + 1 < len(words):
            return words[i + 1]
        if word.startswith("--config="):
            return word.split("=", 1)[1]
    return None


def find(unit: Path | None = None) -> Sandbox | None:
    """The installed unit (or ``unit``), with its drop-ins; None when there is none."""
    if unit is None:
        unit = next((d / UNIT for d in UNIT_DIRS if (d / UNIT).is_file()), None)
        if unit is None:
            return None
    texts = [(str(unit), unit.read_text())]
    dropins: dict[str, Path] = {}
    for directory in reversed(UNIT_DIRS):  # a drop-in in /etc overrides one of its name
        for conf in sorted((directory / f"{UNIT}.d").glob("*.conf")):
            dropins[conf.name] = conf
    texts += [(str(p), p.read_text()) for _, p in sorted(dropins.items())]
    return parse(texts)

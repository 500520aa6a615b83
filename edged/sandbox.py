"""``edged check`` as the service sees the files: every file the daemon opens (the config,
models, labels, delegate libraries, the password and TLS files, the spool's folder) is
looked at through the unit's sandbox (edged.unitfile) and opened by a child process that
runs as the unit's user, with the groups the service gets. Each file that the sandbox hides or
that the user cannot open is named, with the fix.

Run as root only: only root can take another user's identity to try.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from edged.config import Settings
from edged.unitfile import Sandbox

DYNAMIC_UIDS = range(61184, 65520)  # where systemd allocates DynamicUser= ids
PROBE = """
import json, os, sys
out = []
for path, kind in json.load(sys.stdin):
    try:
        if kind == "write":
            if not os.path.isdir(path):
                out.append("No such file or directory")
                continue
            ok = os.access(path, os.W_OK | os.X_OK)
            out.append(None if ok else "Permission denied")
        else:
            with open(path, "rb"):
                pass
            out.append(None)
    except OSError as exc:
        out.append(exc.strerror or str(exc))
json.dump(out, sys.stdout)
"""


@dataclass(frozen=True)
class Need:
    """A file the daemon opens: ``kind`` is "read", or "write" for a folder it writes in."""

    path: Path
    what: str
    kind: str = "read"


@dataclass(frozen=True)
class Identity:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    missing_groups: tuple[str, ...] = ()


def needs(settings: Settings, config: Path) -> list[Need]:
    """Every file the daemon opens for ``settings`` read from ``config``."""
    found = [Need(config.resolve(), "the config")]
    for name, model in settings.models.items():
        for key in ("path", "labels", "keypoint_labels", "fallback_model"):
            path = getattr(model, key)
            if path is not None:
                found.append(Need(Path(path), f"models.{name}.{key}"))
        if model.library and "/" in model.library:
            found.append(Need(Path(model.library), f"models.{name}.library"))
    mqtt = settings.mqtt
    if mqtt.password_file is not None:
        found.append(Need(mqtt.password_file, "mqtt.password_file"))
    if mqtt.tls is not None:
        for key in ("ca_file", "cert_file", "key_file"):
            path = getattr(mqtt.tls, key)
            if path is not None:
                found.append(Need(Path(path), f"mqtt.tls.{key}"))
    frigate = settings.frigate
    if frigate is not None:
        for endpoint in frigate.endpoints:
            if endpoint.startswith("ipc://"):
                found.append(Need(Path(endpoint[len("ipc://"):]).parent,
                                  f"frigate endpoint {endpoint}'s folder", "write"))
        if frigate.uploads.enabled:
            found.append(Need(frigate.uploads.dir, "frigate.uploads.dir", "write"))
    spool = settings.outbox.spool_path
    if spool is not None:
        found.append(Need(spool.parent, "outbox.spool_path's folder", "write"))
        if spool.exists():
            found.append(Need(spool, "outbox.spool_path"))
    return found


def identity(sandbox: Sandbox) -> Identity:
    """The uid and groups the unit runs edged with: the user's (DynamicUser= takes a static
    user of the unit's name when there is one, with its group memberships, as systemd 252
    was seen to do; otherwise it makes one up, unprivileged, in no group) and the unit's
    SupplementaryGroups=."""
    gids: list[int] = []
    missing: list[str] = []
    for group in sandbox.groups:
        try:
            gids.append(grp.getgrnam(group).gr_gid)
        except KeyError:
            missing.append(group)
    try:
        entry = pwd.getpwnam(sandbox.account)
        uid, gid = entry.pw_uid, entry.pw_gid
        gids += [g for g in os.getgrouplist(entry.pw_name, gid) if g not in gids]
    except KeyError:
        uid = gid = _unused_uid()
    return Identity(sandbox.account, uid, gid, tuple(gids), tuple(missing))


def _unused_uid() -> int:
    for uid in reversed(DYNAMIC_UIDS):
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
    return 65534


def problems(sandbox: Sandbox, wanted: list[Need]) -> list[str]:
    """One line per file the service could not open, each with its fix."""
    who = identity(sandbox)
    found = [f"{sandbox.source}: SupplementaryGroups= names {g}, which does not exist: the "
             f"unit cannot start (216/GROUP); groupadd --system {g}" for g in who.missing_groups]
    to_open: list[Need] = []
    for need in wanted:
        real = os.path.realpath(need.path)
        shown = str(need.path) if real == str(need.path) else f"{need.path} (-> {real})"
        why = sandbox.hidden(real)
        if why:
            found.append(f"{need.what}: {shown} is hidden from the service: {why}; move it "
                         f"under /etc/edged or /opt, or another folder the unit shows")
            continue
        if need.kind == "write":
            why = sandbox.read_only_reason(real)
            if why:
                found.append(f"{need.what}: the service cannot write in {shown}: {why}; use "
                             f"a folder under /var/lib/edged (the unit's StateDirectory) or "
                             f"add ReadWritePaths={real} in a drop-in (systemctl edit edged)")
                continue
        if sandbox.managed_by_systemd(real):
            # systemd makes it and gives it to the service at each start, behind folders
            # only the service's mount namespace opens (/var/lib/private is 0700 root).
            continue
        to_open.append(need)
    results = _open_as(who, [(str(n.path), n.kind) for n in to_open])
    for need, error in zip(to_open, results, strict=True):
        if error is not None:
            found.append(f"{need.what}: the service (user {who.name}) cannot "
                         f"{'write in' if need.kind == 'write' else 'read'} {need.path}: "
                         f"{error}; {_fix(need, who)}")
    return found


def _open_as(who: Identity, items: list[tuple[str, str]]) -> list[str | None]:
    if not items:
        return []
    # The base interpreter (outside any venv, which the user may not reach), or the
    # system's: the probe needs nothing but the standard library.
    error = ""
    for python in dict.fromkeys((os.path.realpath(sys.executable), "/usr/bin/python3")):
        try:
            done = subprocess.run(
                [python, "-I", "-S", "-c", PROBE], input=json.dumps(items),
                capture_output=True, text=True, timeout=30, user=who.uid, group=who.gid,
                extra_groups=list(who.groups), cwd="/",
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
            results = json.loads(done.stdout)
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            error = f"could not try as uid {who.uid}: {exc}"
            continue
        return [r if isinstance(r, str) else None for r in results]
    return [error] * len(items)


def _fix(need: Need, who: Identity) -> str:
    """What to run so the service's user can open ``need``."""
    path = need.path
    try:
        st = path.stat()
    except OSError:
        return f"check that {path} exists"
    blocked = _closed_folder(path, who)
    if blocked is not None:
        return f"the folder {blocked} lets no one but its owner in: chmod o+x {blocked}"
    mode = stat.S_IMODE(st.st_mode)
    owner = f"mode {mode:04o}, owner {_owner(st)}"
    try:
        group = grp.getgrgid(who.gid).gr_name
    except KeyError:  # a dynamic user made up at start: no group to give the file to
        group = None
    if need.kind == "write":
        return f"({owner}) put it under the unit's StateDirectory, /var/lib/{who.name}"
    if group is None:
        return f"({owner}) chmod a+r {path}"
    return (f"({owner}) chgrp {group} {path} && chmod g+r {path} (a secret: only the "
            f"service reads it), or chmod a+r {path}")


def _closed_folder(path: Path, who: Identity) -> Path | None:
    """The first parent folder that the user cannot enter (no x for others), if any."""
    for parent in reversed(path.parents):
        try:
            st = parent.stat()
        except OSError:
            return None
        if st.st_uid == who.uid:
            continue
        bit = stat.S_IXGRP if (st.st_gid == who.gid or st.st_gid in who.groups) else stat.S_IXOTH
        if not st.st_mode & bit:
            return parent
    return None


def _owner(st: os.stat_result) -> str:
    try:
        user = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return f"{user}:{group}"

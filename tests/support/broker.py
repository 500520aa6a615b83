"""A private mosquitto on a free loopback port, which a test can stop and start again."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if found is None:
        raise RuntimeError("mosquitto is not installed: apt-get install mosquitto")
    return found


@dataclass(frozen=True)
class TlsListener:
    cert: Path
    key: Path
    client_ca: Path | None = None
    """When set, clients must present a certificate signed by this CA."""


def passwd_file(path: Path, users: dict[str, str]) -> Path:
    """A mosquitto password file made with ``mosquitto_passwd`` (hashed, as in the field)."""
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        raise RuntimeError("mosquitto_passwd is missing: apt-get install mosquitto")
    path.write_text("")
    for user, password in users.items():
        subprocess.run([tool, "-b", str(path), user, password], check=True,
                       capture_output=True)
    path.chmod(0o600)
    return path


class Broker:
    """mosquitto listening on 127.0.0.1 only, with its config and log in ``workdir``.

    The defaults give an open plain listener with no persistence. ``tls`` adds a TLS
    listener on ``tls_port`` (the server's certificate, key and the CA that clients must
    present certificates from, if any); ``password_file`` and ``acl_file`` turn on
    authentication and authorisation; ``persistence`` keeps sessions and queued messages
    across a restart, saved after every change so even ``kill -9`` loses (almost) nothing.
    ``extra`` lines are appended to the config as they are.
    """

    def __init__(self, workdir: Path, port: int | None = None, *,
                 tls: TlsListener | None = None, password_file: Path | None = None,
                 acl_file: Path | None = None, persistence: bool = False,
                 extra: Sequence[str] = (), command: Sequence[str] = ()) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.tls_port = free_port() if tls is not None else None
        self.workdir = workdir
        self.command = tuple(command)
        """How to start mosquitto, if not as this machine's (a root's: ``chroot ROOT
        /usr/sbin/mosquitto``, with ``workdir`` at the same path inside)."""
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        lines = ["per_listener_settings false", f"listener {self.port} 127.0.0.1"]
        if tls is not None:
            lines += [f"listener {self.tls_port} 127.0.0.1", f"certfile {tls.cert}",
                      f"keyfile {tls.key}"]
            if tls.client_ca is not None:
                lines += [f"cafile {tls.client_ca}", "require_certificate true"]
        lines.append(f"allow_anonymous {'false' if password_file else 'true'}")
        if password_file is not None:
            lines.append(f"password_file {password_file}")
        if acl_file is not None:
            lines.append(f"acl_file {acl_file}")
        if persistence:
            lines += ["persistence true", f"persistence_location {workdir}/",
                      "autosave_interval 1", "autosave_on_changes true"]
        else:
            lines.append("persistence false")
        if os.geteuid() == 0 and (tls or password_file or acl_file or persistence):
            # Started as root, mosquitto becomes user "mosquitto", who cannot read a test's
            # private folder (its certificates, password file) or write its database there.
            lines.append("user root")
        lines += ["set_tcp_nodelay true", f"log_dest file {self.log}",
                  "log_type error", "log_type warning", "log_type notice", *extra]
        self.conf.write_text("\n".join(lines) + "\n")
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [*(self.command or (mosquitto_binary(),)), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None

    def kill(self) -> None:
        """``kill -9``: no goodbye to anyone, nothing saved since the last autosave."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(5)
        self._proc = None

    def pause(self) -> None:
        """SIGSTOP: the sockets stay open but nothing answers, like a hung broker or a
        dead network path; only keep-alive notices."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

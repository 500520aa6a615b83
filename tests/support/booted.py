"""A Debian root booted with systemd as its PID 1 (systemd-nspawn), as a box boots: the
package's unit runs under a real service manager, with its sandbox, credentials,
notifications and watchdog. The container has its own network namespace (loopback only), so
its mosquitto is clear of the host's, and it reaches nothing outside.

nspawn needs ``--register=no`` and ``--keep-unit`` here (no machined, PID 1 is not systemd);
commands run inside through ``nsenter`` into the container's PID 1, with a clean
environment (see shared/FACTS.md, "A booted systemd")."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.support.debroot import ENV


class BootedRoot:
    """``systemd-nspawn --boot`` of the root at ``path``; ``run`` executes inside."""

    def __init__(self, path: Path, nspawn: str, log: Path) -> None:
        self.path = path
        self.nspawn = nspawn
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.leader = 0

    def boot(self, timeout: float = 120) -> None:
        env = dict(os.environ, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY="1")
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [self.nspawn, "-D", str(self.path), "--boot", "--register=no", "--keep-unit",
                 "--private-network", "--console=pipe", "--quiet"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                start_new_session=True)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            assert self.proc.poll() is None, f"systemd-nspawn exited:\n{self.console()}"
            self.leader = self.leader or self._find_leader()
            if self.leader:
                state = self.run("systemctl", "is-system-running", check=False).stdout.strip()
                if state in ("running", "degraded"):
                    return
            time.sleep(0.3)
        raise AssertionError(f"the container did not boot in {timeout} s:\n{self.console()}")

    def _find_leader(self) -> int:
        """The host's PID of the container's PID 1: the child of nspawn whose PID in its
        own namespace is 1."""
        assert self.proc is not None
        children: list[str] = []
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*/children"):
            children += task.read_text().split()
        for child in children:
            try:
                with open(f"/proc/{child}/status") as status:
                    nspid = next(line for line in status if line.startswith("NSpid:"))
            except (OSError, StopIteration):
                continue
            if nspid.split()[-1] == "1":
                return int(child)
        return 0

    def run(self, *command: str, check: bool = True, timeout: float = 300,
            stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
        """``command`` inside the container, as root, in a clean environment; standard input
        is empty unless given, as for an unattended run."""
        argv = ["nsenter", "-t", str(self.leader), "-a", "env", "-i",
                *(f"{k}={v}" for k, v in ENV.items() if k != "DEBIAN_FRONTEND"), *command]
        done = subprocess.run(argv, capture_output=True, timeout=timeout,
                              input=stdin if stdin is not None else b"")
        result = subprocess.CompletedProcess(
            argv, done.returncode, done.stdout.decode(errors="replace"),
            done.stderr.decode(errors="replace"))
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(command)} exited {done.returncode}:\n"
                                 f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def spawn(self, *command: str) -> subprocess.Popen[bytes]:
        """``command`` inside the container in the background; its output is piped."""
        argv = ["nsenter", "-t", str(self.leader), "-a", "env", "-i",
                *(f"{k}={v}" for k, v in ENV.items() if k != "DEBIAN_FRONTEND"), *command]
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        """``systemctl show``'s properties of ``unit``."""
        out = self.run("systemctl", "show", unit, "-p", ",".join(properties)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def file(self, path: str) -> Path:
        return self.path / path.lstrip("/")

    def console(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def shutdown(self, timeout: float = 60) -> None:
        """Power off as a box does; kill the container if it does not go in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.leader:
            # SIGRTMIN+4 asks systemd for a clean poweroff, as `systemctl poweroff` would.
            os.kill(self.leader, signal.SIGRTMIN + 4)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

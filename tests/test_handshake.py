"""The reload handshake (edged.handshake, the unit's ExecReload): ``edged reload --pid``
against the real daemon returns once the new config serves, and fails with edged's reason
when the config is refused; the running config serves on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edged import handshake
from tests.support.broker import Broker
from tests.support.daemon import REPO, Edged, digits_config
from tests.support.probe import Probe

STATUS = "edged/test-box/status"


def ask_reload(pid: int, runtime: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGED_")}
    return subprocess.run([sys.executable, "-m", "edged", "reload", "--pid", str(pid),
                           "--timeout", "60"], capture_output=True, text=True, cwd=REPO,
                          env={**env, "RUNTIME_DIRECTORY": str(runtime)}, timeout=90)


@pytest.mark.integration
def test_reload_returns_once_served_and_fails_when_refused(
        tmp_path: Path, broker: Broker, daemons: list[Edged],
        monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir()
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(runtime))
    config = digits_config(broker.port)
    edged = Edged(tmp_path, config)
    daemons.append(edged)
    probe = Probe(broker.port)
    try:
        probe.subscribe(STATUS, "replies/#")
        edged.start()
        edged.wait_online(probe, STATUS)
        assert edged.proc is not None
        pid = edged.proc.pid

        config["routes"][0]["subscribe"] = "cameras/+/frame"
        edged.config_path.write_text(yaml.safe_dump(config))
        done = ask_reload(pid, runtime)
        assert done.returncode == 0, done.stderr + edged.log()
        assert f"reloaded (pid {pid})" in done.stdout
        # Returned once served: the new route answers the very next request.
        probe.publish("cameras/a/frame", b"\0" * 64, response_topic="replies/a")
        assert "result" in probe.next(timeout=20, topic="replies/a").json()

        config["routes"][0]["model"] = "no-such-model"
        edged.config_path.write_text(yaml.safe_dump(config))
        done = ask_reload(pid, runtime)
        assert done.returncode == 1
        assert "reload refused; the running configuration keeps serving" in done.stderr
        assert "no-such-model" in done.stderr
        probe.publish("cameras/a/frame", b"\0" * 64, response_topic="replies/a")
        assert "result" in probe.next(timeout=20, topic="replies/a").json()
    finally:
        probe.close()


def test_an_earlier_outcome_is_not_taken_for_this_reload(tmp_path: Path) -> None:
    """An outcome that began before the ask is another reload's: it waits for its own."""
    old = handshake.Outcome(4242, handshake.monotonic_usec() - 1, True)
    handshake.write(tmp_path, old)
    sent: list[tuple[int, int]] = []

    def kill(pid: int, sig: int) -> None:
        sent.append((pid, sig))
        if sig == signal.SIGHUP:  # the daemon answers this reload, refusing it
            handshake.write(tmp_path, handshake.Outcome(
                pid, handshake.monotonic_usec(), False, "bad route"))

    with pytest.raises(handshake.ReloadFailed, match="bad route"):
        handshake.ask(4242, tmp_path, timeout_s=5, kill=kill)
    assert sent[0] == (4242, signal.SIGHUP)


def test_no_outcome_in_time_and_a_gone_process_are_failures(tmp_path: Path) -> None:
    with pytest.raises(handshake.ReloadFailed, match="did not report"):
        handshake.ask(4242, tmp_path, timeout_s=0.3, kill=lambda pid, sig: None)

    def gone(pid: int, sig: int) -> None:
        if sig == 0:
            raise ProcessLookupError

    with pytest.raises(handshake.ReloadFailed, match="exited during the reload"):
        handshake.ask(4242, tmp_path, timeout_s=5, kill=gone)

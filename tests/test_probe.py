"""The runtime probe (edged/runtime/probe.py): each installed runtime tried in a throw-away
child process on the bundled model; one that crashes, hangs, fails or answers wrong is
passed over with the reason, and edged itself lives on. Stand-ins for a runtime that fails
in native code are in tests/support/runtimes/; the real crash (ai-edge-litert under
qemu-user) is in tests/test_package_arm64.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edged.errors import RuntimeUnavailableError
from edged.runtime.backend import select_backend
from edged.runtime.probe import PROBE_MODEL, SAMPLES, choose_backend, probe, run_in_child

REPO = Path(__file__).resolve().parents[1]
CRASHING = ("crashing-runtime", "tests.support.runtimes.crashing")
HANGING = ("hanging-runtime", "tests.support.runtimes.hanging")
WRONG = ("wrong-runtime", "tests.support.runtimes.wrong")
MISSING = ("missing-runtime", "no_such_runtime_module.interpreter")


def installed() -> tuple[str, str]:
    """The real runtime of this environment (ai-edge-litert, or tflite-runtime in the
    legacy one), as a candidate."""
    backend = select_backend()
    return backend.name, backend.interpreter_class.__module__


def test_the_bundled_probe_model_is_the_digits_model() -> None:
    assert PROBE_MODEL.read_bytes() == (REPO / "models/digits_int8.tflite").read_bytes()
    assert [label for label, _ in SAMPLES] == [7, 6, 3]
    assert all(len(bytes.fromhex(data)) == 64 for _, data in SAMPLES)


@pytest.mark.legacy
def test_the_installed_runtime_passes_the_probe() -> None:
    attempt = probe(*installed())
    assert attempt.ok, attempt.detail
    assert attempt.runtime.startswith(select_backend().describe())
    assert "classified 3 digits right" in attempt.detail


@pytest.mark.legacy
def test_a_crashing_runtime_is_passed_over_for_the_next_and_says_why() -> None:
    choice = choose_backend(candidates=(CRASHING, installed()))
    assert choice.backend.name == installed()[0]
    assert choice.fell_back
    first, second = choice.attempts
    assert not first.ok and first.detail == "crashed (SIGSEGV) loading or running the probe model"
    assert second.ok
    assert "fallen back to" in choice.how
    lines = choice.lines()
    assert lines[0].startswith(f"runtime  {select_backend().describe()} (fallen back to")
    assert lines[1].startswith("probe    crashing-runtime (version unknown): crashed (SIGSEGV)")


@pytest.mark.legacy
def test_a_runtime_that_answers_wrong_is_passed_over() -> None:
    choice = choose_backend(candidates=(WRONG, installed()))
    assert choice.backend.name == installed()[0]
    wrong = choice.attempts[0]
    assert not wrong.ok and "ran the probe model but answered" in wrong.detail
    assert wrong.detail.endswith("where [7, 6, 3] is right")


def test_a_hanging_runtime_is_killed_after_the_timeout() -> None:
    attempt = probe(*HANGING, timeout_s=5)
    assert not attempt.ok
    assert attempt.detail == ("hung loading or running the probe model: no answer within 5 s; "
                              "child process killed")


def test_a_runtime_that_raises_names_the_error() -> None:
    done = run_in_child("tests.support.runtimes.crashing", REPO / "no-such-model.tflite")
    assert done.signal_name == "SIGSEGV"
    attempt = probe("missing", "no_such_runtime_module.interpreter")
    assert not attempt.ok
    assert attempt.detail == ("failed on the probe model: ModuleNotFoundError: No module named "
                              "'no_such_runtime_module'")


def test_when_no_runtime_runs_the_error_names_each_and_why() -> None:
    with pytest.raises(RuntimeUnavailableError) as caught:
        choose_backend(candidates=(CRASHING, WRONG))
    text = str(caught.value)
    assert text.startswith("no installed TFLite runtime runs on this box: ")
    assert "crashing-runtime (version unknown) crashed (SIGSEGV)" in text
    assert "wrong-runtime (version unknown) ran the probe model but answered" in text


def test_a_runtime_asked_for_that_fails_the_probe_is_an_error_not_a_crash() -> None:
    with pytest.raises(RuntimeUnavailableError, match=r"crashing-runtime \(version unknown\), "
                       r"asked for with --runtime, does not run on this box: crashed \(SIGSEGV\)"):
        choose_backend("crashing-runtime", candidates=(CRASHING, installed()))


@pytest.mark.legacy
def test_one_runtime_installed_is_used_without_a_probe() -> None:
    choice = choose_backend(candidates=(MISSING, installed()))
    assert choice.backend.name == installed()[0]
    assert choice.attempts == () and choice.how == "the only runtime installed"
    assert choice.lines() == [f"runtime  {choice.backend.describe()} (the only runtime "
                              "installed)"]


@pytest.mark.legacy
def test_edged_check_reports_the_runtime_and_how_it_was_chosen(tmp_path: Path) -> None:
    config = tmp_path / "edged.yaml"
    config.write_text((REPO / "systemd/edged.yaml").read_text().replace(
        "/opt/edged/models/", f"{REPO}/models/"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGED_")}
    done = subprocess.run([sys.executable, "-m", "edged", "check", "--no-broker", "--config",
                           str(config)], capture_output=True, text=True, timeout=300, env=env,
                          cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    runtime = [line for line in done.stdout.splitlines() if line.startswith("runtime  ")]
    assert runtime == [f"runtime  {select_backend().describe()} (the only runtime installed)"]

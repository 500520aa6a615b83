"""The arm64 package, built on this x86-64 machine (``scripts/packaging/build-deb.sh --arch arm64``:
wheels fetched for the target, no compiler, no emulation) and run as on a Raspberry Pi:
installed with apt into an arm64 Debian 12 root under qemu-user (tests/support/emulation.py),
its runtime chosen by the probe, checked, its unit verified, the demo run against the root's
own mosquitto, the request/response and hostile-payload contract tests run against the
daemon inside the root, then upgraded over an edited config.

Under plain qemu-user ai-edge-litert dies (SIGSEGV) on any model: the root sees this
machine's x86 /proc/cpuinfo. That is the crash-and-fallback path, taken first. Then a Pi 4's
/proc/cpuinfo is bound over the root's, as the board's kernel gives it, and ai-edge-litert
runs: the normal path, used for everything after. Nothing here measures speed: times under
emulation say nothing about an arm64 core (docs/benchmarks.md has the per-message
instruction counts instead)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import emulation
from tests.support.debroot import DebianRoot, cached_tarball
from tests.support.tools import require_tool

REPO = Path(__file__).resolve().parents[1]
VERSION = re.findall(r'^version = "(.+)"$', (REPO / "pyproject.toml").read_text(), re.M)[0]
UPGRADE = f"{VERSION}+1"
CONFIG = "/etc/edged/edged.yaml"
LOCAL_EDIT = ("device_id: edge-01 ", "device_id: pi-fleet-7 ")
KEEP_OLD_CONFIG = ["-o", "Dpkg::Options::=--force-confdef",
                   "-o", "Dpkg::Options::=--force-confold"]
ROOT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The contract tests run against the daemon in the root: request/response (MQTT 5 and
# 3.1.1, raw, npy and JSON frames, a malformed frame, expiry, a clean stop) and every
# hostile payload. Left out: the hold-out accuracy run (360 frames: the same code path as
# these, minutes under emulation) and the broker-down-at-start wait (no arm64 code in it).
CONTRACT = [
    "tests/test_end_to_end.py::test_response_topic_gets_the_answer_with_the_same_correlation_data",
    "tests/test_end_to_end.py::test_malformed_frame_gets_an_error_and_the_next_frame_its_prediction",
    "tests/test_end_to_end.py::test_npy_and_json_frames_are_quantized_with_the_models_own_parameters",
    "tests/test_end_to_end.py::test_mqtt_311_publisher_gets_results_on_the_route_topic",
    "tests/test_end_to_end.py::test_expired_work_is_not_run_and_is_reported",
    "tests/test_end_to_end.py::test_sigterm_publishes_stopped_and_exits_zero",
    "tests/test_hostile.py",
]

pytestmark = [pytest.mark.integration, pytest.mark.package, pytest.mark.timeout(3600)]


def build(out: Path) -> Path:
    done = subprocess.run([str(REPO / "scripts/packaging/build-deb.sh"), "--arch", "arm64",
                           "--release", "bookworm", "--out", str(out)],
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "runtimes: ai_edge_litert-" in done.stderr and " tflite_runtime-" in done.stderr
    return Path(done.stdout.strip().splitlines()[-1])


def with_version(deb: Path, version: str, out: Path) -> Path:
    """The same package under a higher version: what an upgrade installs."""
    tree = out / "tree"
    subprocess.run(["dpkg-deb", "-R", str(deb), str(tree)], check=True)
    control = tree / "DEBIAN" / "control"
    control.write_text(re.sub(r"^Version: .*$", f"Version: {version}", control.read_text(),
                              flags=re.M))
    upgraded = out / f"edged_{version}_arm64.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-b", str(tree),
                    str(upgraded)], check=True, capture_output=True)
    return upgraded


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    require_tool("dpkg-deb", "dpkg")
    out = tmp_path_factory.mktemp("debs-arm64")
    first = build(out)
    return first, with_version(first, UPGRADE, out)


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory, debs: tuple[Path, Path]
        ) -> Iterator[DebianRoot]:
    """An arm64 Debian 12 root (minbase, systemd, mosquitto; no Python until the package
    brings it), with both packages in its /tmp and this checkout at its own path inside."""
    emulation.require("arm64")
    tarball = cached_tarball(require_tool("debootstrap", "debootstrap"), extra=("mosquitto",),
                             flavour="mosquitto", arch="arm64")
    root = DebianRoot.unpack(tarball, tmp_path_factory.mktemp("arm64") / "root")
    try:
        with root.mounted():
            root.bind(REPO, str(REPO))
            for deb in debs:
                (root.file("/tmp") / deb.name).write_bytes(deb.read_bytes())
            root.run("apt-get", "update", "-qq")
            yield root
    finally:
        root.remove()


def edged(box: DebianRoot, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return box.run("edged", *args, check=check, timeout=1200)


def test_apt_installs_the_arm64_package_with_debians_python_alone(
        box: DebianRoot, debs: tuple[Path, Path]) -> None:
    assert box.run("uname", "-m").stdout.strip() == "aarch64"
    assert "python3" not in box.run("dpkg-query", "-W", "-f", "${Package}\n").stdout.split()
    box.run("apt-get", "install", "-y", "--no-install-recommends", f"/tmp/{debs[0].name}")
    status = box.run("dpkg-query", "-W", "-f", "${Status} ${Version} ${Architecture}", "edged")
    assert status.stdout == f"install ok installed {VERSION} arm64"
    python = box.run("/opt/edged/bin/python", "-c",
                     "import platform, sys; print(platform.machine(), sys.base_prefix)")
    assert python.stdout.split() == ["aarch64", "/usr"]  # the box's own Python
    wheels = " ".join(p.name for p in box.file("/opt/edged/wheels").iterdir())
    assert "ai_edge_litert-" in wheels and "tflite_runtime-" in wheels
    assert "numpy-1." in wheels  # the one NumPy both runtimes accept


def test_under_plain_emulation_litert_crashes_in_the_probe_and_edged_falls_back(
        box: DebianRoot) -> None:
    """The crash-and-fallback path: ai-edge-litert dies in its child process, edged lives
    on, says why, and serves from tflite-runtime."""
    done = edged(box, "check", "--no-broker", "--config", CONFIG)
    lines = done.stdout.splitlines()
    runtime = [line for line in lines if line.startswith(("runtime", "probe"))]
    assert runtime[0].startswith("runtime  tflite-runtime 2.14.0 (fallen back to: the faster "
                                 "runtime failed the probe)"), done.stdout
    assert re.match(r"probe    ai-edge-litert \S+: crashed \(SIGSEGV\) loading or running the "
                    r"probe model$", runtime[1]), done.stdout
    assert runtime[2].startswith("probe    tflite-runtime 2.14.0: loaded the probe model and "
                                 "classified 3 digits right")
    assert "model    digits: /opt/edged/models/digits_int8.tflite" in done.stdout
    assert lines[-1] == "ok"
    assert "TFLite runtime failed its probe; falling back" in done.stdout + done.stderr


def test_on_a_pi4s_cpuinfo_but_qemus_default_cpu_litert_answers_wrong_and_is_passed_over(
        box: DebianRoot) -> None:
    """The board's /proc/cpuinfo, but qemu's default CPU ("max", every extension on): LiteRT
    now loads and runs, but XNNPACK's kernels answer wrong under the emulator (its own
    kernels, without XNNPACK, answer right). Only the probe's known answers catch it."""
    box.bind(emulation.PI4_CPUINFO, "/proc/cpuinfo")
    assert "CPU part\t: 0xd08" in box.run("cat", "/proc/cpuinfo").stdout
    done = edged(box, "check", "--no-broker", "--config", CONFIG)
    runtime = [line for line in done.stdout.splitlines() if line.startswith(("runtime", "probe"))]
    assert runtime[0].startswith("runtime  tflite-runtime 2.14.0 (fallen back to"), done.stdout
    assert re.match(r"probe    ai-edge-litert \S+: ran the probe model but answered \[.*\] "
                    r"where \[7, 6, 3\] is right$", runtime[1]), done.stdout
    assert done.stdout.rstrip().endswith("ok")


def test_emulating_a_pi4_whole_litert_passes_the_probe_and_runs_the_models(
        box: DebianRoot) -> None:
    """The normal path: the board's /proc/cpuinfo and its CPU (a Cortex-A72, QEMU_CPU), and
    the faster runtime runs, as on the board. Everything after runs so."""
    box.env["QEMU_CPU"] = emulation.PI4_CPU
    done = edged(box, "check", "--no-broker", "--config", CONFIG)
    lines = done.stdout.splitlines()
    runtime = [line for line in lines if line.startswith(("runtime", "probe"))]
    assert runtime[0].startswith("runtime  ai-edge-litert ") and runtime[0].endswith(
        "(the fastest installed, passed the probe)"), done.stdout
    assert len(runtime) == 2 and "classified 3 digits right" in runtime[1]
    assert re.search(r"warm-up invoke [0-9.]+ ms", done.stdout)
    assert lines[-1] == "ok"


def test_systemd_analyze_accepts_the_unit(box: DebianRoot) -> None:
    verify = box.run("systemd-analyze", "verify", "--man=no",
                     "/lib/systemd/system/edged.service", check=False)
    assert verify.returncode == 0 and not (verify.stdout + verify.stderr).strip(), verify


def test_the_demo_runs_end_to_end_against_the_roots_own_mosquitto(box: DebianRoot) -> None:
    """scripts/demo.py with the installed edged and the root's arm64 mosquitto; the
    publishers are this machine's (they are not what is tested). The sensor streams at
    100 Hz, not 1 kHz, and deadlines are 5 s, not 100 ms: the emulated daemon on a shared
    CPU is far slower than a board (at 100 ms it refused most messages as too late)."""
    work = Path(tempfile.mkdtemp(prefix="edged-arm64-demo-"))
    try:
        box.bind(work, str(work))
        done = subprocess.run(
            [sys.executable, str(REPO / "scripts/demo.py"), "--workdir", str(work),
             "--edged", in_root(box, "/opt/edged/bin/edged"),
             "--mosquitto", in_root(box, "/usr/sbin/mosquitto"),
             "--stream-rate", "100", "--deadline-ms", "5000", "--start-timeout", "600"],
            capture_output=True, text=True, timeout=1800, cwd=REPO, env=clean_env())
        box.unbind(str(work))
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "edged stopped with exit code 0" in done.stdout
    assert re.search(r"^digits:    accuracy 0\.9", done.stdout, re.M), done.stdout
    assert re.search(r"^vibration: accuracy 0\.9", done.stdout, re.M), done.stdout


def test_the_contract_tests_pass_against_the_daemon_in_the_root(box: DebianRoot) -> None:
    """The request/response and hostile-payload tests, as they are, with the daemon they
    start being the package's, inside the root (TEST_EDGED_COMMAND)."""
    base = Path(tempfile.mkdtemp(prefix="edged-arm64-contract-"))
    try:
        box.bind(base, str(base))
        env = dict(clean_env(), TEST_EDGED_COMMAND=in_root(box, "/opt/edged/bin/edged"),
                   TEST_EDGED_START_S="600")
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             "--basetemp", str(base / "t"), "--timeout", "1200", *CONTRACT],
            capture_output=True, text=True, timeout=3000, cwd=REPO, env=env)
        box.unbind(str(base))
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=False)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    assert re.search(rf"\b{len(CONTRACT)} passed\b", summary), summary


def test_an_upgrade_keeps_an_edited_config(box: DebianRoot, debs: tuple[Path, Path]) -> None:
    config = box.file(CONFIG)
    config.write_text(config.read_text().replace(*LOCAL_EDIT))
    # Without a network: the postinst makes the new virtualenv from the package alone.
    box.run("apt-get", "install", "-y", *KEEP_OLD_CONFIG, f"/tmp/{debs[1].name}",
            network=False, timeout=1800)
    status = box.run("dpkg-query", "-W", "-f", "${Status} ${Version}", "edged")
    assert status.stdout == f"install ok installed {UPGRADE}"
    assert LOCAL_EDIT[1] in config.read_text()
    done = edged(box, "check", "--no-broker", "--config", CONFIG)
    assert "device   pi-fleet-7" in done.stdout and done.stdout.rstrip().endswith("ok")


def in_root(box: DebianRoot, program: str) -> str:
    """A command line that runs ``program`` inside the root with a clean environment."""
    qemu = " ".join(f"{k}={v}" for k, v in box.env.items())
    return (f"chroot {box.path} env -i {ROOT_PATH} HOME=/root LANG=C.UTF-8 {qemu} "
            f"{program}")


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("EDGED_", "PYTEST_", "TEST_EDGED_"))}

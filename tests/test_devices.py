"""``edged devices`` against fake /dev, /sys, /etc and /proc trees laid out the way a Coral
box and a Jetson lay them out; ``edged check`` on accelerator configs, as a separate process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edged import devices
from tests.support.daemon import MODELS, REPO, digits_config
from tests.support.flatbuf import with_custom_op

pytestmark = pytest.mark.legacy


def usb_device(root: Path, port: str, vendor: str, product: str, speed: str = "5000") -> None:
    dev = root / "sys" / "bus" / "usb" / "devices" / port
    dev.mkdir(parents=True)
    (dev / "idVendor").write_text(vendor + "\n")
    (dev / "idProduct").write_text(product + "\n")
    (dev / "speed").write_text(speed + "\n")


def test_a_coral_box_with_pcie_and_usb_accelerators(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    for n in (1, 0):
        (tmp_path / "dev" / f"apex_{n}").touch()
    usb_device(tmp_path, "1-1", "1d6b", "0003")  # a root hub: not an Edge TPU
    usb_device(tmp_path, "2-1", "18d1", "9302")
    usb_device(tmp_path, "2-2", "1a6e", "089a", speed="480")
    found = devices.scan(tmp_path)
    tpus = [(f.name, f.detail) for f in found.of("edgetpu")]
    assert tpus == [
        ("pci:0", "/dev/apex_0"),
        ("pci:1", "/dev/apex_1"),
        ("usb:0", "18d1:9302 at 2-1, firmware loaded"),
        ("usb:1", "1a6e:089a at 2-2, before its firmware is loaded - on a USB 2 port: "
                  "use USB 3 for full speed"),
    ]
    assert [f.name for f in found.of("jetson")] == ["none"]


def test_a_jetson_is_named_with_its_l4t_release(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "nv_tegra_release").write_text(
        "# R36 (release), REVISION: 3.0, GCID: 36923193, BOARD: generic, EABI: aarch64\n")
    (tmp_path / "proc" / "device-tree").mkdir(parents=True)
    (tmp_path / "proc" / "device-tree" / "model").write_text(
        "NVIDIA Jetson Orin Nano Developer Kit\0")
    (jetson,) = devices.scan(tmp_path).of("jetson")
    assert jetson.name == "NVIDIA Jetson Orin Nano Developer Kit"
    assert jetson.detail == "L4T R36 (release), REVISION: 3.0"
    assert [f.name for f in devices.scan(tmp_path).of("edgetpu")] == ["none"]


def test_libraries_are_reported_by_whether_they_load(
    tmp_path: Path, delegate_libs: dict[str, Path]
) -> None:
    not_a_delegate = "libm.so.6"
    found = devices.scan(tmp_path, libraries=(str(delegate_libs["passthrough"]),
                                              not_a_delegate))
    status = {f.name: f.detail for f in found.of("library")}
    assert status[str(delegate_libs["passthrough"])] == "loads (external delegate ABI)"
    assert status[not_a_delegate] == "loads, but does not export tflite_plugin_create_delegate"
    assert status["libedgetpu.so.1"].startswith("cannot be loaded")  # none on test machines


def run_edged(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edged", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=120)


def test_edged_devices_prints_the_runtime_in_use_and_json() -> None:
    done = run_edged("devices")
    assert done.returncode == 0, done.stderr
    runtime = [line for line in done.stdout.splitlines() if line.startswith("runtime")]
    assert any(line.endswith("in use") for line in runtime)
    body = json.loads(run_edged("devices", "--json").stdout)
    assert {"runtime", "edgetpu", "jetson", "library"} <= set(body)


def write_config(tmp_path: Path, **model: object) -> Path:
    data = digits_config(1883)
    data["models"]["digits"].update(model)
    path = tmp_path / "edged.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_check_fails_on_a_tpu_model_with_no_tpu_and_says_what_to_check(tmp_path: Path) -> None:
    tpu = with_custom_op(MODELS / "digits_int8.tflite", tmp_path / "digits_edgetpu.tflite")
    done = run_edged("check", "--config", str(write_config(tmp_path, path=str(tpu),
                                                           device="pci:0")))
    assert done.returncode == 1
    for needed in ("compiled for the Edge TPU", "device 'pci:0'", "libedgetpu.so.1",
                   "/dev/apex_N", "18d1:9302", "edged devices"):
        assert needed in done.stderr


def test_check_reports_backend_fallback_and_why(tmp_path: Path) -> None:
    tpu = with_custom_op(MODELS / "digits_int8.tflite", tmp_path / "digits_edgetpu.tflite")
    config = write_config(tmp_path, path="digits_edgetpu.tflite",
                          fallback_model=str(MODELS / "digits_int8.tflite"))
    done = run_edged("check", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert f"model    digits: {tpu}" in done.stdout  # resolved next to the config
    assert "backend edgetpu:any, fallback cpu (digits_int8.tflite)" in done.stdout
    assert "warning  digits: edgetpu:any unavailable, starting on the fallback" in done.stdout

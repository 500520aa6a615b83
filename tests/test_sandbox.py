"""``edged check`` as root sees what the service sees (edged.sandbox): files are opened by a
child running as the unit's user, through the unit's sandbox, read from the shipped unit
(systemd/edged.service) itself. Root is needed to take another user's identity."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from edged.cli import EX_CONFIG, EX_OK, main
from tests.support.daemon import MODELS, digits_config
from tests.support.tools import require_root

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "edged.service"


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    """The shipped unit, its groups those every machine has: the one thing a test machine
    without the package lacks is the group apex, which the check would rightly name."""
    text = UNIT.read_text().replace("SupplementaryGroups=plugdev apex", "SupplementaryGroups=")
    path = tmp_path / "edged.service"
    path.write_text(text)
    return path


@pytest.fixture
def shown() -> Iterator[Path]:
    """A folder the service's sandbox shows (not under /tmp, /home or /root), open to all."""
    require_root("the check takes the service user's identity")
    folder = Path(tempfile.mkdtemp(prefix="edged-test-", dir="/var/lib"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def config_with(folder: Path, model: Path, labels: Path, **outbox: str) -> Path:
    config = digits_config(1883)
    config["models"]["digits"].update(path=str(model), labels=str(labels))
    if outbox:
        config["outbox"] = outbox
    path = folder / "edged.yaml"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o644)
    return path


def check(config: Path, unit: Path, *extra: str) -> int:
    return main(["check", "--no-broker", "--unit", str(unit), "-c", str(config), *extra])


def copy(source: Path, to: Path, mode: int) -> Path:
    shutil.copy(source, to)
    to.chmod(mode)
    return to


def test_files_the_service_can_open_pass(shown: Path, unit: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    model = copy(MODELS / "digits_int8.tflite", shown / "digits.tflite", 0o644)
    labels = copy(MODELS / "digits.labels", shown / "digits.labels", 0o644)
    assert check(config_with(shown, model, labels), unit) == EX_OK
    out = capsys.readouterr().out
    assert "runs as edged (DynamicUser=yes" in out
    assert "every file the config names opens as the service's user" in out


def test_a_root_only_model_is_named_with_its_fix(shown: Path, unit: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    model = copy(MODELS / "digits_int8.tflite", shown / "digits.tflite", 0o600)
    labels = copy(MODELS / "digits.labels", shown / "digits.labels", 0o644)
    config = config_with(shown, model, labels)
    assert check(config, unit) == EX_CONFIG
    out = capsys.readouterr().out
    assert (f"error    models.digits.path: the service (user edged) cannot read {model}: "
            "Permission denied; (mode 0600, owner root:root)") in out
    assert f"chmod a+r {model}" in out
    assert "labels" not in out.split("error", 1)[1]  # only the file that fails is named
    # As root alone, the same config passes: the option to skip the service's view.
    assert check(config, unit, "--no-sandbox") == EX_OK


def test_files_under_root_and_tmp_are_hidden_from_the_service(
        shown: Path, unit: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    in_root = Path(tempfile.mkdtemp(prefix="edged-test-", dir="/root"))
    try:
        labels = copy(MODELS / "digits.labels", in_root / "digits.labels", 0o644)
        model = copy(MODELS / "digits_int8.tflite", tmp_path / "digits.tflite", 0o644)
        assert check(config_with(shown, model, labels), unit) == EX_CONFIG
    finally:
        shutil.rmtree(in_root)
    out = capsys.readouterr().out
    assert (f"models.digits.labels: {labels} is hidden from the service: ProtectHome=yes "
            "hides /home, /root and /run/user") in out
    assert f"models.digits.path: {model} is hidden from the service: PrivateTmp=yes" in out


def test_a_spool_outside_the_state_directory_is_read_only(
        shown: Path, unit: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = copy(MODELS / "digits_int8.tflite", shown / "digits.tflite", 0o644)
    labels = copy(MODELS / "digits.labels", shown / "digits.labels", 0o644)
    config = config_with(shown, model, labels, spool_path=str(shown / "outbox.sqlite"))
    assert check(config, unit) == EX_CONFIG
    out = capsys.readouterr().out
    assert f"outbox.spool_path's folder: the service cannot write in {shown}" in out
    assert "ProtectSystem=strict" in out and "ReadWritePaths=" in out


def test_a_group_the_unit_names_must_exist(shown: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    unit = tmp_path / "edged.service"
    unit.write_text(UNIT.read_text().replace("SupplementaryGroups=plugdev apex",
                                             "SupplementaryGroups=no-such-group-edged"))
    model = copy(MODELS / "digits_int8.tflite", shown / "digits.tflite", 0o644)
    labels = copy(MODELS / "digits.labels", shown / "digits.labels", 0o644)
    assert check(config_with(shown, model, labels), unit) == EX_CONFIG
    assert "names no-such-group-edged, which does not exist" in capsys.readouterr().out
    assert os.geteuid() == 0

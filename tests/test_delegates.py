"""Delegates, fallback and recovery, against real interpreters and the C test delegates in
tests/delegates/ (built with ``cc``): no accelerator is attached, so these stand in for one.

- passthrough: accepts its options, claims no node: outputs must equal the CPU's;
- null: its create returns NULL, as libedgetpu does with no Edge TPU;
- failing: claims every node with a kernel whose Invoke errors, hangs or aborts, while its
  ``flag`` file exists (so a test can make the device "come back").
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edged.config import ModelConfig
from edged.errors import ModelExecutionError, ModelLoadError
from edged.runtime import LoadedModel, Session, load_model, select_backend
from edged.runtime.delegates import DelegateError
from edged.runtime.edgetpu import FlatbufferError, compiled_for_edgetpu, custom_ops
from tests.support.daemon import MODELS
from tests.support.flatbuf import with_custom_op

DIGITS = MODELS / "digits_int8.tflite"


def config(**values: Any) -> ModelConfig:
    base: dict[str, Any] = {"path": DIGITS, "labels": MODELS / "digits.labels"}
    base.update(values)
    return ModelConfig(**base)


def images(n: int = 40) -> list[np.ndarray]:
    data = np.load(MODELS / "digits_holdout.npz")["images"][:n]
    return [np.rint(i * 255).astype(np.uint8).reshape(1, 8, 8, 1) for i in data]


def cpu_outputs(tensors: list[np.ndarray]) -> list[np.ndarray]:
    interpreter = select_backend().interpreter_class(model_path=str(DIGITS))
    interpreter.allocate_tensors()
    out = []
    for t in tensors:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], t)
        interpreter.invoke()
        out.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))
    return out


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.02)


@pytest.fixture
def sessions() -> Iterator[list[Session]]:
    made: list[Session] = []
    yield made
    for s in made:
        s.close()


def session(made: list[Session], model: LoadedModel, worker: int | None = None) -> Session:
    s = Session(model, worker)
    made.append(s)
    return s


# --- a delegate that works ---------------------------------------------------------------

@pytest.mark.legacy
def test_passthrough_delegate_gives_the_cpu_outputs_and_gets_its_options(
    delegate_libs: dict[str, Path], tmp_path: Path, sessions: list[Session]
) -> None:
    record = tmp_path / "options.txt"
    lib = str(delegate_libs["passthrough"])
    cfg = config(delegate="external", library=lib, options={"record": str(record), "x_n": 4})
    model = load_model("digits", cfg, select_backend())
    s = session(sessions, model)
    tensors = images()
    for got, want in zip([s.run(t)[0] for t in tensors], cpu_outputs(tensors), strict=True):
        np.testing.assert_array_equal(got, want)
    assert s.backend_name == f"external:{lib}"
    assert not s.on_fallback and s.fallback_events == 0
    assert f"record={record}" in record.read_text() and "x_n=4" in record.read_text()
    assert s.snapshot()["invoke_ms"][f"external:{lib}"]["count"] == len(tensors)


def test_edgetpu_devices_are_dealt_to_workers(
    delegate_libs: dict[str, Path], tmp_path: Path, sessions: list[Session]
) -> None:
    # The passthrough library stands in for libedgetpu: what matters is the device option.
    record = tmp_path / "options.txt"
    cfg = config(delegate="edgetpu", library=str(delegate_libs["passthrough"]), workers=2,
                 devices=["usb:0", "usb:1"], options={"record": str(record)})
    model = load_model("digits", cfg, select_backend())
    names = [session(sessions, model).backend_name for _ in range(2)]
    assert names == ["edgetpu:usb:0", "edgetpu:usb:1"]
    seen = record.read_text().splitlines()
    assert "device=usb:0" in seen and "device=usb:1" in seen


def test_process_isolation_gives_the_same_outputs(
    delegate_libs: dict[str, Path], sessions: list[Session]
) -> None:
    cfg = config(delegate="external", library=str(delegate_libs["passthrough"]),
                 isolation="process")
    s = session(sessions, load_model("digits", cfg, select_backend()))
    tensors = images(20)
    for got, want in zip([s.run(t)[0] for t in tensors], cpu_outputs(tensors), strict=True):
        np.testing.assert_array_equal(got, want)
    assert s.snapshot()["isolation"] == "process"


# --- a delegate that does not load ----------------------------------------------------

@pytest.mark.legacy
def test_a_null_delegate_without_fallback_names_library_and_options(
    delegate_libs: dict[str, Path]
) -> None:
    lib = str(delegate_libs["null"])
    cfg = config(delegate="external", library=lib, options={"x_speed": "max"}, fallback=False)
    with pytest.raises(DelegateError) as err:
        load_model("digits", cfg, select_backend())
    text = str(err.value)
    assert lib in text and "x_speed=max" in text
    assert "returned NULL" in text and "fallback is off" in text


def test_a_refused_option_is_reported_and_the_cpu_takes_over(
    delegate_libs: dict[str, Path], sessions: list[Session]
) -> None:
    cfg = config(delegate="external", library=str(delegate_libs["passthrough"]),
                 options={"bogus": "1"})
    model = load_model("digits", cfg, select_backend())
    (why,) = model.startup_failures.values()
    assert "unknown option 'bogus'" in why and "bogus=1" in why
    s = session(sessions, model)
    assert s.backend_name == "cpu-fallback" and s.fallback_events == 1
    tensors = images(10)
    for got, want in zip([s.run(t)[0] for t in tensors], cpu_outputs(tensors), strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_missing_library_says_it_cannot_be_opened(tmp_path: Path) -> None:
    cfg = config(delegate="gpu", library=str(tmp_path / "libnothere.so"), fallback=False)
    with pytest.raises(DelegateError, match="cannot be opened.*libnothere.so"):
        load_model("digits", cfg, select_backend())


def test_retries_of_a_missing_accelerator_back_off(
    delegate_libs: dict[str, Path], sessions: list[Session]
) -> None:
    cfg = config(delegate="external", library=str(delegate_libs["null"]),
                 retry_min_s=0.05, retry_max_s=0.2)
    s = session(sessions, load_model("digits", cfg, select_backend()))
    wait_for(lambda: s.health.retries_failed >= 4)
    assert s.health.retry_delay_s == pytest.approx(0.2)  # doubled, then capped
    assert "returned NULL" in (s.snapshot()["last_retry_error"] or "")
    assert s.run(images(1)[0])[0].shape == (1, 10)  # the fallback serves meanwhile


# --- a delegate that fails while serving ------------------------------------------------

def failing_model(lib: Path, flag: Path, **values: Any) -> LoadedModel:
    """Load while the device is "healthy" (no flag): the delegate then claims nothing."""
    options = {"flag": str(flag), **values.pop("options", {})}
    cfg = config(delegate="external", library=str(lib), options=options, retry_min_s=0.05,
                 retry_max_s=0.1, **values)
    return load_model("digits", cfg, select_backend())


@pytest.mark.legacy
def test_an_invoke_error_moves_the_worker_to_the_fallback_and_it_comes_back(
    delegate_libs: dict[str, Path], tmp_path: Path, sessions: list[Session]
) -> None:
    flag = tmp_path / "broken"
    model = failing_model(delegate_libs["failing"], flag, options={"action": "error"})
    flag.touch()  # the device breaks: the session's own delegate now claims every node
    s = session(sessions, model)
    primary = s.backend_name
    tensors = images(5)
    with pytest.raises(ModelExecutionError, match="device error"):
        s.run(tensors[0])
    assert s.backend_name == "cpu-fallback" and s.fallback_events == 1
    want = cpu_outputs(tensors)
    for t, w in zip(tensors, want, strict=True):  # nothing else is lost
        np.testing.assert_array_equal(s.run(t)[0], w)
    flag.unlink()  # the device is back: the next retry passes its warm-up
    wait_for(lambda: s._recovered is not None)
    np.testing.assert_array_equal(s.run(tensors[0])[0], want[0])
    assert s.backend_name == primary
    events = [e["kind"] for e in s.snapshot()["events"]]
    assert events == ["fallback", "recovered"]


def test_an_invoke_over_the_watchdog_bound_fails_over(
    delegate_libs: dict[str, Path], tmp_path: Path, sessions: list[Session]
) -> None:
    flag = tmp_path / "broken"
    model = failing_model(delegate_libs["failing"], flag, invoke_timeout_ms=100,
                          options={"action": "hang", "hang_ms": "300"})
    flag.touch()
    s = session(sessions, model)
    with pytest.raises(ModelExecutionError, match="device error|invoke_timeout_ms"):
        s.run(images(1)[0])
    assert s.backend_name == "cpu-fallback"


def test_process_isolation_survives_an_abort_in_the_delegate(
    delegate_libs: dict[str, Path], tmp_path: Path, sessions: list[Session]
) -> None:
    flag = tmp_path / "broken"
    model = failing_model(delegate_libs["failing"], flag, isolation="process",
                          options={"action": "abort"})
    flag.touch()
    s = session(sessions, model)
    with pytest.raises(ModelExecutionError, match="SIGABRT"):
        s.run(images(1)[0])  # in-thread, this abort() would have ended the test run
    assert s.backend_name == "cpu-fallback"
    flag.unlink()
    wait_for(lambda: s._recovered is not None)
    s.run(images(1)[0])
    assert s.backend_name.startswith("external:") and s.health.recoveries == 1


def test_process_isolation_kills_a_hung_invoke(
    delegate_libs: dict[str, Path], tmp_path: Path, sessions: list[Session]
) -> None:
    flag = tmp_path / "broken"
    model = failing_model(delegate_libs["failing"], flag, isolation="process",
                          invoke_timeout_ms=200, options={"action": "hang", "hang_ms": "60000"})
    flag.touch()
    s = session(sessions, model)
    started = time.monotonic()
    with pytest.raises(ModelExecutionError, match="no answer within 200 ms; child process killed"):
        s.run(images(1)[0])
    assert time.monotonic() - started < 5
    np.testing.assert_array_equal(s.run(images(1)[0])[0], cpu_outputs(images(1))[0])


def test_no_fallback_means_model_errors_until_the_accelerator_returns(
    delegate_libs: dict[str, Path], tmp_path: Path, sessions: list[Session]
) -> None:
    flag = tmp_path / "broken"
    model = failing_model(delegate_libs["failing"], flag, fallback=False)
    flag.touch()
    s = session(sessions, model)
    for _ in range(2):
        with pytest.raises(ModelExecutionError):
            s.run(images(1)[0])
    assert s.backend_name == "none"


# --- a model compiled for the Edge TPU --------------------------------------------------

@pytest.fixture(scope="module")
def tpu_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return with_custom_op(DIGITS, tmp_path_factory.mktemp("tpu") / "digits_edgetpu.tflite")


@pytest.mark.legacy
def test_the_edgetpu_op_is_found_without_running_the_model(tpu_model: Path) -> None:
    assert custom_ops(tpu_model) == {"edgetpu-custom-op"}
    assert compiled_for_edgetpu(tpu_model) and not compiled_for_edgetpu(DIGITS)
    # The model really is unrunnable on the CPU, as a compiled one is.
    interpreter = select_backend().interpreter_class(model_path=str(tpu_model))
    with pytest.raises(RuntimeError, match="edgetpu-custom-op"):
        interpreter.allocate_tensors()


def test_the_reader_agrees_with_the_schema_bindings(tpu_model: Path) -> None:
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
    m = schema.Model.GetRootAsModel(tpu_model.read_bytes(), 0)
    names = {m.OperatorCodes(i).CustomCode() for i in range(m.OperatorCodesLength())}
    assert {n.decode() for n in names if n} == custom_ops(tpu_model)


def test_a_truncated_model_is_refused_by_the_reader(tmp_path: Path) -> None:
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(DIGITS.read_bytes()[:64])
    with pytest.raises(FlatbufferError):
        custom_ops(cut)


@pytest.mark.legacy
def test_a_tpu_model_with_no_tpu_and_no_fallback_says_what_to_check(tpu_model: Path) -> None:
    with pytest.raises(DelegateError) as err:
        load_model("digits", config(path=tpu_model, device="usb:1"), select_backend())
    text = str(err.value)
    for needed in ("compiled for the Edge TPU", "device 'usb:1'", "libedgetpu.so.1",
                   "/dev/apex_N", "1a6e:089a", "18d1:9302", "fallback_model"):
        assert needed in text
    assert "unresolved custom op" not in text  # it was never run


@pytest.mark.legacy
def test_a_tpu_model_serves_from_its_fallback_model(
    tpu_model: Path, sessions: list[Session]
) -> None:
    model = load_model("digits", config(path=tpu_model, fallback_model=DIGITS),
                       select_backend())
    assert set(model.startup_failures) == {"edgetpu:any"}
    s = session(sessions, model)
    tensors = images(10)
    for got, want in zip([s.run(t)[0] for t in tensors], cpu_outputs(tensors), strict=True):
        np.testing.assert_array_equal(got, want)
    assert s.backend_name == "cpu-fallback"


def test_a_tpu_model_cannot_be_forced_onto_the_cpu(tpu_model: Path) -> None:
    with pytest.raises(ModelLoadError, match="compiled for the Edge TPU"):
        load_model("digits", config(path=tpu_model, delegate="cpu"), select_backend())


def test_a_fallback_with_other_tensors_is_refused(delegate_libs: dict[str, Path]) -> None:
    cfg = config(delegate="external", library=str(delegate_libs["passthrough"]),
                 fallback_model=MODELS / "vibration_int8.tflite", labels=None)
    with pytest.raises(ModelLoadError, match="fallback cannot stand in.*shape"):
        load_model("digits", cfg, select_backend())

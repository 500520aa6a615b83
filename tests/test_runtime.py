"""The runtime adapter against the real interpreters and the bundled models.

Marked ``legacy``: these also run under tflite-runtime (numpy<2) in CI.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from edged.config import ModelConfig
from edged.errors import ModelLoadError, RuntimeUnavailableError
from edged.runtime import Session, load_model, select_backend
from tests.support.daemon import MODELS

pytestmark = pytest.mark.legacy


def digits_config(**overrides: object) -> ModelConfig:
    values: dict[str, object] = {
        "path": MODELS / "digits_int8.tflite",
        "labels": MODELS / "digits.labels",
        "workers": 1,
    }
    values.update(overrides)
    return ModelConfig(**values)  # type: ignore[arg-type]


def test_the_expected_runtime_is_picked() -> None:
    backend = select_backend()
    expected = os.environ.get("TEST_EXPECT_RUNTIME", "ai-edge-litert")
    assert backend.name == expected
    assert backend.version != "unknown"


def test_an_unknown_runtime_is_refused() -> None:
    with pytest.raises(RuntimeUnavailableError, match="unknown TFLite runtime"):
        select_backend("tensorflow")


def test_load_model_reads_the_quantized_tensors_and_labels() -> None:
    model = load_model("digits", digits_config(), select_backend())
    assert model.input.shape == (1, 8, 8, 1)
    assert model.input.dtype == np.uint8
    assert model.input.scale == pytest.approx(1 / 255)
    assert model.input.zero_point == 0
    assert [o.shape for o in model.outputs] == [(1, 10)]
    assert model.labels == tuple(str(i) for i in range(10))
    assert model.warmup_ms > 0


def test_vibration_model_is_int8_in_and_out() -> None:
    config = ModelConfig(path=MODELS / "vibration_int8.tflite",
                         labels=MODELS / "vibration.labels")
    model = load_model("vibration", config, select_backend())
    assert model.input.shape == (1, 128, 3) and model.input.dtype == np.int8
    assert model.outputs[0].dtype == np.int8
    assert model.labels == ("normal", "imbalance", "misalignment", "bearing_fault")


def test_session_gives_the_same_outputs_as_the_interpreter_used_directly() -> None:
    model = load_model("digits", digits_config(), select_backend())
    images = np.load(MODELS / "digits_holdout.npz")["images"][:20]
    direct = model.new_interpreter()
    session = Session(model)
    for image in images:
        tensor = np.rint(image * 255).astype(np.uint8).reshape(1, 8, 8, 1)
        direct.set_tensor(model.input.index, tensor)
        direct.invoke()
        expected = direct.get_tensor(model.outputs[0].index)
        (got,) = session.run(tensor)
        np.testing.assert_array_equal(got, expected)


def test_sessions_in_threads_agree() -> None:
    model = load_model("digits", digits_config(), select_backend())
    data = np.load(MODELS / "digits_holdout.npz")
    tensors = [np.rint(i * 255).astype(np.uint8).reshape(1, 8, 8, 1) for i in data["images"]]
    results: dict[int, list[int]] = {}

    def work(worker: int) -> None:
        session = Session(model)
        results[worker] = [int(np.argmax(session.run(t)[0])) for t in tensors]

    threads = [threading.Thread(target=work, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results[0] == results[1]
    accuracy = np.mean(np.array(results[0]) == data["labels"])
    assert accuracy > 0.97


def test_a_truncated_model_fails_to_load_with_the_path(tmp_path: Path) -> None:
    broken = tmp_path / "broken.tflite"
    broken.write_bytes((MODELS / "digits_int8.tflite").read_bytes()[:2000])
    with pytest.raises(ModelLoadError, match=r"broken\.tflite"):
        load_model("broken", digits_config(path=broken), select_backend())


def test_the_engine_calls_the_runtime_natively_and_falls_back_to_its_public_methods() -> None:
    from edged.runtime.engine import _tensor_calls

    model = load_model("digits", digits_config(), select_backend())
    interpreter = model.new_interpreter()
    native = _tensor_calls(interpreter)
    # both runtimes keep their native wrapper there: the Python methods are skipped
    assert [c.__name__ for c in native] == ["SetTensor", "Invoke", "GetTensor"]
    # Holding them, the interpreter's own invoke() sees references to its data and refuses:
    # an engine uses one set of calls or the other, never both.
    with pytest.raises(RuntimeError, match="reference to internal data"):
        interpreter.invoke()
    fresh = model.new_interpreter()

    class PublicOnly:  # a runtime without that wrapper
        def __init__(self) -> None:
            self.inner = fresh

        def set_tensor(self, index: int, value: np.ndarray) -> None:
            self.inner.set_tensor(index, value)

        def invoke(self) -> None:
            self.inner.invoke()

        def get_tensor(self, index: int) -> np.ndarray:
            out: np.ndarray = self.inner.get_tensor(index)
            return out

    public = PublicOnly()
    set_tensor, invoke, get_tensor = _tensor_calls(public)
    assert set_tensor == public.set_tensor and get_tensor == public.get_tensor
    tensor = np.zeros(model.input.shape, model.input.dtype)
    set_tensor(model.input.index, tensor)
    invoke()
    assert get_tensor(model.outputs[0].index).shape == model.outputs[0].shape

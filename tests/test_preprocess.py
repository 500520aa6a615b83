"""edged.preprocess: arrays -> input tensors (shape fitting, quantization)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edged.errors import BadInputError
from edged.preprocess import fit_shape, quantize, to_input_tensor
from edged.runtime.model import TensorSpec


def spec(
    shape: tuple[int, ...] = (1, 4),
    dtype: Any = np.int8,
    scale: float = 0.0,
    zero_point: int = 0,
) -> TensorSpec:
    return TensorSpec("input", 0, shape, np.dtype(dtype), scale, zero_point)


INT8_IMAGE = spec((1, 2, 2, 1), np.int8, scale=0.5, zero_point=-10)
UINT8 = spec((1, 4), np.uint8, scale=1 / 255, zero_point=0)
FLOAT = spec((1, 4), np.float32)

# --- fit_shape --------------------------------------------------------------------------


def test_exact_shape_is_returned_as_is() -> None:
    array = np.zeros((1, 2, 2, 1), dtype=np.int8)
    assert fit_shape(array, INT8_IMAGE) is array


def test_missing_batch_dimension_is_added() -> None:
    array = np.arange(4, dtype=np.int8).reshape(2, 2, 1)
    fitted = fit_shape(array, INT8_IMAGE)
    assert fitted.shape == (1, 2, 2, 1)
    np.testing.assert_array_equal(fitted[0], array)


def test_flat_array_of_the_right_size_is_reshaped_in_c_order() -> None:
    fitted = fit_shape(np.arange(4, dtype=np.int8), INT8_IMAGE)
    assert fitted.shape == (1, 2, 2, 1)
    assert fitted[0, 1, 0, 0] == 2


def test_batch_rule_needs_a_batch_of_one() -> None:
    batch_of_two = spec((2, 3))
    with pytest.raises(BadInputError):
        fit_shape(np.zeros((3,)), batch_of_two)
    assert fit_shape(np.zeros(6), batch_of_two).shape == (2, 3)  # flat still works


@pytest.mark.parametrize(
    ("shape", "got"),
    [
        ((2, 2), "2x2"),  # same size, but neither exact, unbatched nor flat
        ((1, 4, 1, 1), "1x4x1x1"),
        ((5,), "5"),
        ((1, 2, 2), "1x2x2"),
        ((), "scalar"),
        ((0,), "0"),
    ],
)
def test_mismatch_names_both_shapes(shape: tuple[int, ...], got: str) -> None:
    with pytest.raises(BadInputError) as info:
        fit_shape(np.zeros(shape, dtype=np.int8), INT8_IMAGE)
    assert str(info.value) == f"input of shape [{got}] does not fit the model's input [1x2x2x1]"
    assert info.value.reason == "bad_input"


# --- quantize ---------------------------------------------------------------------------


def test_quantize_uses_scale_and_zero_point() -> None:
    # q = round(real / 0.5) + (-10)
    real = np.array([[[[0.0], [1.0]], [[-2.0], [10.25]]]], dtype=np.float32)
    q = quantize(real, INT8_IMAGE)
    assert q.dtype == np.int8
    np.testing.assert_array_equal(q.reshape(-1), [-10, -8, -14, 10])


def test_quantize_rounds_half_to_even() -> None:
    half = spec((4,), np.int8, scale=1.0, zero_point=0)
    q = quantize(np.array([0.5, 1.5, 2.5, -0.5]), half)
    np.testing.assert_array_equal(q, [0, 2, 2, 0])


def test_quantize_saturates_instead_of_wrapping() -> None:
    q = quantize(np.array([1e9, -1e9, 127.4, -128.4]), spec((4,), np.int8, 1.0, 0))
    np.testing.assert_array_equal(q, [127, -128, 127, -128])
    u = quantize(np.array([2.0, -1.0, 0.2, 1e30]), UINT8)
    np.testing.assert_array_equal(u, [255, 0, 51, 255])


def test_quantize_int16() -> None:
    q = quantize(np.array([1.0, -1.0, 1e6]), spec((3,), np.int16, 1 / 1024, 0))
    assert q.dtype == np.int16
    np.testing.assert_array_equal(q, [1024, -1024, 32767])


# --- to_input_tensor --------------------------------------------------------------------


def test_float_input_to_a_quantized_model_is_quantized() -> None:
    tensor = to_input_tensor(np.array([0.0, 0.2, 1.0, 1.5]), UINT8)
    assert tensor.dtype == np.uint8
    assert tensor.shape == (1, 4)
    np.testing.assert_array_equal(tensor, [[0, 51, 255, 255]])


def test_float64_input_to_a_float_model_is_cast() -> None:
    tensor = to_input_tensor(np.array([[0.25, -1.0, 3.0, 4.5]]), FLOAT)
    assert tensor.dtype == np.float32
    np.testing.assert_array_equal(tensor, [[0.25, -1.0, 3.0, 4.5]])


def test_float32_input_to_a_float_model_passes_unchanged() -> None:
    array = np.array([[1, 2, 3, 4]], dtype=np.float32)
    assert to_input_tensor(array, FLOAT) is array


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("target", [UINT8, FLOAT])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_and_infinity_are_refused(bad: float, target: TensorSpec, dtype: Any) -> None:
    array = np.array([0.0, bad, 1.0, 2.0], dtype=dtype)
    with pytest.raises(BadInputError, match="NaN or infinite"):
        to_input_tensor(array, target)


def test_integers_of_the_models_own_dtype_pass_unchanged() -> None:
    # Already quantized: no scaling, no copy.
    array = np.array([[1, 2, 250, 255]], dtype=np.uint8)
    assert to_input_tensor(array, UINT8) is array
    image = np.array([-128, 0, 5, 127], dtype=np.int8)
    tensor = to_input_tensor(image, INT8_IMAGE)
    np.testing.assert_array_equal(tensor.reshape(-1), image)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint16, np.bool_])
def test_other_integer_dtypes_are_refused_with_a_helpful_message(dtype: Any) -> None:
    with pytest.raises(BadInputError) as info:
        to_input_tensor(np.array([[1, 0, 1, 0]], dtype=dtype), UINT8)
    message = str(info.value)
    assert f"input dtype {np.dtype(dtype).name} does not match the model's input uint8" in message
    assert "send uint8 (already quantized) or floats (real values)" in message


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64, np.bool_])
def test_integers_to_a_float_model_are_real_values(dtype: Any) -> None:
    tensor = to_input_tensor(np.array([1, 0, 1, 1], dtype=dtype), FLOAT)
    assert tensor.dtype == np.float32
    np.testing.assert_array_equal(tensor, [[1.0, 0.0, 1.0, 1.0]])


def test_shape_is_fitted_before_the_dtype_is_checked() -> None:
    with pytest.raises(BadInputError, match="does not fit"):
        to_input_tensor(np.zeros(5, dtype=np.uint8), UINT8)


def test_floats_that_overflow_the_models_float_are_refused() -> None:
    # 1e300 is finite as the float64 JSON decodes to, but inf as the model's float32.
    with pytest.raises(BadInputError, match="too large for the model's float32"):
        to_input_tensor(np.array([1e300, 0.0, 0.0, 0.0]), FLOAT)
    half = spec((2,), np.float16)
    with pytest.raises(BadInputError, match="float16"):
        to_input_tensor(np.array([70000.0, 1.0], dtype=np.float32), half)

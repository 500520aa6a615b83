"""edged.codec: payload bytes -> arrays. Every payload is hostile until decoded."""

from __future__ import annotations

import base64
import io
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from edged.codec import (
    MAX_JSON_DEPTH,
    decode_json,
    decode_npy,
    decode_raw,
    decoder_for,
    frame_decoder_for,
)
from edged.errors import BadInputError
from edged.image import Geometry, ImageOptions

# --- raw --------------------------------------------------------------------------------


def test_raw_of_exact_size_is_a_read_only_view() -> None:
    values = np.arange(12, dtype=np.int8).reshape(1, 3, 4)
    payload = values.tobytes()
    array = decode_raw(payload, (1, 3, 4), np.dtype(np.int8))
    assert array.shape == (1, 3, 4)
    assert array.dtype == np.int8
    np.testing.assert_array_equal(array, values)
    assert not array.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        array[0, 0, 0] = 1


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.float32, np.float64])
def test_raw_round_trips_every_input_dtype(dtype: type[np.generic]) -> None:
    values = np.linspace(0, 100, 28).astype(dtype).reshape(1, 28)
    array = decode_raw(values.tobytes(), (1, 28), np.dtype(dtype))
    np.testing.assert_array_equal(array, values)


@pytest.mark.parametrize("size", [0, 1, 783, 785, 784 * 4])
def test_raw_of_wrong_size_names_both_sizes(size: int) -> None:
    with pytest.raises(BadInputError) as info:
        decode_raw(b"\x00" * size, (1, 28, 28), np.dtype(np.uint8))
    message = str(info.value)
    assert f"raw payload is {size} bytes" in message
    assert "uint8[1x28x28]" in message
    assert "needs exactly 784" in message
    assert info.value.reason == "bad_input"


def test_raw_of_an_image_says_what_it_looks_like_and_which_input_to_set() -> None:
    """A route with no `input:` is raw: a camera's JPEG then gets a hint, not only sizes."""
    from tests.support.images import encode

    frame = encode(np.full((64, 64, 3), 128, np.uint8), "JPEG")
    with pytest.raises(BadInputError) as info:
        decode_raw(frame, (1, 64, 64, 3), np.dtype(np.uint8))
    assert str(info.value).endswith(
        "; the payload looks like a JPEG image: set the route's input: {format: image} "
        "(or jpeg)")
    with pytest.raises(BadInputError, match="looks like JSON: set the route's input: "
                                            r"\{format: json\}"):
        decode_raw(b'{"data": [1, 2]}', (1, 64, 64, 3), np.dtype(np.uint8))


def test_raw_size_counts_the_item_size() -> None:
    with pytest.raises(BadInputError, match="needs exactly 40"):
        decode_raw(b"\x00" * 10, (10,), np.dtype(np.float32))


# --- npy --------------------------------------------------------------------------------


def npy(array: Any) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


@pytest.mark.parametrize(
    "values",
    [
        np.arange(6, dtype=np.uint8).reshape(2, 3),
        np.arange(-4, 4, dtype=np.int8),
        np.array([[1.5, -2.25]], dtype=np.float32),
        np.linspace(-1, 1, 10).reshape(1, 10, 1),
        np.array([1, 2, 3], dtype=">i4"),  # big-endian is still numbers
        np.array(True),
        np.zeros((0, 3), dtype=np.float16),
        np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3)),
    ],
)
def test_npy_round_trip(values: Any) -> None:
    array = decode_npy(npy(values))
    assert array.dtype == values.dtype
    assert array.shape == values.shape
    np.testing.assert_array_equal(array, values)


def test_npy_object_array_is_refused() -> None:
    with pytest.raises(BadInputError, match="Python objects"):
        decode_npy(npy(np.array([{"a": 1}, None], dtype=object)))


def test_a_pickle_is_refused() -> None:
    with pytest.raises(BadInputError, match="Python objects"):
        decode_npy(pickle.dumps([1.0, 2.0]))


@pytest.mark.parametrize("cut", [7, 9, 40, -1, -8, -128])
def test_truncated_npy_is_refused(cut: int) -> None:
    payload = npy(np.arange(16, dtype=np.float64))
    with pytest.raises(BadInputError, match=r"not a valid \.npy payload"):
        decode_npy(payload[:cut])


@pytest.mark.parametrize("payload", [b"", b"\x93", b"\x93NUM"])
def test_too_short_to_be_npy_is_refused(payload: bytes) -> None:
    with pytest.raises(BadInputError):
        decode_npy(payload)


def test_npz_is_refused() -> None:
    buf = io.BytesIO()
    np.savez(buf, x=np.arange(3))
    with pytest.raises(BadInputError, match="npz archives are refused"):
        decode_npy(buf.getvalue())


@pytest.mark.parametrize("payload", [b"PK\x03\x04", b"PK\x03\x04not a zip", b"PK\x05\x06"])
def test_broken_zip_is_refused(payload: bytes) -> None:
    with pytest.raises(BadInputError):
        decode_npy(payload)


@pytest.mark.parametrize(
    "values",
    [np.array(["a", "b"]), np.array([1 + 2j]), np.zeros(2, dtype=[("x", "i4")]),
     np.array(["2024-01-01"], dtype="datetime64[D]")],
)
def test_npy_of_non_numbers_is_refused(values: Any) -> None:
    with pytest.raises(BadInputError, match="not numeric"):
        decode_npy(npy(values))


def npy_with_header(header: str, data: bytes = b"\x00" * 8) -> bytes:
    """A version 1.0 .npy payload with any header text at all."""
    text = header.ljust(117) + "\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode() + data


def header(descr: str = "'<f8'", shape: str = "(1,)") -> str:
    return f"{{'descr': {descr}, 'fortran_order': False, 'shape': {shape}, }}"


def test_npy_with_a_hand_made_header_decodes() -> None:
    array = decode_npy(npy_with_header(header(shape="(2,)"), np.array([1.5, 2.5]).tobytes()))
    np.testing.assert_array_equal(array, [1.5, 2.5])


@pytest.mark.parametrize("shape", ["(1000000000000,)", "(100000000,)", "(100000, 100000, 100000)"])
def test_npy_header_cannot_make_us_allocate_what_the_payload_does_not_hold(shape: str) -> None:
    # A 136-byte payload whose header declares up to 8 TB of float64.
    with pytest.raises(BadInputError, match="declares"):
        decode_npy(npy_with_header(header(shape=shape)))


@pytest.mark.parametrize(
    "text",
    [
        "{'a': (",  # tokenize.TokenError from NumPy's Python 2 header filter
        "{[]: 1}",  # TypeError: unhashable
        header(descr="[('a',)]"),
        header(shape="(10**30,)"),
        header(shape="(-1, -8)"),
        header(shape="(1.5,)"),
        header(descr="'<f8', 'x': 1"),
        header(descr="'not a dtype'"),
        "[1, 2, 3]",
        "",
    ],
)
def test_npy_with_a_hostile_header_is_refused(text: str) -> None:
    with pytest.raises(BadInputError, match=r"not a valid \.npy payload"):
        decode_npy(npy_with_header(text))


def test_npy_object_header_is_refused_before_reading_data() -> None:
    with pytest.raises(BadInputError, match="Python objects"):
        decode_npy(npy_with_header(header(descr="'O'")))


def test_npy_version_3_is_refused() -> None:
    payload = npy(np.arange(3))
    with pytest.raises(BadInputError, match="version"):
        decode_npy(payload[:6] + b"\x03\x00" + payload[8:])


def test_garbage_is_not_npy() -> None:
    with pytest.raises(BadInputError):
        decode_npy(b"\x93NUMPY\x01\x00garbage")


# --- json -------------------------------------------------------------------------------


def test_json_list() -> None:
    array = decode_json(b"[1, 2.5, -3]", "data")
    assert array.dtype == np.float64
    np.testing.assert_array_equal(array, [1.0, 2.5, -3.0])


def test_json_nested_list() -> None:
    array = decode_json(b"[[1, 2], [3, 4], [5, 6]]", "data")
    assert array.shape == (3, 2)
    assert array[2, 1] == 6.0


def test_json_object_with_the_field() -> None:
    payload = json.dumps({"ts": 17, "samples": [[0.5], [0.25]]}).encode()
    np.testing.assert_array_equal(decode_json(payload, "samples"), [[0.5], [0.25]])


def test_json_object_without_the_field_names_field_and_keys() -> None:
    with pytest.raises(BadInputError) as info:
        decode_json(b'{"values": [1], "ts": 3}', "data")
    assert "no field 'data'" in str(info.value)
    assert "keys: ts, values" in str(info.value)


def test_json_utf8_bom_free_utf16_is_accepted() -> None:
    # json.loads detects UTF-16/32 from bytes; the decoder should not care.
    np.testing.assert_array_equal(decode_json("[1, 2]".encode("utf-16"), "data"), [1, 2])


@pytest.mark.parametrize(
    "payload",
    [b"[1, NaN]", b"[Infinity]", b"[-Infinity, 1]", b'{"data": [NaN]}'],
)
def test_json_nan_and_infinity_are_refused(payload: bytes) -> None:
    with pytest.raises(BadInputError, match="refused"):
        decode_json(payload, "data")


@pytest.mark.parametrize(
    "payload",
    [
        b"[1e400]",
        b"[-1e400]",
        b"[[1], [1e999]]",
        b"[" + b"9" * 400 + b"]",  # an integer too large for a float64
        b"[1" + b"0" * 5000 + b"]",  # more digits than Python will parse
    ],
)
def test_json_huge_numbers_are_refused(payload: bytes) -> None:
    with pytest.raises(BadInputError):
        decode_json(payload, "data")


@pytest.mark.parametrize(
    "payload",
    [b'[1, "2"]', b"[true, 1]", b"[null]", b'[{"a": 1}]', b'[[1, 2], ["x", 3]]'],
)
def test_json_non_numbers_are_refused(payload: bytes) -> None:
    with pytest.raises(BadInputError, match="non-number"):
        decode_json(payload, "data")


@pytest.mark.parametrize(
    "payload", [b"1", b'"text"', b"null", b"true", b'{"data": 3}', b'{"data": {"x": 1}}']
)
def test_json_that_is_not_a_list_is_refused(payload: bytes) -> None:
    with pytest.raises(BadInputError, match="must be a list"):
        decode_json(payload, "data")


@pytest.mark.parametrize("payload", [b"[[1, 2], [3]]", b"[[1, 2], 3]", b"[[[1]], [2]]"])
def test_json_ragged_arrays_are_refused(payload: bytes) -> None:
    with pytest.raises(BadInputError, match="not rectangular"):
        decode_json(payload, "data")


def test_json_nesting_up_to_the_limit_is_fine() -> None:
    payload = b"[" * MAX_JSON_DEPTH + b"1" + b"]" * MAX_JSON_DEPTH
    assert decode_json(payload, "data").ndim == MAX_JSON_DEPTH


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 500, 100_000])
def test_json_deep_nesting_is_refused(depth: int) -> None:
    payload = b"[" * depth + b"1" + b"]" * depth
    with pytest.raises(BadInputError, match="nested"):
        decode_json(payload, "data")


@pytest.mark.parametrize("payload", [b"", b"[1, 2", b"\xff\xfe\xfa", b"[1,]", b"[1] x"])
def test_json_that_is_not_json_is_refused(payload: bytes) -> None:
    with pytest.raises(BadInputError, match="not valid JSON"):
        decode_json(payload, "data")


def test_json_empty_list_is_an_empty_array() -> None:
    assert decode_json(b"[]", "data").shape == (0,)


# --- choosing a decoder -----------------------------------------------------------------


def test_decoder_for_binds_the_route_input() -> None:
    raw = decoder_for("raw", (2,), np.dtype(np.uint8), "data")
    np.testing.assert_array_equal(raw(b"\x01\x02"), [1, 2])
    assert decoder_for("npy", (2,), np.dtype(np.uint8), "data") is decode_npy
    as_json = decoder_for("json", (2,), np.dtype(np.uint8), "xs")
    np.testing.assert_array_equal(as_json(b'{"xs": [3, 4]}'), [3.0, 4.0])
    with pytest.raises(ValueError, match="unknown input format 'bmp'"):
        decoder_for("bmp", (2,), np.dtype(np.uint8), "data")


# --- fuzz: any bytes either decode or raise BadInputError -------------------------------

NPY_HEADER = npy(np.arange(4, dtype=np.float32))[:10]


@given(st.binary(max_size=2048))
@example(b"PK\x03\x04\x00")
@example(b"\x80\x04\x95")  # the start of a pickle
@example(NPY_HEADER)
def test_fuzz_raw(payload: bytes) -> None:
    assert_decodes_or_refuses(lambda: decode_raw(payload, (2, 4), np.dtype(np.float32)))


@given(st.one_of(st.binary(max_size=2048), st.binary(max_size=512).map(NPY_HEADER.__add__)))
@example(b"PK\x03\x04\x00")
@example(b"PK\x05\x06" + b"\x00" * 18)
@example(b"\x80\x04\x95")
@example(npy(np.arange(4, dtype=np.float32))[:-1])
def test_fuzz_npy(payload: bytes) -> None:
    assert_decodes_or_refuses(lambda: decode_npy(payload))


@given(
    descr=st.sampled_from(["'<f8'", "'|u1'", "'<i2'", "'O'", "'<U3'", "'V0'", "[('a', '<f4')]"]),
    shape=st.lists(st.integers(min_value=-3, max_value=2**40), max_size=4),
    data=st.binary(max_size=64),
)
def test_fuzz_npy_headers(descr: str, shape: list[int], data: bytes) -> None:
    text = header(descr=descr, shape="(" + "".join(f"{d}," for d in shape) + ")")
    assert_decodes_or_refuses(lambda: decode_npy(npy_with_header(text, data)))


@given(text=st.text(alphabet="{}()[]',:0123456789 abdefhoprstu<>_LFT", max_size=110))
@example(text="{'a': (")
def test_fuzz_npy_header_text(text: str) -> None:
    assert_decodes_or_refuses(lambda: decode_npy(npy_with_header(text)))


@st.composite
def json_ish(draw: st.DrawFn) -> bytes:
    """Mostly almost-valid JSON, so the fuzz reaches past the parser."""
    leaves = st.one_of(
        st.integers(), st.floats(), st.booleans(), st.none(), st.text(max_size=3)
    )
    value = draw(st.recursive(leaves, lambda inner: st.lists(inner, max_size=4), max_leaves=20))
    text = json.dumps(value)  # NaN and Infinity come out as their JSON-ish names
    if draw(st.booleans()):
        text = json.dumps({"data": value})
    return text.encode()


@given(st.one_of(st.binary(max_size=1024), json_ish()))
@example(b"[1e400]")
@example(b"[" * 5000)
def test_fuzz_json(payload: bytes) -> None:
    assert_decodes_or_refuses(lambda: decode_json(payload, "data"))


def assert_decodes_or_refuses(decode: Any) -> None:
    try:
        array = decode()
    except BadInputError as exc:
        assert str(exc)  # every refusal says why
    else:
        assert isinstance(array, np.ndarray)


# --- images (jpeg, png, image; base64 inside JSON) --------------------------------------

IMAGES = Path(__file__).parent / "data" / "images"


def test_image_decoder_fits_the_frame_to_the_model_input() -> None:
    decode = decoder_for("png", (1, 8, 8, 3), np.dtype(np.uint8), "data")
    array = decode((IMAGES / "quadrants.png").read_bytes())
    assert array.shape == (8, 8, 3) and array.dtype == np.float32
    np.testing.assert_array_equal(array[0, 0], [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(array[7, 7], [1.0, 1.0, 1.0])


def test_image_decoder_takes_the_route_options() -> None:
    options = ImageOptions(8, 8, 1, resize="letterbox", mean=(0.5,), std=(0.5,),
                           pad_value=0)
    decode = decoder_for("image", (1, 8, 8, 1), np.dtype(np.uint8), "data",
                         image_options=options)
    array = decode((IMAGES / "quadrants.jpg").read_bytes())
    assert array.shape == (8, 8, 1)
    np.testing.assert_allclose(array[0, :, 0], -1.0)  # a letterbox bar: pixel 0 -> -1
    assert array.max() == pytest.approx(1.0, abs=0.02)  # the white quadrant


def test_base64_field_carries_the_image_inside_json() -> None:
    png = (IMAGES / "quadrants.png").read_bytes()
    payload = json.dumps({"id": 7, "jpeg": base64.b64encode(png).decode()}).encode()
    decode = decoder_for("image", (1, 48, 64, 3), np.dtype(np.uint8), "data",
                         base64_field="jpeg")
    np.testing.assert_array_equal(decode(payload)[-1, 0], [0.0, 0.0, 1.0])
    with pytest.raises(BadInputError, match="not valid JSON"):
        decode(png)
    with pytest.raises(BadInputError, match="base64 string in 'jpeg'"):
        decode(b'{"frame": "..."}')


def test_frame_decoder_keeps_the_letterbox_geometry() -> None:
    options = ImageOptions(32, 32, 3, resize="letterbox")
    frames = frame_decoder_for("jpeg", options)
    decoded = frames((IMAGES / "quadrants.jpg").read_bytes())
    assert decoded.array.shape == (32, 32, 3)
    assert decoded.geometry == Geometry(48, 64, 4 / 32, 0.0, 24 / 32, 1.0)
    with pytest.raises(BadInputError, match="this route takes JPEG"):
        frames((IMAGES / "quadrants.png").read_bytes())
    with pytest.raises(ValueError, match="'npy' is not an image format"):
        frame_decoder_for("npy", options)


def test_an_image_format_needs_an_image_input() -> None:
    with pytest.raises(ValueError, match=r"input \[1x10\] is not an image input"):
        decoder_for("jpeg", (1, 10), np.dtype(np.uint8), "data")

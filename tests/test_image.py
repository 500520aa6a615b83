"""edged.image: frames -> float model inputs (decode, channels, fit, normalise)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from edged.config import InputConfig
from edged.errors import BadInputError
from edged.image import (
    Geometry,
    ImageOptions,
    decode_frame,
    fit,
    from_base64_json,
    input_layout,
    normalise,
    sniff,
)
from tests.support import images

DATA = Path(__file__).parent / "data" / "images"
Array = np.ndarray[Any, Any]
# ITU-R BT.601 luma of the quadrant colours (red, green, blue, white), as libjpeg and
# Pillow compute it: 0.299 R + 0.587 G + 0.114 B.
QUADRANT_LUMA = (76, 150, 29, 255)


def rgb(height: int, width: int, **settings: Any) -> ImageOptions:
    return ImageOptions(height, width, 3, **settings)


def quadrant_means(array: Array) -> list[Array]:
    """Mean of the interior of each quadrant (away from edges, where JPEG blurs)."""
    h, w = array.shape[0] // 2, array.shape[1] // 2
    dy, dx = max(1, h // 4), max(1, w // 4)
    return [
        array[y0 + dy : y0 + h - dy, x0 + dx : x0 + w - dx].reshape(-1, array.shape[2]).mean(0)
        for y0, x0 in ((0, 0), (0, w), (h, 0), (h, w))
    ]


# --- the model's input layout -----------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "layout"),
    [((1, 224, 224, 3), (224, 224, 3)), ((8, 8, 1), (8, 8, 1)), ((1, 28, 28), (28, 28, 1)),
     ((1, 64, 48, 1), (64, 48, 1))],
)
def test_input_layout_accepts_image_inputs(shape: tuple[int, ...], layout: tuple[int, ...]) -> None:
    assert input_layout(shape) == layout


@pytest.mark.parametrize("shape", [(1, 3, 224, 224), (1, 32, 32, 4), (1, 10), (2, 8, 8, 3)])
def test_input_layout_refuses_other_inputs(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="not an image input"):
        input_layout(shape)


def test_options_check_mean_and_std_lengths() -> None:
    with pytest.raises(ValueError, match="mean needs 1 or 3 values"):
        rgb(8, 8, mean=(0.1, 0.2))
    with pytest.raises(ValueError, match="must not be 0"):
        rgb(8, 8, std=(0.0,))


def test_options_from_a_route_input_section() -> None:
    config = InputConfig(format="jpeg", resize="letterbox", mean=(0.5,), std=(0.25,),
                         max_pixels=1000, pad_value=114)
    options = ImageOptions.from_config(config, (1, 32, 16, 3))
    assert options == ImageOptions(32, 16, 3, "letterbox", (0.5,), (0.25,), 1000, 114)


# --- formats ----------------------------------------------------------------------------


def test_sniff_tells_jpeg_from_png() -> None:
    assert sniff((DATA / "quadrants.jpg").read_bytes()) == "jpeg"
    assert sniff((DATA / "quadrants.png").read_bytes()) == "png"
    assert sniff(b"GIF89a") is None


def test_a_route_for_jpeg_refuses_png() -> None:
    with pytest.raises(BadInputError, match="payload is a PNG image; this route takes JPEG"):
        decode_frame((DATA / "quadrants.png").read_bytes(), "jpeg", rgb(8, 8))


@pytest.mark.parametrize("payload", [b"", b"hello", b"GIF89a\x01\x00\x01\x00"])
def test_what_is_not_an_image_is_bad_input(payload: bytes) -> None:
    with pytest.raises(BadInputError, match="not a JPEG or PNG image") as info:
        decode_frame(payload, "image", rgb(8, 8))
    assert info.value.reason == "bad_input"


@pytest.mark.parametrize("name", ["quadrants.jpg", "quadrants.png"])
def test_truncated_images_are_bad_input(name: str) -> None:
    data = (DATA / name).read_bytes()
    with pytest.raises(BadInputError, match="cannot be decoded"):
        decode_frame(data[: len(data) // 2], "image", rgb(48, 64))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([images.encode(images.quadrants(), "JPEG"),
                        images.encode(images.quadrants(), "PNG")]),
       st.integers(0, 10_000), st.binary(min_size=1, max_size=8))
def test_corrupt_frames_decode_or_raise_bad_input(good: bytes, at: int, junk: bytes) -> None:
    at = min(at, len(good) - 1)
    payload = good[:at] + junk + good[at + len(junk) :]
    try:
        out = decode_frame(payload, "image", rgb(12, 16))
    except BadInputError:
        return
    assert out.array.shape == (12, 16, 3)
    assert out.array.dtype == np.float32


# --- golden decodes ---------------------------------------------------------------------


def test_png_decodes_exactly() -> None:
    out = decode_frame((DATA / "quadrants.png").read_bytes(), "png", rgb(48, 64))
    np.testing.assert_array_equal(out.array, images.quadrants().astype(np.float32) / 255)
    assert out.geometry == Geometry(48, 64)


def test_jpeg_decodes_close_to_its_colours() -> None:
    out = decode_frame((DATA / "quadrants.jpg").read_bytes(), "jpeg", rgb(48, 64))
    for got, want in zip(quadrant_means(out.array * 255), images.QUADRANT_COLOURS, strict=True):
        np.testing.assert_allclose(got, want, atol=3)


@pytest.mark.parametrize("name", ["quadrants.jpg", "quadrants.png"])
def test_grayscale_models_get_luma(name: str) -> None:
    out = decode_frame((DATA / name).read_bytes(), "image", ImageOptions(48, 64, 1))
    assert out.array.shape == (48, 64, 1)
    for got, want in zip(quadrant_means(out.array * 255), QUADRANT_LUMA, strict=True):
        np.testing.assert_allclose(got, [want], atol=3)


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    payload, values = images.grey16_png()
    out = decode_frame(payload, "png", ImageOptions(8, 8, 1))
    expected = (values // 257).astype(np.float32) / 255
    np.testing.assert_allclose(out.array[..., 0], expected, atol=1e-6)
    assert out.array.max() == 1.0 and 0.45 < out.array.mean() < 0.55


def test_palette_transparency_is_dropped_to_its_colour() -> None:
    out = decode_frame(images.palette_png_with_transparency(), "png", rgb(4, 4))
    np.testing.assert_array_equal(out.array[0, 0], [0, 0, 0])
    np.testing.assert_array_equal(out.array[3, 3], [1, 1, 0])


def test_cmyk_jpeg_decodes_to_rgb() -> None:
    out = decode_frame((DATA / "cmyk.jpg").read_bytes(), "jpeg", rgb(8, 16))
    np.testing.assert_allclose(out.array.reshape(-1, 3).mean(0) * 255, [255, 0, 0], atol=6)


def test_large_jpeg_shrunk_by_libjpeg_matches_a_full_decode() -> None:
    # The decoder may skip work by decoding at 1/8 scale; the result must still be the
    # frame, shrunk: compare with Pillow's full decode and resize.
    frame = np.kron(images.quadrants(6, 8), np.ones((80, 80, 1), dtype=np.uint8))
    payload = images.encode(frame, "JPEG", quality=95)
    out = decode_frame(payload, "jpeg", rgb(24, 32))
    full = np.asarray(Image.fromarray(frame).resize((32, 24), Image.Resampling.BILINEAR))
    assert np.abs(out.array * 255 - full).mean() < 3


# --- decompression bombs ----------------------------------------------------------------


@pytest.mark.parametrize("payload", [images.png_bomb(), images.jpeg_bomb()],
                         ids=["png", "jpeg"])
def test_bombs_are_refused_from_their_header(payload: bytes) -> None:
    assert len(payload) < 1000
    with pytest.raises(BadInputError, match=r"pixels; the limit is 40000000 \(input.max_pixels\)"):
        decode_frame(payload, "image", rgb(8, 8))


@pytest.mark.parametrize("name", ["quadrants.jpg", "quadrants.png"])
def test_max_pixels_is_the_route_setting(name: str) -> None:
    payload = (DATA / name).read_bytes()
    decode_frame(payload, "image", rgb(8, 8, max_pixels=64 * 48))
    with pytest.raises(BadInputError, match="64x48 = 3072 pixels; the limit is 3071"):
        decode_frame(payload, "image", rgb(8, 8, max_pixels=64 * 48 - 1))


# --- fitting to the model's size --------------------------------------------------------


def test_stretch_fills_the_input() -> None:
    fitted, geometry = fit(images.quadrants(48, 64), rgb(10, 10))
    assert fitted.shape == (10, 10, 3)
    np.testing.assert_array_equal(fitted[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(fitted[9, 9], [255, 255, 255])
    assert geometry == Geometry(48, 64, 0.0, 0.0, 1.0, 1.0)


def test_letterbox_keeps_the_aspect_and_pads() -> None:
    # 64x48 into 32x32: scaled to 32x24, 4 rows of bars above and below.
    fitted, geometry = fit(images.quadrants(48, 64), rgb(32, 32, resize="letterbox",
                                                       pad_value=114))
    assert fitted.shape == (32, 32, 3)
    assert (fitted[:4] == 114).all() and (fitted[28:] == 114).all()
    np.testing.assert_array_equal(fitted[5, 1], [255, 0, 0])
    np.testing.assert_array_equal(fitted[26, 30], [255, 255, 255])
    assert geometry == Geometry(48, 64, 4 / 32, 0.0, 24 / 32, 1.0)


def test_crop_keeps_the_aspect_and_cuts_the_sides() -> None:
    # 64x48 into 24x24: scaled to 32x24, 4 columns cut on each side.
    fitted, geometry = fit(images.quadrants(48, 64), rgb(24, 24, resize="crop"))
    assert fitted.shape == (24, 24, 3)
    np.testing.assert_array_equal(fitted[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(fitted[23, 23], [255, 255, 255])
    assert geometry == Geometry(48, 64, 0.0, -4 / 24, 1.0, 32 / 24)


def test_crop_resizes_only_what_it_keeps() -> None:
    """A 1x40000 strip cropped into 224x224: scaled whole first it would be 224 x 8.96
    million pixels (6 GB) on the way; only its centre 1x175 pixels are resized (issue 20:
    frames whose aspect is far from the model's)."""
    strip = np.zeros((1, 40_000, 3), np.uint8)
    strip[0, 20_000:] = 255  # the right half white: the centre column is where it changes
    fitted, geometry = fit(strip, rgb(224, 224, resize="crop"))
    assert fitted.shape == (224, 224, 3)
    assert fitted[:, 0].max() < 10 and fitted[:, -1].min() > 245
    assert geometry.height == 1.0 and geometry.width == 40_000
    for tall in ((40_000, 1, 3), (3, 1, 3)):
        assert fit(np.full(tall, 128, np.uint8), rgb(224, 224, resize="crop"))[0].shape == \
            (224, 224, 3)


def test_geometry_maps_input_boxes_back_onto_the_frame() -> None:
    letterbox = Geometry(48, 64, 4 / 32, 0.0, 24 / 32, 1.0)
    # The content's own extent in the input is the whole frame.
    np.testing.assert_allclose(letterbox.to_frame(np.array([[4 / 32, 0, 28 / 32, 1]])),
                               [[0, 0, 1, 1]])
    # A box reaching into a bar ends at the frame's edge.
    np.testing.assert_allclose(letterbox.to_frame(np.array([[0, 0.25, 0.5, 0.75]])),
                               [[0, 0.25, 0.5, 0.75]])
    crop = Geometry(48, 64, 0.0, -4 / 24, 1.0, 32 / 24)
    np.testing.assert_allclose(crop.to_frame(np.array([[0, 0, 1, 1]])),
                               [[0, 0.125, 1, 0.875]])


# --- normalising ------------------------------------------------------------------------


def test_normalise_per_channel() -> None:
    pixels = np.array([[[0, 128, 255]]], dtype=np.uint8)
    out = normalise(pixels, rgb(1, 1, mean=(0.0, 0.5, 1.0), std=(1.0, 0.5, 0.25)))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[[0.0, (128 / 255 - 0.5) / 0.5, 0.0]]], atol=1e-6)


def test_mobilenet_style_normalisation_spans_minus_one_to_one() -> None:
    pixels = np.array([[[0], [255]]], dtype=np.uint8)
    out = normalise(pixels, ImageOptions(1, 2, 1, mean=(0.5,), std=(0.5,)))
    np.testing.assert_allclose(out.reshape(-1), [-1.0, 1.0], atol=1e-6)


# --- base64 inside JSON -----------------------------------------------------------------


def test_base64_image_in_json() -> None:
    png = (DATA / "quadrants.png").read_bytes()
    plain = json.dumps({"frame": base64.b64encode(png).decode()}).encode()
    assert from_base64_json(plain, "frame") == png
    url = json.dumps({"frame": "data:image/png;base64," + base64.b64encode(png).decode()})
    assert from_base64_json(url.encode(), "frame") == png


@pytest.mark.parametrize(
    ("payload", "message"),
    [(b"not json", "not valid JSON"), (b'{"img": "abc"}', "base64 string in 'frame'"),
     (b'[1, 2]', "base64 string in 'frame'"), (b'{"frame": "@@@@"}', "not hold valid base64")],
)
def test_bad_base64_json_is_bad_input(payload: bytes, message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        from_base64_json(payload, "frame")

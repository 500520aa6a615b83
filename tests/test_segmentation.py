"""edged.postprocess.segmentation: hand-computed masks, and MediaPipe's real selfie
segmentation model against the mask MediaPipe's own pipeline made of the same image
(tests/data/mediapipe_goldens.json, recorded by scripts/models/reference_goldens.py)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from edged.config import ModelConfig
from edged.image import Geometry, ImageOptions, decode_frame
from edged.postprocess.base import PostProcessor
from edged.postprocess.registry import postprocessor_for
from edged.runtime import select_backend
from edged.runtime.tensors import TensorSpec

Array = np.ndarray[Any, Any]
CACHE = Path(__file__).resolve().parents[1] / ".cache" / "third_party"
GOLDENS = json.loads((Path(__file__).parent / "data" / "mediapipe_goldens.json").read_text())


def spec(shape: tuple[int, ...], dtype: Any = np.float32, scale: float = 0.0,
         zero_point: int = 0) -> TensorSpec:
    return TensorSpec("out", 0, shape, np.dtype(dtype), scale, zero_point)


def seg(specs: list[TensorSpec], labels: tuple[str, ...] = (), **keys: Any) -> PostProcessor:
    config = ModelConfig(path=Path("m.tflite"), postprocess="segmentation",
                         segmentation=keys)
    return postprocessor_for("segmentation", specs, labels, 3, config=config)


def decode_rle(mask: dict[str, Any]) -> Array:
    return np.repeat(mask["values"], mask["counts"]).reshape(mask["size"])


def scores() -> Array:
    """[1, 4, 8, 3]: background, then class 1 in a 2x4 block, class 2 in one pixel."""
    out = np.zeros((1, 4, 8, 3), np.float32)
    out[..., 0] = 1.0
    out[0, 1:3, 2:6, 1] = 2.0
    out[0, 3, 7, 2] = 2.0
    return out


def test_class_scores_golden() -> None:
    result = seg([spec((1, 4, 8, 3))], ("bg", "cat", "dog"), mask="rle")([scores()])
    assert result["classes"] == [
        {"index": 1, "label": "cat", "area": 0.25,
         "box": {"ymin": 0.25, "xmin": 0.25, "ymax": 0.75, "xmax": 0.75}},
        {"index": 2, "label": "dog", "area": 0.03125,
         "box": {"ymin": 0.75, "xmin": 0.875, "ymax": 1.0, "xmax": 1.0}},
    ]
    assert result["count"] == 2
    assert result["mask"]["values"][:3] == [0, 1, 0]
    np.testing.assert_array_equal(decode_rle(result["mask"]),
                                  np.argmax(scores()[0], axis=2))


def test_letterbox_bars_are_not_part_of_the_frame() -> None:
    # Content in rows 1..3 of 4 (top 0.25, height 0.5): the frame is 2x8 of the mask.
    geometry = Geometry(20, 80, 0.25, 0.0, 0.5, 1.0)
    result = seg([spec((1, 4, 8, 3))], background=None, mask="png")([scores()],
                                                                    geometry=geometry)
    by_index = {c["index"]: c for c in result["classes"]}
    assert by_index[1]["area"] == 0.5 and by_index[0]["area"] == 0.5
    assert by_index[1]["box"] == {"ymin": 0.0, "xmin": 0.25, "ymax": 1.0, "xmax": 0.75}
    assert 2 not in by_index  # it lay in the bottom bar
    png = Image.open(io.BytesIO(base64.b64decode(result["mask"]["data"])))
    assert png.size == (8, 2) and np.asarray(png).max() == 1


def test_single_channel_threshold_on_quantized_values() -> None:
    q = np.zeros((1, 4, 4, 1), np.uint8)
    q[0, 0, 0], q[0, 1, 1], q[0, 2, 2] = 200, 127, 128  # scale 1/255: 0.78, 0.498, 0.502
    result = seg([spec((1, 4, 4, 1), np.uint8, 1 / 255, 0)], ("person",))([q])
    assert result["classes"] == [{"index": 0, "label": "person", "area": 0.125,
                                  "box": {"ymin": 0.0, "xmin": 0.0, "ymax": 0.75,
                                          "xmax": 0.75}}]
    higher = seg([spec((1, 4, 4, 1), np.uint8, 1 / 255, 0)], threshold=0.7)([q])
    assert higher["classes"][0]["area"] == 0.0625


def test_a_class_map_from_the_model_and_min_area() -> None:
    classes = np.zeros((1, 10, 10), np.int32)
    classes[0, :5] = 3
    classes[0, 9, 9] = 4
    result = seg([spec((1, 10, 10), np.int32)], min_area=0.05)([classes])
    assert [(c["index"], c["area"]) for c in result["classes"]] == [(3, 0.5)]


@pytest.mark.parametrize(
    ("shape", "dtype", "message"),
    [((1, 16), np.float32, "expects \\[1, H, W, classes\\]"),
     ((1, 4, 4, 2), np.int64, "integer class map is \\[1, H, W\\]")],
)
def test_outputs_that_do_not_fit_are_refused(shape: tuple[int, ...], dtype: Any,
                                             message: str) -> None:
    with pytest.raises(ValueError, match=message):
        seg([spec(shape, dtype)])


def test_selfie_segmentation_agrees_with_mediapipe() -> None:
    interpreter = select_backend().interpreter_class(
        model_path=str(CACHE / "selfie_segmentation.tflite"))
    interpreter.allocate_tensors()
    inp = TensorSpec.from_detail(interpreter.get_input_details()[0])
    out = TensorSpec.from_detail(interpreter.get_output_details()[0])
    frame = decode_frame((CACHE / "astronaut.png").read_bytes(), "png",
                         ImageOptions.for_input(inp.shape))  # pixel / 255, as MediaPipe
    interpreter.set_tensor(inp.index, frame.array[None].astype(np.float32))
    interpreter.invoke()
    post = seg([out], ("person",), threshold=0.5, mask="rle")
    result = post([interpreter.get_tensor(out.index)], geometry=frame.geometry)
    golden = GOLDENS["selfie_segmentation"]
    person = result["classes"][0]
    assert abs(person["area"] - golden["area"]) < 0.01, (person["area"], golden["area"])
    for k in ("ymin", "xmin", "ymax", "xmax"):
        assert abs(person["box"][k] - golden["box"][k]) < 0.02, (person["box"], golden["box"])
    ours = decode_rle(result["mask"]).astype(bool)  # 256 x 256
    runs = golden["mask_rle"]["counts"]  # False, True, False, ... over 512 x 512
    theirs = np.repeat(np.arange(len(runs)) % 2 == 1, runs).reshape(golden["mask_rle"]["size"])
    theirs_at_ours = theirs[::2, ::2]
    iou = (ours & theirs_at_ours).sum() / (ours | theirs_at_ours).sum()
    print(f"\nselfie segmentation vs MediaPipe: area {person['area']:.4f} vs "
          f"{golden['area']:.4f}, mask IoU {iou:.4f}")
    assert iou > 0.97, iou


@pytest.mark.parametrize("kind", ["png", "rle"])
def test_a_mask_on_its_own_topic_is_the_mask_the_result_would_carry(kind: str) -> None:
    import time

    from edged.config import RouteConfig
    from edged.pipeline import Pipeline
    from edged.responder import Responder
    from edged.routes import Route
    from edged.runtime import load_model
    from edged.stats import Stats
    from edged.types import Inbound
    from tests.support.fakes import FakeTransport

    frame = (CACHE / "astronaut.png").read_bytes()
    masks: dict[bool, Any] = {}
    for own_topic in (False, True):
        cfg = ModelConfig(path=CACHE / "selfie_segmentation.tflite", postprocess="segmentation",
                          segmentation={"mask": kind, "mask_topic": own_topic})
        model = load_model("selfie", cfg, select_backend())
        transport, stats = FakeTransport(), Stats()
        route = Route.bind(RouteConfig(name="seg", subscribe="cam/+", model="selfie",
                                       input={"format": "png"}, deadline_ms=60_000),
                           {"selfie": model})
        pipeline = Pipeline([route], Responder(transport, "box", "edged", stats), transport,
                            stats)
        pipeline.start()
        pipeline.submit(Inbound("cam/1", frame, 1, time.time(), time.monotonic(), "reply",
                                b"c7"))
        pipeline.stop(30.0)
        by_topic = {m.topic: m for m in transport.published}
        reply = json.loads(by_topic["reply"].payload)
        assert reply["result"]["classes"], reply
        if not own_topic:
            masks[own_topic] = reply["result"]["mask"]
            assert "reply/mask" not in by_topic
            continue
        assert "mask" not in reply["result"]
        mask = by_topic["reply/mask"]
        assert mask.correlation_data == b"c7"
        masks[own_topic] = mask.payload
    inside, alone = masks[False], masks[True]
    if kind == "png":
        want = np.asarray(Image.open(io.BytesIO(base64.b64decode(inside["data"]))))
        got = np.asarray(Image.open(io.BytesIO(alone)))  # a PNG file, as it is
    else:
        want, got = decode_rle(inside), decode_rle(json.loads(alone))
    assert got.shape == tuple(inside["size"])
    np.testing.assert_array_equal(got, want)

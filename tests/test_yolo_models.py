"""The bundled YOLO-layout shapes detectors (scripts/models/yolo_model.py): the v8 layout decoded
by edged and by edgefirst-decoder from the same real int8 outputs; both layouts against
the scenes' ground truth, directly and end to end through mosquitto as letterboxed PNG
frames."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edged.config import ModelConfig
from edged.postprocess.base import PostProcessor
from edged.postprocess.options import PostOptions
from edged.postprocess.registry import postprocessor_for
from edged.runtime import select_backend
from edged.runtime.tensors import TensorSpec
from tests.support.broker import Broker
from tests.support.daemon import MODELS, Edged
from tests.support.probe import Probe
from tests.test_streams import edged_config, encode, letterboxed_frame, match, model, start

Array = np.ndarray[Any, Any]


def _edgefirst() -> tuple[Any, Any]:
    """edgefirst-decoder (a test dependency in pyproject.toml), imported when a test needs
    it: the legacy run (tflite-runtime, numpy<2) collects this module without it."""
    import edgefirst.decoder as decoder
    import edgefirst.tensor as tensor

    return decoder, tensor
MANIFEST = json.loads((MODELS / "manifest.json").read_text())["models"]
LABELS = tuple((MODELS / "shapes.labels").read_text().split())
FILES = {"v8": "shapes_yolov8_int8.tflite", "split": "shapes_yolo_split_int8.tflite"}
HOLD = np.load(MODELS / "shapes_holdout.npz")


def interpreter(kind: str) -> tuple[Any, TensorSpec, list[TensorSpec]]:
    interp = select_backend().interpreter_class(model_path=str(MODELS / FILES[kind]))
    interp.allocate_tensors()
    inp = TensorSpec.from_detail(interp.get_input_details()[0])
    return interp, inp, [TensorSpec.from_detail(d) for d in interp.get_output_details()]


def decoder(kind: str, inp: TensorSpec, specs: list[TensorSpec]) -> PostProcessor:
    config = ModelConfig(path=Path(FILES[kind]), postprocess="yolo", score_threshold=0.5,
                         yolo={"iou_threshold": 0.5})
    return postprocessor_for("yolo", specs, LABELS, 3, options=PostOptions(
        score_threshold=0.5), input_spec=inp, config=config)


def run(interp: Any, inp: TensorSpec, specs: list[TensorSpec], image: Array) -> list[Array]:
    interp.set_tensor(inp.index, image[None])
    interp.invoke()
    return [interp.get_tensor(s.index) for s in specs]


def f1(results: list[dict[str, Any]], boxes: Array, classes: Array, counts: Array) -> float:
    tp = fp = fn = 0
    for result, b, c, n in zip(results, boxes, classes, counts, strict=True):
        hits = match(result["detections"], b[:n], c[:n])
        tp, fp, fn = tp + hits, fp + result["count"] - hits, fn + int(n) - hits
    precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    return 2 * precision * recall / max(precision + recall, 1e-9)


def test_v8_outputs_decode_as_edgefirst_decodes_them() -> None:
    ef, ef_tensor = _edgefirst()
    interp, inp, specs = interpreter("v8")
    [out] = specs
    assert out.shape == (1, 7, 64) and out.dtype == np.int8
    post = decoder("v8", inp, specs)
    reference = ef.Decoder.new_from_outputs(
        [ef.Output.detection(shape=list(out.shape)).with_quantization(
            scale=out.scale, zero_point=out.zero_point)],
        score_threshold=0.5, iou_threshold=0.5)
    compared = 0
    for image in HOLD["images"][:60]:
        [raw] = run(interp, inp, specs, image)
        tensor = ef_tensor.Tensor(list(raw.shape), dtype="int8")
        tensor.from_numpy(raw)
        boxes, scores, classes, _ = reference.decode([tensor])
        ours = post([raw])["detections"]
        # Scores one quantum off the threshold: the two round differently; compare the rest.
        ours = [d for d in ours if d["score"] > 0.5 + out.scale * 1.5]
        keep = scores > 0.5 + out.scale * 1.5
        assert len(ours) == int(keep.sum())
        for det, box, score, cls in zip(ours, boxes[keep], scores[keep], classes[keep],
                                        strict=True):
            assert det["index"] == int(cls)
            assert abs(det["score"] - float(score)) < 1e-5
            got = [det["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")]
            np.testing.assert_allclose(got, np.clip(box, 0, 1), atol=1e-4)
            compared += 1
    assert compared >= 60  # most scenes hold one to three shapes


@pytest.mark.parametrize("kind", ["v8", "split"])
def test_bundled_yolo_models_find_the_shapes(kind: str) -> None:
    interp, inp, specs = interpreter(kind)
    post = decoder(kind, inp, specs)
    results = [post(run(interp, inp, specs, image)) for image in HOLD["images"]]
    score = f1(results, HOLD["boxes"], HOLD["classes"], HOLD["counts"])
    entry = MANIFEST[f"yolo_{kind}"]
    print(f"\nyolo {kind}: F1 {score:.4f} decoded by edged; manifest (NumPy decode in "
          f"scripts/models/yolo_model.py) {entry['int8_accuracy']:.4f}")
    assert score >= entry["int8_accuracy"] - 0.02


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["v8", "split"])
def test_yolo_on_letterboxed_png_frames_through_the_broker(
    kind: str, tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged]
) -> None:
    scenes = []
    for image, boxes, classes, count in zip(HOLD["images"], HOLD["boxes"], HOLD["classes"],
                                            HOLD["counts"], strict=True):
        made = letterboxed_frame(image, boxes[:count])
        if made is not None:
            scenes.append((encode(made[0], "PNG"), made[1], classes[:count]))
    route = {"name": "yolo", "subscribe": "cams/+/yolo", "model": "yolo",
             "input": {"format": "png", "resize": "letterbox", "pad_value": 128},
             # Generous: on a loaded CI box an invoke of this 0.6 ms model took 22 ms.
             "queue_size": 512, "deadline_ms": 30000}
    config = edged_config(broker.port, model("yolo", FILES[kind], "shapes.labels",
                                             postprocess="yolo", score_threshold=0.5,
                                             workers=2, yolo={"iou_threshold": 0.5}), [route],
                          device_id=f"yolo-{kind}")
    start(tmp_path, config, probe, daemons)
    probe.subscribe(f"replies/yolo-{kind}")
    for i, (png, _, _) in enumerate(scenes):
        probe.publish("cams/yard/yolo", png, response_topic=f"replies/yolo-{kind}",
                      correlation_data=str(i).encode())
        if i % 50 == 49:
            time.sleep(0.05)
    replies = probe.collect(len(scenes), 60, topic=f"replies/yolo-{kind}")
    assert len(replies) == len(scenes)
    results, truths, classes = [], [], []
    for reply in replies:
        body = reply.json()
        assert "error" not in body, body.get("error")
        _, truth, cls = scenes[int(reply.correlation_data or b"-1")]
        results.append(body["result"])
        truths.append(truth)
        classes.append(cls)
    counts = np.array([len(t) for t in truths])
    score = f1(results, np.array(truths, dtype=object), np.array(classes, dtype=object), counts)
    print(f"\nyolo {kind} as letterboxed 128x96 PNG through mosquitto: F1 {score:.4f} on "
          f"{len(scenes)} frames; manifest {MANIFEST[f'yolo_{kind}']['int8_accuracy']:.4f}")
    # Boxes are compared in the frame's own fractions: had edged not undone the bars,
    # every y would be off by up to a sixth of the frame and few IoUs would reach 0.5.
    assert score >= MANIFEST[f"yolo_{kind}"]["int8_accuracy"] - 0.06

"""The shapes detector bundled with edged: synthetic data, an SSD-style model, and its
conversion to a full-integer TFLite model that ends in ``TFLite_Detection_PostProcess``.

Used by ``scripts/models/make_models.py --only detection``; development only (TensorFlow).

Images are 64x64 RGB: a random background colour with a brightness gradient and gaussian
noise, and one to three non-overlapping filled shapes (circle, square, upward triangle) of
10-26 px in colours far from the background. Boxes are [ymin, xmin, ymax, xmax] in [0, 1]
of the frame, the layout of the TFLite detection post-process.

The network predicts, for each of 8x8 grid cells x 2 square anchors (0.2 and 0.35 of the
frame), class scores (softmax over background + 3 classes) and box offsets in the usual SSD
encoding (ty, tx, th, tw scaled by 10, 10, 5, 5). The converter fuses a function marked
``experimental_implements="TFLite_Detection_PostProcess"`` into that custom op, which
decodes the boxes against the anchors and runs fast NMS, so the model has the four float
outputs of the Coral/TFLite detection models: boxes [1, 10, 4], classes [1, 10],
scores [1, 10], count [1].
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

SHAPE_CLASSES = ("circle", "square", "triangle")
IMAGE = 64
GRID = 8
ANCHOR_SIZES = (0.2, 0.35)
NUM_ANCHORS = GRID * GRID * len(ANCHOR_SIZES)
MAX_DETECTIONS = 10
SCALES = (10.0, 10.0, 5.0, 5.0)  # y, x, h, w: the usual SSD box-coder scales
NMS_SCORE = 0.3
NMS_IOU = 0.5
EVAL_SCORE = 0.5
EVAL_IOU = 0.5
MAX_SHAPES = 3

FloatArray = npt.NDArray[np.float32]
UInt8Array = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Scene:
    """Images with their padded ground truth (class -1 and zero box where there is none)."""

    images: UInt8Array  # [N, 64, 64, 3]
    boxes: FloatArray  # [N, MAX_SHAPES, 4] ymin, xmin, ymax, xmax in [0, 1]
    classes: npt.NDArray[np.int64]  # [N, MAX_SHAPES]
    counts: npt.NDArray[np.int64]  # [N]


# --------------------------------------------------------------------------- data


def _background(rng: np.random.Generator) -> tuple[FloatArray, FloatArray]:
    base = rng.uniform(40, 215, size=3)
    y, x = np.mgrid[0:IMAGE, 0:IMAGE].astype(np.float32) / IMAGE
    slope = rng.uniform(-40, 40, size=2)
    img = base + (slope[0] * (y - 0.5) + slope[1] * (x - 0.5))[..., None]
    img = img + rng.normal(0.0, rng.uniform(5, 25), size=(IMAGE, IMAGE, 3))
    return img.astype(np.float32), base.astype(np.float32)


def _mask(kind: int, cy: float, cx: float, r: float) -> npt.NDArray[np.bool_]:
    y, x = np.mgrid[0:IMAGE, 0:IMAGE].astype(np.float32) + 0.5
    if SHAPE_CLASSES[kind] == "circle":
        return np.asarray((y - cy) ** 2 + (x - cx) ** 2 <= r * r)
    if SHAPE_CLASSES[kind] == "square":
        return np.asarray((np.abs(y - cy) <= r) & (np.abs(x - cx) <= r))
    # Upward triangle: apex at the top centre, base along the bottom edge of the box.
    inside_rows = (y >= cy - r) & (y <= cy + r)
    half_width = (y - (cy - r)) / 2.0
    return np.asarray(inside_rows & (np.abs(x - cx) <= half_width))


def _place(rng: np.random.Generator, taken: list[FloatArray]) -> FloatArray | None:
    """A box for a new shape that keeps clear of the ones already placed."""
    for _ in range(20):
        r = rng.uniform(5, 13)
        cy, cx = rng.uniform(r, IMAGE - r, size=2)
        box = np.array([cy - r, cx - r, cy + r, cx + r], dtype=np.float32)
        clear = all(
            box[2] + 2 < t[0] or t[2] + 2 < box[0] or box[3] + 2 < t[1] or t[3] + 2 < box[1]
            for t in taken
        )
        if clear:
            return box
    return None


def synth_scene(rng: np.random.Generator) -> tuple[UInt8Array, list[FloatArray], list[int]]:
    """One image with its boxes (pixels) and classes."""
    img, base = _background(rng)
    boxes: list[FloatArray] = []
    classes: list[int] = []
    for _ in range(int(rng.integers(1, MAX_SHAPES + 1))):
        box = _place(rng, boxes)
        if box is None:
            continue
        kind = int(rng.integers(len(SHAPE_CLASSES)))
        colour = rng.uniform(0, 255, size=3)
        while np.abs(colour - base).sum() < 150:  # keep every shape visible
            colour = rng.uniform(0, 255, size=3)
        cy, cx, r = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, (box[2] - box[0]) / 2
        img[_mask(kind, cy, cx, r)] = colour + rng.normal(0, 8, size=3)
        boxes.append(box)
        classes.append(kind)
    return np.clip(img, 0, 255).astype(np.uint8), boxes, classes


def shapes_dataset(n: int, seed: int) -> Scene:
    """``n`` scenes with padded ground truth, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    images = np.empty((n, IMAGE, IMAGE, 3), dtype=np.uint8)
    boxes = np.zeros((n, MAX_SHAPES, 4), dtype=np.float32)
    classes = np.full((n, MAX_SHAPES), -1, dtype=np.int64)
    counts = np.zeros(n, dtype=np.int64)
    for i in range(n):
        images[i], b, c = synth_scene(rng)
        counts[i] = len(b)
        if b:
            boxes[i, : len(b)] = np.clip(np.stack(b) / IMAGE, 0.0, 1.0)
            classes[i, : len(c)] = c
    return Scene(images, boxes, classes, counts)


# --------------------------------------------------------------------------- anchors


def anchors() -> FloatArray:
    """[NUM_ANCHORS, 4] as (ycenter, xcenter, h, w), cell-major like the head's reshape."""
    rows = []
    for gy in range(GRID):
        for gx in range(GRID):
            for size in ANCHOR_SIZES:
                rows.append(((gy + 0.5) / GRID, (gx + 0.5) / GRID, size, size))
    return np.array(rows, dtype=np.float32)


def _iou(boxes: FloatArray, anchor_corners: FloatArray) -> FloatArray:
    """IoU of every box [M, 4] with every anchor [N, 4] (both corner form) -> [M, N]."""
    top = np.maximum(boxes[:, None, :2], anchor_corners[None, :, :2])
    bottom = np.minimum(boxes[:, None, 2:], anchor_corners[None, :, 2:])
    inter = np.prod(np.clip(bottom - top, 0.0, None), axis=2)
    area_b = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)[:, None]
    area_a = np.prod(anchor_corners[:, 2:] - anchor_corners[:, :2], axis=1)[None, :]
    return np.asarray(inter / (area_b + area_a - inter + 1e-9), dtype=np.float32)


def encode_targets(scene: Scene, anc: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per anchor: the box regression target [N, A, 4] and the class [N, A] (0 background).

    An anchor is positive when its IoU with a shape reaches 0.5; each shape also claims
    its best anchor, so small shapes are never left without one.
    """
    corners = np.concatenate([anc[:, :2] - anc[:, 2:] / 2, anc[:, :2] + anc[:, 2:] / 2], 1)
    loc = np.zeros((len(scene.images), len(anc), 4), dtype=np.float32)
    cls = np.zeros((len(scene.images), len(anc)), dtype=np.float32)
    for i, count in enumerate(scene.counts):
        if count == 0:
            continue
        gt = scene.boxes[i, :count]
        iou = _iou(gt, corners)
        best_gt = iou.argmax(0)
        positive = iou.max(0) >= 0.5
        forced = iou.argmax(1)
        best_gt[forced] = np.arange(count)
        positive[forced] = True
        g = gt[best_gt]
        gc = (g[:, :2] + g[:, 2:]) / 2
        gs = g[:, 2:] - g[:, :2]
        target = np.concatenate(
            [(gc - anc[:, :2]) / anc[:, 2:] * SCALES[0], np.log(gs / anc[:, 2:]) * SCALES[2]], 1
        )
        loc[i] = np.where(positive[:, None], target, 0.0)
        cls[i] = np.where(positive, scene.classes[i, best_gt] + 1, 0)
    return loc, cls


# --------------------------------------------------------------------------- model


def build_detector() -> tf.keras.Model:
    """A small convolutional backbone down to the 8x8 grid, with box and class heads."""
    layers = tf.keras.layers
    inputs = tf.keras.Input(shape=(IMAGE, IMAGE, 3))
    x = inputs
    for filters, stride in ((16, 2), (32, 1), (32, 2), (64, 1), (64, 2), (64, 1)):
        x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU(6.0)(x)
    per_cell = len(ANCHOR_SIZES)
    loc = layers.Conv2D(per_cell * 4, 3, padding="same")(x)
    loc = layers.Reshape((NUM_ANCHORS, 4), name="box_encodings")(loc)
    logits = layers.Conv2D(per_cell * (len(SHAPE_CLASSES) + 1), 3, padding="same")(x)
    logits = layers.Reshape((NUM_ANCHORS, len(SHAPE_CLASSES) + 1))(logits)
    return tf.keras.Model(inputs, [loc, logits], name="shapes_ssd")


def _loss(model: tf.keras.Model, x: tf.Tensor, loc_t: tf.Tensor, cls_t: tf.Tensor) -> tf.Tensor:
    """Smooth-L1 on positive anchors plus cross-entropy with 3:1 hard-negative mining."""
    loc, logits = model(x, training=True)
    positive = cls_t > 0
    num_pos = tf.maximum(tf.reduce_sum(tf.cast(positive, tf.float32)), 1.0)
    diff = tf.abs(loc - loc_t)
    smooth = tf.where(diff < 1.0, 0.5 * diff * diff, diff - 0.5)
    loc_loss = tf.reduce_sum(tf.where(positive[..., None], smooth, 0.0)) / num_pos
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(cls_t, tf.int32), logits)
    neg = tf.reshape(tf.where(positive, 0.0, ce), [-1])
    k = tf.minimum(tf.cast(3.0 * num_pos, tf.int32), tf.size(neg))
    hard_neg = tf.reduce_sum(tf.math.top_k(neg, k=k).values)
    cls_loss = (tf.reduce_sum(tf.where(positive, ce, 0.0)) + hard_neg) / num_pos
    return loc_loss + cls_loss


def train_detector(model: tf.keras.Model, scene: Scene, epochs: int, seed: int) -> None:
    """Mini-batch Adam with a cosine learning-rate decay; flips as augmentation."""
    anc = anchors()
    x_all = scene.images.astype(np.float32) / 255.0
    rng = np.random.default_rng(seed)
    steps = epochs * (len(x_all) // 64)
    lr = tf.keras.optimizers.schedules.CosineDecay(2e-3, steps)
    optimizer = tf.keras.optimizers.Adam(lr)

    @tf.function
    def step(x: tf.Tensor, loc_t: tf.Tensor, cls_t: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = _loss(model, x, loc_t, cls_t)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    for epoch in range(epochs):
        flipped = _flip(scene, rng)
        loc_t, cls_t = encode_targets(flipped, anc)
        x_flip = flipped.images.astype(np.float32) / 255.0
        order = rng.permutation(len(x_all))
        losses = [
            float(step(x_flip[b], loc_t[b], cls_t[b]))
            for b in np.array_split(order, len(order) // 64)
        ]
        print(f"detection: epoch {epoch + 1}/{epochs} loss {np.mean(losses):.3f}", flush=True)


def _flip(scene: Scene, rng: np.random.Generator) -> Scene:
    """Mirror a random half of the scenes left-right (every shape class is symmetric)."""
    flip = rng.random(len(scene.images)) < 0.5
    images = np.where(flip[:, None, None, None], scene.images[:, :, ::-1], scene.images)
    boxes = scene.boxes.copy()
    mirrored = np.stack([boxes[..., 0], 1 - boxes[..., 3], boxes[..., 2], 1 - boxes[..., 1]], -1)
    real = (scene.classes >= 0)[..., None]
    boxes = np.where(flip[:, None, None] & real, mirrored, boxes)
    return Scene(images, boxes.astype(np.float32), scene.classes, scene.counts)


# --------------------------------------------------------------------------- conversion


def _postprocess_signature() -> str:
    """The attributes the converter gives the fused TFLite_Detection_PostProcess op."""
    attrs = {
        "max_detections": f"i: {MAX_DETECTIONS}",
        "max_classes_per_detection": "i: 1",
        "detections_per_class": f"i: {MAX_DETECTIONS}",
        "use_regular_nms": "b: false",
        "nms_score_threshold": f"f: {NMS_SCORE:f}",
        "nms_iou_threshold": f"f: {NMS_IOU:f}",
        "y_scale": f"f: {SCALES[0]:f}",
        "x_scale": f"f: {SCALES[1]:f}",
        "h_scale": f"f: {SCALES[2]:f}",
        "w_scale": f"f: {SCALES[3]:f}",
        "num_classes": f"i: {len(SHAPE_CLASSES)}",
    }
    parts = ['name: "TFLite_Detection_PostProcess"']
    parts += [f'attr {{ key: "{k}" value {{ {v} }} }}' for k, v in attrs.items()]
    return " ".join(parts)


@tf.function(experimental_implements=_postprocess_signature())
def _detection_postprocess(
    box_encodings: tf.Tensor, class_predictions: tf.Tensor, anchor_boxes: tf.Tensor
) -> tuple[tf.Tensor, ...]:
    # A placeholder body: the converter replaces the whole function by the custom op.
    del box_encodings, class_predictions, anchor_boxes
    zero = tf.constant(0.0, dtype=tf.float32)
    return zero, zero, zero, zero


class _Exportable(tf.Module):
    """The trained network (reloaded from a SavedModel, so its variables freeze) followed by
    softmax and the post-process."""

    def __init__(self, network: Any, anchor_boxes: FloatArray) -> None:
        super().__init__()
        self.network = network
        self.anchor_boxes = tf.constant(anchor_boxes)

    @tf.function(input_signature=[tf.TensorSpec([1, IMAGE, IMAGE, 3], tf.float32, "input")])
    def serve(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
        loc, logits = self.network.serve(image)
        boxes, classes, scores, count = _detection_postprocess(
            loc, tf.nn.softmax(logits), self.anchor_boxes
        )
        return {"boxes": boxes, "classes": classes, "scores": scores, "count": count}


def convert_detector(model: tf.keras.Model, calibration: FloatArray, quantize: bool) -> bytes:
    """TFLite bytes ending in TFLite_Detection_PostProcess; full-integer with uint8 input
    when ``quantize`` (the post-process itself and its outputs stay float, as in the
    Coral models)."""
    spec = tf.TensorSpec(shape=(1, IMAGE, IMAGE, 3), dtype=tf.float32, name="input")
    with tempfile.TemporaryDirectory() as keras_dir, tempfile.TemporaryDirectory() as full_dir:
        model.export(keras_dir, format="tf_saved_model", input_signature=[spec], verbose=False)
        module = _Exportable(tf.saved_model.load(keras_dir), anchors())
        tf.saved_model.save(module, full_dir, signatures=module.serve.get_concrete_function())
        converter = tf.lite.TFLiteConverter.from_saved_model(full_dir)
        if quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = _representative(calibration)
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                tf.lite.OpsSet.TFLITE_BUILTINS,  # the float post-process op
            ]
            converter.inference_input_type = tf.uint8
        converter.allow_custom_ops = True
        result: bytes = converter.convert()
        return result


def _representative(samples: FloatArray) -> Any:
    def gen() -> Iterator[list[FloatArray]]:
        for sample in samples:
            yield [sample[np.newaxis].astype(np.float32)]

    return gen


# --------------------------------------------------------------------------- evaluation


def detect(model_bytes: bytes, images: UInt8Array) -> list[list[tuple[int, float, FloatArray]]]:
    """(class, score, box) per detection per image."""
    interpreter = Interpreter(model_content=model_bytes, num_threads=1)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    # The signature names the outputs; the tensors' own order and names do not say which
    # of the two [1, 10] tensors holds classes and which scores.
    named = interpreter.get_signature_runner().get_output_details()
    box_i, class_i = named["boxes"]["index"], named["classes"]["index"]
    score_i, count_i = named["scores"]["index"], named["count"]["index"]
    found = []
    for image in images:
        x = image[np.newaxis]
        if inp["dtype"] != np.uint8:
            x = x.astype(np.float32) / 255.0
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        n = int(interpreter.get_tensor(count_i)[0])
        boxes, classes = interpreter.get_tensor(box_i)[0], interpreter.get_tensor(class_i)[0]
        scores = interpreter.get_tensor(score_i)[0]
        found.append([(int(classes[j]), float(scores[j]), boxes[j].copy()) for j in range(n)])
    return found


def f1_score(found: list[list[tuple[int, float, FloatArray]]], scene: Scene) -> dict[str, float]:
    """Precision, recall and F1: a detection with score >= 0.5 is right when it has the class
    of a not yet matched shape and overlaps it with IoU >= 0.5."""
    tp = fp = 0
    rows = zip(found, scene.boxes, scene.classes, scene.counts, strict=True)
    for dets, boxes, classes, count in rows:
        unmatched = set(range(int(count)))
        for cls, score, box in sorted(dets, key=lambda d: -d[1]):
            if score < EVAL_SCORE:
                continue
            ious = {g: float(_iou(box[None], boxes[g][None])[0, 0]) for g in unmatched
                    if classes[g] == cls}
            best = max(ious, key=lambda g: ious[g], default=None)
            if best is not None and ious[best] >= EVAL_IOU:
                unmatched.discard(best)
                tp += 1
            else:
                fp += 1
    total = int(scene.counts.sum())
    precision = tp / max(tp + fp, 1)
    recall = tp / max(total, 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-9)
    return {"precision": precision, "recall": recall, "f1": f1}

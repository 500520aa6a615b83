"""Two small YOLO-style detectors of the shapes scenes (scripts/models/detection_model.py makes
the data), in layouts no registry package ships a model of:

- ``shapes_yolov8_int8.tflite``: one int8 output ``[1, 4 + 3, 64]`` as Ultralytics'
  v8/v11 TFLite exports have it (centre x, y, width, height normalised to the input, then
  class scores; no objectness; features first), from an 8x8 grid.
- ``shapes_yolo_split_int8.tflite``: the split head used to run YOLO on the Edge TPU:
  class logits ``[1, 84, 3]`` and a box distribution ``[1, 84, 64]`` (left, top, right,
  bottom x 16 bins, in stride units, softmax + expectation decoded on the CPU) at strides
  8, 16 and 32 of the 64x64 input (64 + 16 + 4 = 84 anchors at cell centres).

Both take uint8 pixels (pixel/255). Used by ``scripts/models/make_models.py --only yolo``;
development only (TensorFlow).
"""

from __future__ import annotations

import math
import tempfile
from typing import Any

import detection_model as dm
import numpy as np
import numpy.typing as npt
import tensorflow as tf

IMAGE = dm.IMAGE
CLASSES = len(dm.SHAPE_CLASSES)
GRID = 8
STRIDES = (8, 16, 32)
REG_MAX = 16
FloatArray = npt.NDArray[np.float32]


def _backbone(inputs: Any) -> tuple[Any, Any, Any]:
    """Feature maps at strides 8, 16 and 32."""
    layers = tf.keras.layers
    x = inputs
    maps = []
    for filters, stride, keep in ((16, 2, False), (32, 1, False), (32, 2, False),
                                  (64, 1, False), (64, 2, True), (64, 1, False),
                                  (64, 2, True), (64, 2, True)):
        x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU(6.0)(x)
        if keep:
            maps.append(x)
    return maps[0], maps[1], maps[2]


def _grid() -> FloatArray:
    y, x = np.mgrid[0:GRID, 0:GRID].astype(np.float32)
    return np.stack([x, y], axis=-1)  # [8, 8, 2] cell column, row


class _DecodeV8(tf.keras.layers.Layer):  # type: ignore[misc]
    """Raw head values -> normalised centre, size and sigmoid class scores, in the graph
    (as Ultralytics' exports decode before the output)."""

    def call(self, raw: Any) -> Any:
        grid = tf.constant(_grid())
        centre = (grid + 0.5 + tf.tanh(raw[..., :2])) / GRID
        size = tf.sigmoid(raw[..., 2:4]) * 0.6
        return tf.concat([centre, size, tf.sigmoid(raw[..., 4:])], axis=-1)


def build_v8() -> tf.keras.Model:
    layers = tf.keras.layers
    inputs = tf.keras.Input(shape=(IMAGE, IMAGE, 3))
    fine, _, _ = _backbone(inputs)
    head = layers.Conv2D(64, 3, padding="same", activation="relu")(fine)
    raw = layers.Conv2D(4 + CLASSES, 1)(head)
    out = layers.Reshape((GRID * GRID, 4 + CLASSES))(_DecodeV8()(raw))
    out = layers.Permute((2, 1), name="output0")(out)  # [7, 64]: features first, as v8
    return tf.keras.Model(inputs, out, name="shapes_yolov8")


def build_split() -> tf.keras.Model:
    layers = tf.keras.layers
    inputs = tf.keras.Input(shape=(IMAGE, IMAGE, 3))
    logits, boxes = [], []
    for fmap in _backbone(inputs):
        head = layers.Conv2D(64, 3, padding="same", activation="relu")(fmap)
        cells = fmap.shape[1] * fmap.shape[2]
        logits.append(layers.Reshape((cells, CLASSES))(layers.Conv2D(CLASSES, 1)(head)))
        boxes.append(layers.Reshape((cells, 4 * REG_MAX))(layers.Conv2D(4 * REG_MAX, 1)(head)))
    cls = layers.Concatenate(axis=1, name="class_logits")(logits)
    dist = layers.Concatenate(axis=1, name="box_distribution")(boxes)
    return tf.keras.Model(inputs, [cls, dist], name="shapes_yolo_split")


# --------------------------------------------------------------------------- targets


def v8_targets(scene: dm.Scene) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per image and cell: box (cx, cy, w, h), one-hot classes, and whether it is positive
    (the cell holding the shape's centre)."""
    n = len(scene.images)
    box = np.zeros((n, GRID * GRID, 4), np.float32)
    cls = np.zeros((n, GRID * GRID, CLASSES), np.float32)
    pos = np.zeros((n, GRID * GRID), np.float32)
    for i, count in enumerate(scene.counts):
        for g in range(int(count)):
            y0, x0, y1, x1 = scene.boxes[i, g]
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            cell = min(int(cy * GRID), GRID - 1) * GRID + min(int(cx * GRID), GRID - 1)
            box[i, cell] = [cx, cy, x1 - x0, y1 - y0]
            cls[i, cell, scene.classes[i, g]] = 1.0
            pos[i, cell] = 1.0
    return box, cls, pos


def split_anchors() -> tuple[FloatArray, FloatArray]:
    centres, strides = [], []
    for s in STRIDES:
        g = IMAGE // s
        y, x = np.mgrid[0:g, 0:g]
        centres.append(np.stack([x.ravel() + 0.5, y.ravel() + 0.5], 1) * s)
        strides.append(np.full(g * g, s, np.float32))
    return np.concatenate(centres).astype(np.float32), np.concatenate(strides)


def split_targets(scene: dm.Scene) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per image and anchor: distances (l, t, r, b) in stride units, one-hot classes and
    positives: anchors of the shape's level (stride 8 under 16 px, else 16) whose centre
    lies inside it, or the nearest one."""
    centres, strides = split_anchors()
    n, a = len(scene.images), len(centres)
    dist = np.zeros((n, a, 4), np.float32)
    cls = np.zeros((n, a, CLASSES), np.float32)
    pos = np.zeros((n, a), np.float32)
    for i, count in enumerate(scene.counts):
        for g in range(int(count)):
            y0, x0, y1, x1 = scene.boxes[i, g] * IMAGE
            level = 8 if max(y1 - y0, x1 - x0) < 16 else 16
            mine = np.flatnonzero(strides == level)
            inside = mine[(centres[mine, 0] > x0) & (centres[mine, 0] < x1)
                          & (centres[mine, 1] > y0) & (centres[mine, 1] < y1)]
            if inside.size == 0:
                d = np.hypot(centres[mine, 0] - (x0 + x1) / 2, centres[mine, 1] - (y0 + y1) / 2)
                inside = mine[[int(np.argmin(d))]]
            cx, cy = centres[inside, 0], centres[inside, 1]
            ltrb = np.stack([cx - x0, cy - y0, x1 - cx, y1 - cy], 1) / level
            dist[i, inside] = np.clip(ltrb, 0, REG_MAX - 1.01)
            cls[i, inside] = 0.0
            cls[i, inside, scene.classes[i, g]] = 1.0
            pos[i, inside] = 1.0
    return dist, cls, pos


# --------------------------------------------------------------------------- training


def _v8_loss(model: Any, x: Any, box: Any, cls: Any, pos: Any) -> Any:
    out = tf.transpose(model(x, training=True), [0, 2, 1])  # [B, 64, 7]
    num = tf.maximum(tf.reduce_sum(pos), 1.0)
    bce = tf.keras.backend.binary_crossentropy(cls, tf.clip_by_value(out[..., 4:], 1e-6, 1 - 1e-6))
    cls_loss = tf.reduce_sum(bce * (1.0 + 4.0 * pos[..., None])) / num
    box_loss = tf.reduce_sum(tf.abs(out[..., :4] - box) * pos[..., None]) / num
    return cls_loss + 20.0 * box_loss


def _split_loss(model: Any, x: Any, dist: Any, cls: Any, pos: Any) -> Any:
    logits, bins = model(x, training=True)
    num = tf.maximum(tf.reduce_sum(pos), 1.0)
    bce = tf.nn.sigmoid_cross_entropy_with_logits(cls, logits)
    cls_loss = tf.reduce_sum(bce * (1.0 + 4.0 * pos[..., None])) / num
    # Distribution focal loss: the two bins around each target distance, linearly weighted.
    bins = tf.reshape(bins, [-1, bins.shape[1], 4, REG_MAX])
    left = tf.floor(dist)
    w_right = dist - left
    logp = tf.nn.log_softmax(bins, axis=-1)
    li = tf.cast(left, tf.int32)
    lp = tf.gather(logp, li, batch_dims=3)
    rp = tf.gather(logp, tf.minimum(li + 1, REG_MAX - 1), batch_dims=3)
    dfl = -((1 - w_right) * lp + w_right * rp)
    return cls_loss + tf.reduce_sum(tf.reduce_mean(dfl, -1) * pos) / num


def train(model: Any, scene: dm.Scene, kind: str, epochs: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    steps = epochs * (len(scene.images) // 64)
    optimizer = tf.keras.optimizers.Adam(tf.keras.optimizers.schedules.CosineDecay(2e-3, steps))
    loss_fn = _v8_loss if kind == "v8" else _split_loss
    targets = v8_targets if kind == "v8" else split_targets

    @tf.function
    def step(x: Any, a: Any, b: Any, c: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = loss_fn(model, x, a, b, c)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    for epoch in range(epochs):
        flipped = dm._flip(scene, rng)
        a, b, c = targets(flipped)
        x = flipped.images.astype(np.float32) / 255.0
        order = rng.permutation(len(x))
        losses = [float(step(x[i], a[i], b[i], c[i]))
                  for i in np.array_split(order, len(order) // 64)]
        print(f"yolo {kind}: epoch {epoch + 1}/{epochs} loss {np.mean(losses):.3f}", flush=True)


def convert(model: Any, calibration: FloatArray) -> bytes:
    """Full-integer TFLite: uint8 pixels in, int8 outputs with their own scale."""
    spec = tf.TensorSpec(shape=(1, IMAGE, IMAGE, 3), dtype=tf.float32, name="images")
    with tempfile.TemporaryDirectory() as saved:
        model.export(saved, format="tf_saved_model", input_signature=[spec], verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = dm._representative(calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.int8
        result: bytes = converter.convert()
        return result


def detect(model_bytes: bytes, images: Any, kind: str) -> list[list[tuple[int, float, Any]]]:
    """(class, score, box) per image, decoded here in plain NumPy from the layout's own
    definition (not by edged), for the manifest's F1."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=model_bytes)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    outs = interp.get_output_details()
    centres, strides = split_anchors()
    found = []
    for image in images:
        interp.set_tensor(inp["index"], image[None])
        interp.invoke()
        real = {}
        for d in outs:
            s, z = d["quantization"]
            real[d["shape"][-1]] = (interp.get_tensor(d["index"])[0].astype(np.float64) - z) * s
        if kind == "v8":
            rows = real[GRID * GRID].T
            cx, cy, w, h = rows[:, :4].T
            boxes = np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], 1)
            scores_all = rows[:, 4:]
        else:
            scores_all = 1 / (1 + np.exp(-real[CLASSES]))
            bins = real[4 * REG_MAX].reshape(-1, 4, REG_MAX)
            p = np.exp(bins - bins.max(-1, keepdims=True))
            d = (p / p.sum(-1, keepdims=True)) @ np.arange(REG_MAX) * strides[:, None]
            boxes = np.stack([centres[:, 1] - d[:, 1], centres[:, 0] - d[:, 0],
                              centres[:, 1] + d[:, 3], centres[:, 0] + d[:, 2]], 1) / IMAGE
        cls = scores_all.argmax(1)
        score = scores_all.max(1)
        keep = _nms(boxes, score, 0.5)
        found.append([(int(cls[k]), float(score[k]), boxes[k]) for k in keep
                      if score[k] >= dm.EVAL_SCORE])
    return found


def _nms(boxes: Any, scores: Any, iou: float) -> list[int]:
    order = list(np.argsort(-scores))
    keep: list[int] = []
    while order:
        best = order.pop(0)
        keep.append(best)
        order = [j for j in order
                 if float(dm._iou(boxes[best][None], boxes[j][None])[0, 0]) <= iou]
        if len(keep) >= 20:
            break
    return keep


def anchors_count() -> int:
    return sum(math.ceil(IMAGE / s) ** 2 for s in STRIDES)

"""A small keypoint model with MoveNet's single-pose output layout ``[1, 1, 17, 3]``
(y, x, score per keypoint, fractions of the input), for ``postprocess: keypoints``. No
registry package ships a MoveNet model, so this one is trained on the spot.

Scenes are 64x64 RGB backgrounds (as the shapes scenes') with up to 17 small discs, one per
keypoint, each in a colour of its own (17 hues); about one in five is left out, and then
its score should be low. The network predicts a 16x16 heatmap per keypoint: the
coordinates are its soft-argmax (the expected position under a spatial softmax), the score
a sigmoid of a separate per-keypoint logit, all inside the graph, so the TFLite model ends
in the layout itself. uint8 pixels in (pixel/255), float32 out, as MoveNet's int8 models.

Used by ``scripts/models/make_models.py --only keypoints``; development only (TensorFlow).
"""

from __future__ import annotations

import colorsys
import tempfile
from typing import Any

import detection_model as dm
import numpy as np
import numpy.typing as npt
import tensorflow as tf

IMAGE = dm.IMAGE
POINTS = 17
HEAT = 16
RADIUS = 2.5
PALETTE = np.array([colorsys.hsv_to_rgb(k / POINTS, 1.0, 1.0) for k in range(POINTS)]) * 255
FloatArray = npt.NDArray[np.float32]


def scenes(n: int, seed: int) -> tuple[npt.NDArray[np.uint8], FloatArray]:
    """Images [n, 64, 64, 3] and truth [n, 17, 3]: y, x (fractions), 1 if drawn else 0."""
    rng = np.random.default_rng(seed)
    images = np.empty((n, IMAGE, IMAGE, 3), np.uint8)
    truth = np.zeros((n, POINTS, 3), np.float32)
    y, x = np.mgrid[0:IMAGE, 0:IMAGE].astype(np.float32) + 0.5
    for i in range(n):
        img, _ = dm._background(rng)
        img = img * 0.35 + 60  # dim and grey: the discs' colours stand out
        placed: list[tuple[float, float]] = []
        for k in range(POINTS):
            if rng.random() < 0.2:
                continue
            for _ in range(30):
                cy, cx = rng.uniform(4, IMAGE - 4, 2)
                if all((cy - py) ** 2 + (cx - px) ** 2 > 49 for py, px in placed):
                    break
            placed.append((cy, cx))
            img[(y - cy) ** 2 + (x - cx) ** 2 <= RADIUS ** 2] = PALETTE[k]
            truth[i, k] = [cy / IMAGE, cx / IMAGE, 1.0]
        images[i] = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    return images, truth


class _SoftArgmax(tf.keras.layers.Layer):  # type: ignore[misc]
    """Heatmaps [B, 16, 16, 17] and score logits [B, 17] -> [B, 1, 17, 3] (y, x, score)."""

    def call(self, inputs: Any) -> Any:
        heat, logits = inputs
        b = tf.shape(heat)[0]
        flat = tf.nn.softmax(tf.reshape(tf.transpose(heat, [0, 3, 1, 2]), [b, POINTS, -1]))
        centres = (tf.range(HEAT, dtype=tf.float32) + 0.5) / HEAT
        grid_y = tf.reshape(tf.repeat(centres, HEAT), [-1])
        grid_x = tf.reshape(tf.tile(centres, [HEAT]), [-1])
        py = tf.reduce_sum(flat * grid_y, axis=-1)
        px = tf.reduce_sum(flat * grid_x, axis=-1)
        out = tf.stack([py, px, tf.sigmoid(logits)], axis=-1)
        return tf.reshape(out, [b, 1, POINTS, 3])


def build() -> tf.keras.Model:
    layers = tf.keras.layers
    inputs = tf.keras.Input(shape=(IMAGE, IMAGE, 3))
    x = inputs
    for filters, stride in ((32, 1), (32, 2), (64, 1), (64, 2), (64, 1)):
        x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU(6.0)(x)
    heat = layers.Conv2D(POINTS, 3, padding="same")(x)  # 16x16 per keypoint
    logits = layers.Dense(POINTS)(layers.GlobalMaxPooling2D()(heat))
    return tf.keras.Model(inputs, _SoftArgmax(name="keypoints")([heat, logits]),
                          name="dots_movenet_layout")


def train(model: Any, images: Any, truth: FloatArray, epochs: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x_all = images.astype(np.float32) / 255.0
    steps = max(1, epochs * (len(x_all) // 64))
    optimizer = tf.keras.optimizers.Adam(tf.keras.optimizers.schedules.CosineDecay(3e-3, steps))

    @tf.function
    def step(x: Any, t: Any) -> Any:
        with tf.GradientTape() as tape:
            out = model(x, training=True)[:, 0]
            seen = t[..., 2]
            where = tf.reduce_sum(tf.abs(out[..., :2] - t[..., :2]), -1) * seen
            score = tf.keras.backend.binary_crossentropy(
                seen, tf.clip_by_value(out[..., 2], 1e-6, 1 - 1e-6))
            loss = 20.0 * tf.reduce_sum(where) / tf.maximum(tf.reduce_sum(seen), 1.0) \
                + tf.reduce_mean(score)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    for epoch in range(epochs):
        order = rng.permutation(len(x_all))
        batches = np.array_split(order, max(1, len(order) // 64))
        losses = [float(step(x_all[b], truth[b])) for b in batches]
        print(f"keypoints: epoch {epoch + 1}/{epochs} loss {np.mean(losses):.3f}", flush=True)


def convert(model: Any, calibration: FloatArray) -> bytes:
    spec = tf.TensorSpec(shape=(1, IMAGE, IMAGE, 3), dtype=tf.float32, name="input")
    with tempfile.TemporaryDirectory() as saved:
        model.export(saved, format="tf_saved_model", input_signature=[spec], verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = dm._representative(calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                               tf.lite.OpsSet.TFLITE_BUILTINS]
        converter.inference_input_type = tf.uint8
        result: bytes = converter.convert()
        return result


def evaluate(model_bytes: bytes, images: Any, truth: FloatArray) -> dict[str, float]:
    """PCK: visible keypoints found within 0.05 of the input (3.2 px) with score >= 0.5;
    and how often the score is on the right side of 0.5 (drawn or left out)."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=model_bytes)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    hits = seen = right = 0
    for image, t in zip(images, truth, strict=True):
        interp.set_tensor(inp["index"], image[None])
        interp.invoke()
        pred = interp.get_tensor(out["index"])[0, 0]
        visible = t[:, 2] > 0.5
        close = np.hypot(*(pred[:, :2] - t[:, :2]).T) <= 0.05
        hits += int(np.sum(visible & close & (pred[:, 2] >= 0.5)))
        seen += int(visible.sum())
        right += int(np.sum((pred[:, 2] >= 0.5) == visible))
    return {"pck": hits / max(seen, 1), "visibility": right / (len(images) * POINTS)}

"""Build the small TFLite models bundled with edged, and describe them.

How to run (development only; the daemon itself never needs TensorFlow). The models
are checked with ai-edge-litert, which edged itself already depends on::

    pip install tensorflow-cpu scikit-learn
    python scripts/models/make_models.py                  # all models into models/
    python scripts/models/make_models.py --only vibration  # rebuild one model
    python scripts/models/make_models.py --out /tmp/models

Nothing is downloaded: the digits data set ships inside scikit-learn, the vibration
data are synthesised here and MobileNetV2 is built with ``weights=None``.
Seeds are fixed, so runs reproduce the same data and (on the same machine and
library versions) the same models.

Models written into ``--out``:

``digits_int8.tflite``
    Small CNN trained on scikit-learn's 8x8 ``load_digits``; float input is
    ``pixel / 16.0`` in [0, 1], shape [1, 8, 8, 1]; full-integer quantized with uint8
    input and output; softmax over the 10 digits. Also ``digits.labels`` and
    ``digits_holdout.npz`` (``images`` float32 [N, 8, 8, 1], ``labels`` int64 [N]), the
    held-out 20 % split (``train_test_split(test_size=0.2, random_state=0, stratify=y)``).

``vibration_int8.tflite``
    1-D CNN classifying a 128-sample window of a 3-axis accelerometer (ax, ay, az in g,
    1 kHz, AC-coupled: gravity removed) into normal, imbalance, misalignment,
    bearing_fault; int8 input and output. Also ``vibration.labels`` and
    ``vibration_holdout.npz`` (``windows`` float32 [200, 128, 3], ``labels`` int64).

    Synthetic physics (see :func:`synth_vibration`): shaft speed f_r ~ U(20, 40) Hz with
    a random phase. Every window has gaussian sensor noise (sigma ~ U(0.03, 0.07) g on
    each axis) and a small 1x residual imbalance (0.02-0.10 g, radial, ax/ay in
    quadrature).

    * normal: only the above.
    * imbalance: a strong 1x radial component (0.1-1.0 g), ax = A cos, ay = A sin
      (quadrature, i.e. a rotating force), axial az only 0-10 % of A.
    * misalignment: a strong 2x component (0.1-0.8 g) radially, some 1x radial
      (0-40 % of it), and a notable axial component on az at 1x (0.05-0.5 g) and
      2x (0.05-0.4 g).
    * bearing_fault: outer-race defect impulses repeating at BPFO = k * f_r with
      k ~ U(3.1, 3.6); each impulse rings a structural resonance f_n ~ U(200, 300) Hz
      that decays exponentially (time constant 2-5 ms), peak 0.15-1.2 g, impulse heights
      jittered +-20 %; mostly radial (random direction in the ax/ay plane), az gets
      0-25 % of it.

``mobilenet_v2_1.0_224_quant.tflite``
    ``tf.keras.applications.MobileNetV2(alpha=1.0, input_shape=(224, 224, 3),
    weights=None, classes=1000)``, UNTRAINED (random initialisation), full-integer
    quantized with uint8 input and output from 20 random images in [-1, 1]. It is a
    benchmark load only: its outputs mean nothing.

``shapes_detect_int8.tflite``
    SSD-style detector of circles, squares and triangles on synthetic 64x64 RGB scenes,
    uint8 input, ending in the ``TFLite_Detection_PostProcess`` custom op (boxes, classes,
    scores, count); see ``scripts/models/detection_model.py``. Also ``shapes.labels`` and
    ``shapes_holdout.npz``.

``manifest.json`` and ``README.md``
    Tensor details, float and int8 accuracy on the held-out data, file size and the
    median ``invoke()`` time under ai_edge_litert (one interpreter, one thread, 200
    invokes after warm-up). With ``--only`` the other models' entries are kept from the
    existing manifest.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import numpy.typing as npt
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

SEED = 0
FS_HZ = 1000.0
WINDOW = 128
VIBRATION_CLASSES = ("normal", "imbalance", "misalignment", "bearing_fault")
DIGIT_CLASSES = tuple(str(d) for d in range(10))
BENCH_WARMUP = 20
BENCH_INVOKES = 200
MODEL_NAMES = ("digits", "vibration", "mobilenet", "detection", "chain", "yolo_v8", "yolo_split",
               "keypoints")

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
RepresentativeDataset = Callable[[], Iterator[list[FloatArray]]]


MAX_INT8_ACCURACY_DROP = 0.02


@dataclass(frozen=True)
class Evaluation:
    """Accuracy of one model on its held-out file (``input_key``/``label_key`` arrays)."""

    file: str
    input_key: str
    label_key: str
    size: int
    float_accuracy: float
    int8_accuracy: float


# --------------------------------------------------------------------------- helpers


def set_seeds(seed: int = SEED) -> None:
    """Seed Python, NumPy and TensorFlow and ask TensorFlow for deterministic ops."""
    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def representative(samples: FloatArray) -> RepresentativeDataset:
    """Return a representative-dataset generator yielding batches of one sample."""

    def gen() -> Iterator[list[FloatArray]]:
        for sample in samples:
            yield [sample[np.newaxis].astype(np.float32)]

    return gen


def quantize_full_int(
    model: tf.keras.Model,
    input_shape: tuple[int, ...],
    calibration: FloatArray,
    io_dtype: tf.DType,
) -> bytes:
    """Full-integer quantize ``model`` with a fixed batch-1 input signature."""
    spec = tf.TensorSpec(shape=(1, *input_shape), dtype=tf.float32, name="input")
    with tempfile.TemporaryDirectory() as saved_model_dir:
        model.export(
            saved_model_dir, format="tf_saved_model", input_signature=[spec], verbose=False
        )
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
        return _convert(converter, calibration, io_dtype)


def _convert(
    converter: tf.lite.TFLiteConverter, calibration: FloatArray, io_dtype: tf.DType
) -> bytes:
    """Run the converter with full-integer quantization settings."""
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative(calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = io_dtype
    converter.inference_output_type = io_dtype
    result: bytes = converter.convert()
    return result


def make_interpreter(model_path: Path) -> Interpreter:
    """Load a model into an allocated single-threaded ai_edge_litert interpreter."""
    interpreter = Interpreter(model_path=str(model_path), num_threads=1)
    interpreter.allocate_tensors()
    return interpreter


def quantize_input(x: FloatArray, detail: dict[str, Any]) -> npt.NDArray[Any]:
    """Quantize float input with the tensor's own scale/zero point (round, then clip)."""
    scale, zero_point = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    q = np.round(x / scale + zero_point)
    quantized: npt.NDArray[Any] = np.clip(q, info.min, info.max).astype(detail["dtype"])
    return quantized


def tflite_predict(model_path: Path, x: FloatArray) -> IntArray:
    """Class predictions of a quantized model, one sample per invoke."""
    interpreter = make_interpreter(model_path)
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    preds = np.empty(len(x), dtype=np.int64)
    for i, sample in enumerate(x):
        interpreter.set_tensor(inp["index"], quantize_input(sample[np.newaxis], inp))
        interpreter.invoke()
        # Argmax of the raw integers equals argmax of the dequantized scores (scale > 0).
        preds[i] = int(np.argmax(interpreter.get_tensor(out["index"])[0]))
    return preds


def keras_accuracy(model: tf.keras.Model, x: FloatArray, y: IntArray) -> float:
    """Float accuracy of a Keras model."""
    probs = model.predict(x, verbose=0)
    return float(np.mean(np.argmax(probs, axis=1) == y))


def median_invoke_ms(model_path: Path, seed: int = SEED) -> float:
    """Median invoke() time in ms: one interpreter, one thread, after warm-up."""
    interpreter = make_interpreter(model_path)
    inp = interpreter.get_input_details()[0]
    info = np.iinfo(inp["dtype"])
    rng = np.random.default_rng(seed)
    data = rng.integers(info.min, info.max + 1, size=inp["shape"]).astype(inp["dtype"])
    interpreter.set_tensor(inp["index"], data)
    for _ in range(BENCH_WARMUP):
        interpreter.invoke()
    times = []
    for _ in range(BENCH_INVOKES):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0


def tensor_info(detail: dict[str, Any]) -> dict[str, Any]:
    """JSON-friendly shape/dtype/quantization of one tensor detail."""
    scale, zero_point = detail["quantization"]
    return {
        "name": str(detail["name"]),
        "shape": [int(d) for d in detail["shape"]],
        "dtype": np.dtype(detail["dtype"]).name,
        "scale": float(scale),
        "zero_point": int(zero_point),
        "float_range": float_range(detail),
    }


def float_range(detail: dict[str, Any]) -> Optional[list[float]]:
    """The float interval a quantized tensor can represent (inputs beyond it clip); None for
    a float tensor."""
    scale, zero_point = detail["quantization"]
    if np.dtype(detail["dtype"]).kind == "f":
        return None
    info = np.iinfo(detail["dtype"])
    return [round(scale * (info.min - zero_point), 4), round(scale * (info.max - zero_point), 4)]


def check_accuracy(name: str, evaluation: Evaluation) -> None:
    """Print the accuracies; fail if quantization costs more than allowed."""
    print(
        f"{name}: float {evaluation.float_accuracy:.4f}  int8 {evaluation.int8_accuracy:.4f}"
        f"  (n={evaluation.size})"
    )
    if evaluation.float_accuracy - evaluation.int8_accuracy > MAX_INT8_ACCURACY_DROP:
        raise SystemExit(f"{name}: int8 accuracy is more than 2 points below float")


def describe(
    out_dir: Path,
    *,
    name: str,
    file: str,
    labels: Optional[str],
    evaluation: Optional[Evaluation],
    summary: str,
    input_meaning: str,
) -> dict[str, Any]:
    """Measure a written model and return its manifest entry."""
    path = out_dir / file
    interpreter = make_interpreter(path)
    entry: dict[str, Any] = {
        "name": name,
        "file": file,
        "labels": labels,
        "summary": summary,
        "input_meaning": input_meaning,
        "input": tensor_info(interpreter.get_input_details()[0]),
        "output": tensor_info(interpreter.get_output_details()[0]),
        "holdout": None if evaluation is None else evaluation.file,
        "holdout_input_key": None if evaluation is None else evaluation.input_key,
        "holdout_label_key": None if evaluation is None else evaluation.label_key,
        "holdout_size": None if evaluation is None else evaluation.size,
        "float_accuracy": None if evaluation is None else round(evaluation.float_accuracy, 4),
        "int8_accuracy": None if evaluation is None else round(evaluation.int8_accuracy, 4),
        "size_bytes": path.stat().st_size,
        "median_invoke_ms": float(f"{median_invoke_ms(path):.4g}"),
    }
    print(json.dumps(entry))
    return entry


def write_labels(path: Path, labels: tuple[str, ...]) -> None:
    """Write one label per line."""
    path.write_text("".join(f"{label}\n" for label in labels), encoding="utf-8")


# --------------------------------------------------------------------------- digits


def load_digits_split() -> tuple[FloatArray, FloatArray, IntArray, IntArray]:
    """The scikit-learn digits as float [N, 8, 8, 1] in [0, 1], split 80/20 stratified."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., np.newaxis]
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, random_state=0, stratify=y
    )
    return x_train, x_test, y_train, y_test


def build_digits_model() -> tf.keras.Model:
    """A small CNN for 8x8 grey images."""
    layers = tf.keras.layers
    return tf.keras.Sequential(
        [
            tf.keras.Input(shape=(8, 8, 1)),
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dropout(0.3),
            layers.Dense(32, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ],
        name="digits_cnn",
    )


def augment_digits(x: FloatArray, y: IntArray, seed: int = SEED) -> tuple[FloatArray, IntArray]:
    """Add copies of the training images shifted by one pixel (zero fill)."""
    shifted = [x]
    for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        s = np.roll(x, shift=(dy, dx), axis=(1, 2))
        if dy == 1:
            s[:, 0] = 0.0
        elif dy == -1:
            s[:, -1] = 0.0
        if dx == 1:
            s[:, :, 0] = 0.0
        elif dx == -1:
            s[:, :, -1] = 0.0
        shifted.append(s)
    x_aug = np.concatenate(shifted).astype(np.float32)
    y_aug = np.tile(y, len(shifted))
    order = np.random.default_rng(seed).permutation(len(x_aug))
    return x_aug[order], y_aug[order]


def train_classifier(
    model: tf.keras.Model, x: FloatArray, y: IntArray, epochs: int, batch_size: int = 64
) -> None:
    """Train with Adam and sparse categorical cross-entropy."""
    model.compile(
        optimizer=tf.keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(x, y, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0)


def train_digits() -> tuple[tf.keras.Model, FloatArray, FloatArray, IntArray, float]:
    """The digits CNN, trained from fixed seeds: model, train and test images, test
    labels, float accuracy. The classifier and the two-model chain both start here."""
    set_seeds()
    x_train, x_test, y_train, y_test = load_digits_split()
    model = build_digits_model()
    x_aug, y_aug = augment_digits(x_train, y_train)
    train_classifier(model, x_aug, y_aug, epochs=30)
    return model, x_train, x_test, y_test, keras_accuracy(model, x_test, y_test)


def make_digits(out_dir: Path) -> dict[str, Any]:
    """Train, quantize and evaluate the digits classifier; write its files."""
    model, x_train, x_test, y_test, float_acc = train_digits()

    rng = np.random.default_rng(SEED)
    calibration = x_train[rng.choice(len(x_train), size=300, replace=False)]
    path = out_dir / "digits_int8.tflite"
    path.write_bytes(quantize_full_int(model, (8, 8, 1), calibration, tf.uint8))
    evaluation = Evaluation(
        file="digits_holdout.npz",
        input_key="images",
        label_key="labels",
        size=len(y_test),
        float_accuracy=float_acc,
        int8_accuracy=float(np.mean(tflite_predict(path, x_test) == y_test)),
    )
    check_accuracy("digits", evaluation)

    write_labels(out_dir / "digits.labels", DIGIT_CLASSES)
    np.savez_compressed(
        out_dir / evaluation.file,
        images=x_test.astype(np.float32),
        labels=y_test.astype(np.int64),
    )
    return describe(
        out_dir,
        name="digits",
        file=path.name,
        labels="digits.labels",
        evaluation=evaluation,
        summary="Small CNN on scikit-learn load_digits (8x8 handwritten digits 0-9)",
        input_meaning="grey image, pixel/16.0: 0.0 = background, 1.0 = full ink",
    )


# --------------------------------------------------------------------------- chain


def chain_predict(features: Path, head: Path, x: FloatArray) -> IntArray:
    """Run the two-model chain as edged does: the extractor's quantized output goes through
    real values into the head's input quantization."""
    first, second = make_interpreter(features), make_interpreter(head)
    f_in, f_out = first.get_input_details()[0], first.get_output_details()[0]
    h_in, h_out = second.get_input_details()[0], second.get_output_details()[0]
    scale, zero = f_out["quantization"]
    predictions = []
    for sample in x:
        first.set_tensor(f_in["index"], quantize_input(sample[None], f_in))
        first.invoke()
        real = (first.get_tensor(f_out["index"]).astype(np.float32) - zero) * scale
        second.set_tensor(h_in["index"], quantize_input(real, h_in))
        second.invoke()
        predictions.append(int(np.argmax(second.get_tensor(h_out["index"]))))
    return np.asarray(predictions, dtype=np.int64)


def make_chain(out_dir: Path) -> dict[str, Any]:
    """The digits CNN split in two for model chains: a feature extractor (image -> 32
    features) and a classifier head (32 features -> 10 classes), quantized separately."""
    model, x_train, x_test, y_test, float_acc = train_digits()
    extractor = tf.keras.Model(model.inputs, model.layers[-2].output, name="digits_features")
    head = tf.keras.Sequential([tf.keras.Input(shape=(32,)), model.layers[-1]],
                               name="digits_head")
    calibration = x_train[np.random.default_rng(SEED).choice(len(x_train), 300, replace=False)]
    features_path = out_dir / "digits_features_int8.tflite"
    head_path = out_dir / "digits_head_int8.tflite"
    features_path.write_bytes(quantize_full_int(extractor, (8, 8, 1), calibration, tf.uint8))
    head_path.write_bytes(quantize_full_int(head, (32,), extractor.predict(calibration,
                                                                           verbose=0),
                                            tf.uint8))
    evaluation = Evaluation(
        file="digits_holdout.npz", input_key="images", label_key="labels",
        size=len(y_test), float_accuracy=float_acc,
        int8_accuracy=float(np.mean(chain_predict(features_path, head_path, x_test) == y_test)),
    )
    check_accuracy("chain", evaluation)
    entry = describe(
        out_dir, name="chain", file=features_path.name, labels=None, evaluation=evaluation,
        summary="Digits CNN split for model chains: this feature extractor (8x8 image -> 32 "
        "features), then `digits_head_int8.tflite` (32 features -> 10 classes, labels "
        "digits.labels); accuracy is the whole chain's",
        input_meaning="grey image, pixel/16.0",
    )
    entry["head_file"] = head_path.name
    return entry


# --------------------------------------------------------------------------- vibration


def _ringdown(
    t: FloatArray, bpfo: float, f_res: float, tau: float, peak: float, rng: np.random.Generator
) -> FloatArray:
    """Train of exponentially decaying resonance ringings, one per defect impact."""
    period = 1.0 / bpfo
    first = rng.uniform(-period, period)  # start before the window: tail of a prior impact
    signal = np.zeros_like(t)
    for t_k in np.arange(first, float(t[-1]), period):
        dt = t - t_k
        height = peak * rng.uniform(0.8, 1.2)
        ring = height * np.exp(-np.clip(dt, 0.0, None) / tau) * np.sin(2 * np.pi * f_res * dt)
        signal += np.where(dt >= 0.0, ring, 0.0)
    return signal.astype(np.float32)


def synth_vibration(label: int, rng: np.random.Generator) -> FloatArray:
    """One synthetic [128, 3] window (ax, ay, az in g at 1 kHz) of the given class.

    See the module docstring for the physics; ``label`` indexes ``VIBRATION_CLASSES``.
    """
    t = (np.arange(WINDOW) / FS_HZ).astype(np.float32)
    f_r = rng.uniform(20.0, 40.0)
    phase = rng.uniform(0.0, 2 * np.pi)
    w = 2 * np.pi * f_r * t + phase
    ax, ay, az = (np.zeros(WINDOW, dtype=np.float32) for _ in range(3))

    residual = rng.uniform(0.02, 0.10)
    ax += residual * np.cos(w)
    ay += residual * np.sin(w)

    kind = VIBRATION_CLASSES[label]
    if kind == "imbalance":
        amp = rng.uniform(0.1, 1.0)
        ax += amp * np.cos(w)
        ay += amp * np.sin(w)
        az += rng.uniform(0.0, 0.1) * amp * np.cos(w + rng.uniform(0, 2 * np.pi))
    elif kind == "misalignment":
        amp2 = rng.uniform(0.1, 0.8)
        phase2 = rng.uniform(0.0, 2 * np.pi)
        amp1 = rng.uniform(0.0, 0.4) * amp2
        ax += amp2 * np.cos(2 * w + phase2) + amp1 * np.cos(w)
        ay += amp2 * np.sin(2 * w + phase2) + amp1 * np.sin(w)
        az += rng.uniform(0.05, 0.5) * np.cos(w + rng.uniform(0, 2 * np.pi))
        az += rng.uniform(0.05, 0.4) * np.cos(2 * w + rng.uniform(0, 2 * np.pi))
    elif kind == "bearing_fault":
        bpfo = rng.uniform(3.1, 3.6) * f_r
        ring = _ringdown(
            t,
            bpfo=bpfo,
            f_res=rng.uniform(200.0, 300.0),
            tau=rng.uniform(0.002, 0.005),
            peak=rng.uniform(0.15, 1.2),
            rng=rng,
        )
        direction = rng.uniform(0.0, 2 * np.pi)
        ax += np.cos(direction) * ring
        ay += np.sin(direction) * ring
        az += rng.uniform(0.0, 0.25) * ring

    noise = rng.normal(0.0, rng.uniform(0.03, 0.07), size=(WINDOW, 3))
    return (np.stack([ax, ay, az], axis=1) + noise).astype(np.float32)


def vibration_dataset(n: int, seed: int) -> tuple[FloatArray, IntArray]:
    """``n`` synthetic windows, classes balanced (round robin) then shuffled."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int64) % len(VIBRATION_CLASSES)
    rng.shuffle(labels)
    windows = np.stack([synth_vibration(int(label), rng) for label in labels])
    return windows.astype(np.float32), labels


def build_vibration_model() -> tf.keras.Model:
    """Two strided Conv1D blocks, a third conv, global average pooling, dense head."""
    layers = tf.keras.layers
    return tf.keras.Sequential(
        [
            tf.keras.Input(shape=(WINDOW, 3)),
            layers.Conv1D(16, 7, padding="same", activation="relu"),
            layers.MaxPooling1D(2),
            layers.Conv1D(32, 5, padding="same", activation="relu"),
            layers.MaxPooling1D(2),
            layers.Conv1D(32, 5, padding="same", dilation_rate=2, activation="relu"),
            layers.GlobalAveragePooling1D(),
            layers.Dense(32, activation="relu"),
            layers.Dense(len(VIBRATION_CLASSES), activation="softmax"),
        ],
        name="vibration_cnn",
    )


def make_vibration(out_dir: Path) -> dict[str, Any]:
    """Train, quantize and evaluate the vibration classifier; write its files."""
    set_seeds()
    x_train, y_train = vibration_dataset(8000, seed=1)
    x_hold, y_hold = vibration_dataset(200, seed=2)
    model = build_vibration_model()
    train_classifier(model, x_train, y_train, epochs=30)
    float_acc = keras_accuracy(model, x_hold, y_hold)

    path = out_dir / "vibration_int8.tflite"
    path.write_bytes(quantize_full_int(model, (WINDOW, 3), x_train[:1000], tf.int8))
    evaluation = Evaluation(
        file="vibration_holdout.npz",
        input_key="windows",
        label_key="labels",
        size=len(y_hold),
        float_accuracy=float_acc,
        int8_accuracy=float(np.mean(tflite_predict(path, x_hold) == y_hold)),
    )
    check_accuracy("vibration", evaluation)

    write_labels(out_dir / "vibration.labels", VIBRATION_CLASSES)
    np.savez_compressed(out_dir / evaluation.file, windows=x_hold, labels=y_hold)
    return describe(
        out_dir,
        name="vibration",
        file=path.name,
        labels="vibration.labels",
        evaluation=evaluation,
        summary="1-D CNN on synthetic 3-axis vibration windows (128 samples at 1 kHz)",
        input_meaning="acceleration in g, columns ax, ay, az (AC-coupled, gravity removed)",
    )


# --------------------------------------------------------------------------- mobilenet


def make_mobilenet(out_dir: Path) -> dict[str, Any]:
    """Quantize an UNTRAINED MobileNetV2 1.0/224 (benchmark load only)."""
    set_seeds()
    model = tf.keras.applications.MobileNetV2(
        alpha=1.0, input_shape=(224, 224, 3), weights=None, classes=1000
    )
    rng = np.random.default_rng(SEED)
    calibration = rng.uniform(-1.0, 1.0, size=(20, 224, 224, 3)).astype(np.float32)
    path = out_dir / "mobilenet_v2_1.0_224_quant.tflite"
    path.write_bytes(quantize_full_int(model, (224, 224, 3), calibration, tf.uint8))
    return describe(
        out_dir,
        name="mobilenet",
        file=path.name,
        labels=None,
        evaluation=None,
        summary="MobileNetV2 1.0 224x224, UNTRAINED random weights: benchmark only",
        input_meaning="RGB image scaled to [-1, 1] (pixel/127.5 - 1)",
    )


# --------------------------------------------------------------------------- detection


def make_detection(out_dir: Path) -> dict[str, Any]:
    """Train, convert and evaluate the shapes detector (see scripts/models/detection_model.py)."""
    import detection_model as dm

    set_seeds()
    train = dm.shapes_dataset(6000, seed=1)
    hold = dm.shapes_dataset(200, seed=2)
    model = dm.build_detector()
    dm.train_detector(model, train, epochs=40, seed=SEED)
    calibration = train.images[:300].astype(np.float32) / 255.0
    float_f1 = dm.f1_score(dm.detect(dm.convert_detector(model, calibration, False),
                                     hold.images), hold)
    path = out_dir / "shapes_detect_int8.tflite"
    path.write_bytes(dm.convert_detector(model, calibration, quantize=True))
    int8_f1 = dm.f1_score(dm.detect(path.read_bytes(), hold.images), hold)
    print(f"detection: float {float_f1}  int8 {int8_f1}")
    evaluation = Evaluation(
        file="shapes_holdout.npz",
        input_key="images",
        label_key="boxes",
        size=len(hold.images),
        float_accuracy=float_f1["f1"],
        int8_accuracy=int8_f1["f1"],
    )
    check_accuracy("detection", evaluation)
    write_labels(out_dir / "shapes.labels", dm.SHAPE_CLASSES)
    np.savez_compressed(out_dir / evaluation.file, images=hold.images, boxes=hold.boxes,
                        classes=hold.classes, counts=hold.counts)
    return describe_detection(out_dir, path, evaluation, int8_f1)


def describe_detection(
    out_dir: Path, path: Path, evaluation: Evaluation, int8_f1: dict[str, float]
) -> dict[str, Any]:
    """The detector's manifest entry: every output, and F1 in place of accuracy."""
    entry = describe(
        out_dir,
        name="detection",
        file=path.name,
        labels="shapes.labels",
        evaluation=evaluation,
        summary="SSD-style detector of circles, squares and triangles on synthetic 64x64 "
        "scenes, ending in TFLite_Detection_PostProcess",
        input_meaning="RGB image, pixel/255",
    )
    interpreter = make_interpreter(path)
    entry["outputs"] = [tensor_info(d) for d in interpreter.get_output_details()]
    entry["output_summary"] = (
        "boxes [1, 10, 4], classes [1, 10], scores [1, 10], count [1], float32"
    )
    entry["metric"] = "F1"
    entry["int8_precision_recall"] = [round(int8_f1["precision"], 4),
                                      round(int8_f1["recall"], 4)]
    return entry


# --------------------------------------------------------------------------- yolo


def _make_yolo(out_dir: Path, kind: str) -> dict[str, Any]:
    """Train, convert and evaluate a YOLO-layout shapes detector (scripts/models/yolo_model.py)."""
    import detection_model as dm
    import yolo_model as ym

    set_seeds()
    train = dm.shapes_dataset(4000, seed=1)
    hold = dm.shapes_dataset(200, seed=2)  # the same scenes as shapes_holdout.npz
    model = ym.build_v8() if kind == "v8" else ym.build_split()
    ym.train(model, train, kind, epochs=15, seed=SEED)
    calibration = train.images[:300].astype(np.float32) / 255.0
    file = "shapes_yolov8_int8.tflite" if kind == "v8" else "shapes_yolo_split_int8.tflite"
    path = out_dir / file
    path.write_bytes(ym.convert(model, calibration))
    int8_f1 = dm.f1_score(ym.detect(path.read_bytes(), hold.images, kind), hold)
    print(f"yolo {kind}: int8 {int8_f1}")
    evaluation = Evaluation(file="shapes_holdout.npz", input_key="images", label_key="boxes",
                            size=len(hold.images), float_accuracy=float("nan"),
                            int8_accuracy=int8_f1["f1"])
    write_labels(out_dir / "shapes.labels", dm.SHAPE_CLASSES)
    layout = ("one int8 output [1, 7, 64]: centre x, y, width, height (fractions of the "
              "input), then 3 class scores; no objectness" if kind == "v8" else
              "int8 class logits [1, 84, 3] and box distribution [1, 84, 64] (4 sides x 16 "
              "bins) at strides 8/16/32")
    entry = describe(out_dir, name=f"yolo_{kind}", file=file, labels="shapes.labels",
                     evaluation=evaluation,
                     summary=f"YOLO-{'v8' if kind == 'v8' else 'Edge TPU split'}-layout "
                     "detector of the shapes scenes (postprocess: yolo)",
                     input_meaning="RGB image, pixel/255")
    interpreter = make_interpreter(path)
    entry["outputs"] = [tensor_info(d) for d in interpreter.get_output_details()]
    entry["output_summary"] = layout
    entry["metric"] = "F1"
    entry["float_accuracy"] = None
    entry["int8_precision_recall"] = [round(int8_f1["precision"], 4),
                                      round(int8_f1["recall"], 4)]
    return entry


def make_yolo_v8(out_dir: Path) -> dict[str, Any]:
    return _make_yolo(out_dir, "v8")


def make_yolo_split(out_dir: Path) -> dict[str, Any]:
    return _make_yolo(out_dir, "split")


# --------------------------------------------------------------------------- keypoints


def make_keypoints(out_dir: Path) -> dict[str, Any]:
    """Train, convert and evaluate the MoveNet-layout dots model
    (scripts/models/keypoint_model.py)."""
    import keypoint_model as km

    set_seeds()
    images, truth = km.scenes(4000, seed=1)
    hold_images, hold_truth = km.scenes(200, seed=2)
    model = km.build()
    km.train(model, images, truth, epochs=15, seed=SEED)
    path = out_dir / "dots_keypoints_int8.tflite"
    path.write_bytes(km.convert(model, images[:300].astype(np.float32) / 255.0))
    found = km.evaluate(path.read_bytes(), hold_images, hold_truth)
    print(f"keypoints: int8 {found}")
    np.savez_compressed(out_dir / "dots_holdout.npz", images=hold_images, keypoints=hold_truth)
    evaluation = Evaluation(file="dots_holdout.npz", input_key="images", label_key="keypoints",
                            size=len(hold_images), float_accuracy=float("nan"),
                            int8_accuracy=found["pck"])
    entry = describe(out_dir, name="keypoints", file=path.name, labels=None,
                     evaluation=evaluation,
                     summary="MoveNet-single-pose-layout model of 17 coloured dots on "
                     "synthetic 64x64 scenes (postprocess: keypoints)",
                     input_meaning="RGB image, pixel/255")
    entry["output_summary"] = "[1, 1, 17, 3] float32: y, x, score per keypoint"
    entry["metric"] = "PCK@0.05"
    entry["float_accuracy"] = None
    entry["visibility_accuracy"] = round(found["visibility"], 4)
    return entry


# --------------------------------------------------------------------------- report


def _fmt_acc(value: Optional[float], entry: Optional[dict[str, Any]] = None) -> str:
    metric = f"{entry['metric']} " if entry and entry.get("metric") else ""
    return "n/a" if value is None else f"{metric}{100 * value:.1f} %"


def _fmt_output(entry: dict[str, Any]) -> str:
    if entry.get("output_summary"):
        return str(entry["output_summary"])
    return f"{_fmt_tensor(entry['output'])} (softmax)"


def _fmt_tensor(info: dict[str, Any]) -> str:
    shape = "[" + ", ".join(str(d) for d in info["shape"]) + "]"
    return f"{shape} {info['dtype']}, scale {info['scale']:.6g}, zero point {info['zero_point']}"


def _fmt_input(info: dict[str, Any]) -> str:
    low, high = info["float_range"]
    return f"{_fmt_tensor(info)}; represents {low:g} .. {high:g}"


def _fmt_time(ms: float) -> str:
    return f"{ms * 1000:.1f} µs" if ms < 0.1 else f"{ms:.2f} ms"


def render_readme(entries: dict[str, dict[str, Any]]) -> str:
    """Markdown description of the bundled models."""
    rows = [
        "| model | what it is | input | float input means | output | float acc. | int8 acc. "
        "| held-out n | size | median invoke |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in MODEL_NAMES:
        if name not in entries:
            continue
        e = entries[name]
        rows.append(
            f"| `{e['file']}` | {e['summary']} | {_fmt_input(e['input'])} "
            f"| {e['input_meaning']} | {_fmt_output(e)} "
            f"| {_fmt_acc(e['float_accuracy'], e)} | {_fmt_acc(e['int8_accuracy'], e)} "
            f"| {e['holdout_size'] if e['holdout_size'] is not None else 'n/a'} "
            f"| {e['size_bytes'] / 1024:.1f} KiB | {_fmt_time(e['median_invoke_ms'])} |"
        )
    table = "\n".join(rows)
    return README_TEMPLATE.format(
        table=table,
        machine=f"{platform.machine()}, Python {platform.python_version()}",
        warmup=BENCH_WARMUP,
        invokes=BENCH_INVOKES,
    )


README_TEMPLATE = """\
# Bundled models

Generated by `scripts/models/make_models.py`; do not edit by hand (this file and
`manifest.json` are rewritten by the script).

{table}

Accuracies are on held-out data never used for training or calibration: the stored
`*_holdout.npz` files, which the demo and the tests send through MQTT. int8 accuracy
is measured with `ai_edge_litert`, quantizing the float input with the model's own
input parameters: `q = clip(round(x / scale + zero_point))`. The output is the
quantized softmax: `p = scale * (q - zero_point)`.

Invoke times: `ai_edge_litert`, one interpreter, `num_threads=1`, median of
{invokes} `invoke()` calls after {warmup} warm-up calls, measured when the models were
built ({machine}). They drift from run to run; ratios hold.

## Files

- `digits_int8.tflite`, `digits.labels` (`0`..`9`), `digits_holdout.npz`:
  `images` float32 [N, 8, 8, 1] in [0, 1], `labels` int64 [N]. The held-out split is
  `train_test_split(test_size=0.2, random_state=0, stratify=y)` of scikit-learn's
  `load_digits`; the images are `pixel / 16.0`.
- `vibration_int8.tflite`, `vibration.labels` (`normal`, `imbalance`,
  `misalignment`, `bearing_fault`), `vibration_holdout.npz`: `windows` float32
  [200, 128, 3], `labels` int64 [200].
- `mobilenet_v2_1.0_224_quant.tflite`: **untrained** MobileNetV2 (random
  initialisation, `weights=None`), full-integer quantized. It is a benchmark load
  only: its outputs mean nothing. No labels, no accuracy.
- `shapes_detect_int8.tflite`, `shapes.labels` (`circle`, `square`, `triangle`),
  `shapes_holdout.npz`: an SSD-style detector (`scripts/models/detection_model.py`), uint8
  input [1, 64, 64, 3] (the RGB bytes: scale 1/255, zero point 0), ending in the
  `TFLite_Detection_PostProcess` custom op (emitted by the converter, run by
  ai-edge-litert and tflite-runtime), so it has the four float outputs of the
  Coral/TFLite detection models: boxes [1, 10, 4] (ymin, xmin, ymax, xmax in [0, 1] of
  the frame), classes [1, 10] (0-based, no background), scores [1, 10], count [1]. Its
  NMS keeps detections scoring 0.3 or more. The accuracy columns are F1 at IoU 0.5 for
  detections scoring 0.5 or more, on 200 held-out scenes (seed 2; trained on 6,000,
  seed 1). The npz holds `images` uint8 [200, 64, 64, 3], `boxes` float32 [200, 3, 4],
  `classes` int64 [200, 3] (-1 where a scene has fewer shapes) and `counts` int64 [200].
- `shapes_yolov8_int8.tflite` and `shapes_yolo_split_int8.tflite` (`scripts/models/yolo_model.py`,
  `postprocess: yolo`): the same scenes and hold-out, in YOLO layouts: one int8 output
  [1, 7, 64] (centre x, y, width, height as fractions of the input, then 3 class scores;
  features first, no objectness, as Ultralytics' v8 exports), and the Edge TPU split head
  (int8 class logits [1, 84, 3] and box distribution [1, 84, 64], 16 bins per side, at
  strides 8/16/32 of the 64x64 input). Trained on 4,000 scenes (seed 1), 15 epochs; F1 as
  for the SSD detector, decoded in plain NumPy by the script.
- `dots_keypoints_int8.tflite`, `dots_holdout.npz` (`scripts/models/keypoint_model.py`,
  `postprocess: keypoints`): MoveNet's single-pose layout [1, 1, 17, 3] float32 (y, x,
  score) from an int8 model; scenes of up to 17 discs, one colour per keypoint, one in
  five left out. The accuracy is PCK@0.05 (visible keypoints found within 0.05 of the
  input with score >= 0.5) on 200 held-out scenes; `images` uint8 [200, 64, 64, 3],
  `keypoints` float32 [200, 17, 3] (y, x, 1 drawn / 0 left out).
- `manifest.json`: `{{"models": {{"digits": {{...}}, "vibration": {{...}},
  "mobilenet": {{...}}, "detection": {{...}}}}}}`; per model `file`, `labels` (or
  null), `input` and `output` (`shape`, `dtype`, `scale`, `zero_point`,
  `float_range`), `holdout`, `holdout_input_key`, `holdout_label_key`,
  `holdout_size`, `float_accuracy`, `int8_accuracy` (fractions in [0, 1], null for
  mobilenet), `size_bytes`, `median_invoke_ms`. The detector's entry also has
  `outputs` (all four; `float_range` null for float tensors), `metric` (`F1`: its
  accuracy fields are F1) and `int8_precision_recall`.

Input quantization in practice: for digits, scale 1/255 and zero point 0 map
[0, 1] onto 0..255. For MobileNetV2 the uint8 input is almost exactly the raw RGB
byte (scale ~2/255, zero point 127 or 128), but the model is untrained anyway. The
vibration input clips beyond the range shown in the table (calibrated on 1,000
training windows).

## Synthetic vibration data

Windows of 128 samples at 1 kHz (128 ms) from a 3-axis accelerometer on a bearing
housing, columns ax, ay (radial) and az (axial), in g, AC-coupled (no gravity
offset). Shaft speed f_r is drawn uniformly from 20-40 Hz, with a random phase.
Every window, whatever its class, has gaussian sensor noise (sigma drawn from
0.03-0.07 g per window, independent per axis) and a small 1x residual imbalance
(0.02-0.10 g, radial, ax/ay in quadrature).

- normal: nothing more.
- imbalance: strong 1x radial, 0.1-1.0 g, ax = A cos(2 pi f_r t + phi),
  ay = A sin(2 pi f_r t + phi) (quadrature: a rotating force); axial az only 0-10 %
  of A.
- misalignment: strong 2x radial, 0.1-0.8 g (ax/ay in quadrature), plus 1x radial
  0-40 % of that; a notable axial component: az 1x 0.05-0.5 g plus 2x 0.05-0.4 g.
- bearing_fault: outer-race defect impacts at BPFO = k f_r, k ~ U(3.1, 3.6); each
  impact is an exponentially decaying ringing (time constant 2-5 ms) of a
  structural resonance at 200-300 Hz, peak 0.15-1.2 g, heights jittered +-20 %;
  mostly radial (random direction in the ax/ay plane), az gets 0-25 % of it.

Training: 8,000 windows (seed 1), balanced classes; held-out: 200 windows (seed 2).

## Rebuilding

    pip install tensorflow-cpu scikit-learn ai-edge-litert
    python scripts/models/make_models.py                 # all models into models/
    python scripts/models/make_models.py --only digits   # one model; others kept in the manifest

Nothing is downloaded. TensorFlow is a development-only dependency of `scripts/`,
never of the daemon. Seeds are fixed; bit-identical models need the same machine
and library versions.
"""


def load_manifest(path: Path) -> dict[str, dict[str, Any]]:
    """Existing manifest entries by model name (empty if there is none)."""
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    models: dict[str, dict[str, Any]] = data.get("models", {})
    return models


def write_manifest(path: Path, entries: dict[str, dict[str, Any]]) -> None:
    """Write the manifest with models in a fixed order."""
    models = {name: entries[name] for name in MODEL_NAMES if name in entries}
    path.write_text(json.dumps({"models": models}, indent=2) + "\n", encoding="utf-8")


BUILDERS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "digits": make_digits,
    "vibration": make_vibration,
    "mobilenet": make_mobilenet,
    "detection": make_detection,
    "chain": make_chain,
    "yolo_v8": make_yolo_v8,
    "yolo_split": make_yolo_split,
    "keypoints": make_keypoints,
}


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("models"), help="output directory")
    parser.add_argument("--only", choices=MODEL_NAMES, help="build only this model")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / "manifest.json"
    entries = load_manifest(manifest_path)
    names = [args.only] if args.only else list(MODEL_NAMES)
    for name in names:
        entries[name] = BUILDERS[name](out_dir)
        write_manifest(manifest_path, entries)
    (out_dir / "README.md").write_text(render_readme(entries), encoding="utf-8")
    print(f"wrote {', '.join(names)} into {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

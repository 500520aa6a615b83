"""The one place decoders are registered: name -> the module that implements it.

A leaf module (it imports decoder modules only when one is asked for), so the config can
take its allowed ``postprocess`` values from :data:`DECODERS` without an import cycle, as
uvicorn's ``HTTP_PROTOCOLS`` maps names to the classes it loads. A new decoder is one new
module with a ``DECODER`` (see :class:`edged.postprocess.base.Decoder`) and one entry here.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edged.config import ModelConfig
    from edged.postprocess.base import Bound, Decoder, PostProcessor
    from edged.postprocess.options import PostOptions
    from edged.runtime.tensors import TensorSpec

DECODERS: dict[str, str] = {
    "classification": "edged.postprocess.classification",
    "detection": "edged.postprocess.detection",
    "anomaly": "edged.postprocess.anomaly",
    "raw": "edged.postprocess.raw",
    "yolo": "edged.postprocess.yolo",
    "anchors": "edged.postprocess.anchors",
    "keypoints": "edged.postprocess.keypoints",
    "segmentation": "edged.postprocess.segmentation",
    "phrase": "edged.postprocess.phrase",
}


def load(name: str) -> Decoder:
    """The decoder registered as ``name``. Raises ValueError for an unknown name."""
    module = DECODERS.get(name)
    if module is None:
        raise ValueError(f"unknown postprocess {name!r}; use one of {', '.join(DECODERS)}")
    decoder: Decoder = importlib.import_module(module).DECODER
    return decoder


def bind_model(config: ModelConfig, specs: Sequence[TensorSpec], labels: Sequence[str],
               input_spec: TensorSpec | None) -> Bound:
    """Bind the model's configured decoder to its outputs. Raises ValueError saying what
    the decoder expected when the outputs do not fit it."""
    from edged.postprocess.base import Context
    from edged.postprocess.options import PostOptions

    context = Context(tuple(specs), tuple(labels), PostOptions.from_config(config, labels),
                      config, input_spec)
    return load(config.postprocess).bind(context)


def postprocessor_for(
    kind: str,
    specs: Sequence[TensorSpec],
    labels: Sequence[str],
    top_k: int,
    *,
    options: PostOptions | None = None,
    input_spec: TensorSpec | None = None,
    config: ModelConfig | None = None,
) -> PostProcessor:
    """The post-processing function for ``kind``, bound without a whole model config (the
    original four decoders take ``options``; the others read ``config``)."""
    from edged.postprocess.base import Context
    from edged.postprocess.options import PostOptions

    options = options if options is not None else PostOptions(top_k=top_k)
    context = Context(tuple(specs), tuple(labels), options, config, input_spec)
    return load(kind).bind(context).process

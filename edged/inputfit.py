"""Whether a route's input format fits its model's input, for ``edged check``'s warnings:
what start-up accepts but a camera route will not do what its engineer meant.

- ``raw`` (the default when a route has no ``input:``) on a model whose input is an image
  the size of a camera frame: a JPEG sent to it is refused for its size.
- Image normalisation (``mean``, ``std``) that differs from what the model's own metadata
  states (edged.runtime.metadata), where it states some.
"""

from __future__ import annotations

from edged.config import RouteConfig
from edged.runtime import LoadedModel
from edged.runtime.edgetpu import FlatbufferError
from edged.runtime.metadata import input_normalization

IMAGE_FORMATS = ("jpeg", "png", "image")
FRAME_SIDE = 32  # smaller inputs (8x8 digits) are more often sent as tensors than as images
TOLERANCE = 1e-3


def image_shaped(shape: tuple[int, ...]) -> bool:
    """[1, H, W, C] with one or three channels, each side a camera frame's at least."""
    return (len(shape) == 4 and shape[0] == 1 and shape[3] in (1, 3)
            and min(shape[1], shape[2]) >= FRAME_SIDE)


def warnings(route: RouteConfig, model: LoadedModel) -> list[str]:
    found: list[str] = []
    spec = model.input
    fmt = route.input.format
    if fmt == "raw" and image_shaped(spec.shape):
        found.append(
            f"route {route.name!r}: input raw on model {model.name!r}, whose input is an "
            f"image ({spec.dtype.name}[{'x'.join(map(str, spec.shape))}]): a raw payload must "
            f"be exactly its {spec.nbytes} tensor bytes, and a camera's JPEG or PNG is "
            "refused; for frames set input: {format: image}")
    if fmt in IMAGE_FORMATS:
        try:
            stated = input_normalization(model.config.path)
        except (OSError, FlatbufferError):
            stated = None
        if stated is not None:
            mean = tuple(round(m / 255, 6) for m in stated[0])
            std = tuple(round(s / 255, 6) for s in stated[1])
            if not (_same(route.input.mean, mean) and _same(route.input.std, std)):
                found.append(
                    f"route {route.name!r}: input mean {list(route.input.mean)} std "
                    f"{list(route.input.std)} differ from model {model.name!r}'s metadata, "
                    f"which normalises (pixel - {_one(stated[0])}) / {_one(stated[1])}: set "
                    f"input: {{mean: {list(mean)}, std: {list(std)}}}")
    return found


def _same(config: tuple[float, ...] | list[float], stated: tuple[float, ...]) -> bool:
    """Per channel, where a single value stands for every channel."""
    width = max(len(config), len(stated))
    if {len(config), len(stated)} - {1, width}:
        return False

    def at(values: tuple[float, ...] | list[float], i: int) -> float:
        return float(values[0] if len(values) == 1 else values[i])

    return all(abs(at(config, i) - at(stated, i)) <= TOLERANCE for i in range(width))


def _one(values: tuple[float, ...]) -> str:
    return f"{values[0]:g}" if len(set(values)) == 1 else str([round(v, 4) for v in values])

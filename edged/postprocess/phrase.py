"""Phrase: a one-phrase detector's score (a wake word); the route turns it into events when
it crosses ``phrase.threshold`` (see ``edged.phrase``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from edged.errors import ModelExecutionError
from edged.postprocess import entity
from edged.postprocess.base import Array, Bound, Context, Kind, Result, dequantize


def _bind(context: Context) -> Bound:
    specs = context.specs
    if len(specs) != 1 or math.prod(specs[0].shape) != 1:
        shapes = [list(s.shape) for s in specs]
        raise ValueError(f"postprocess phrase needs one output holding one score; the model "
                         f"has {shapes}")
    spec = specs[0]

    def process(outputs: Sequence[Array], /, **_: object) -> Result:
        score = float(dequantize(outputs[0], spec).reshape(-1)[0])
        if not math.isfinite(score):
            raise ModelExecutionError(f"the model's score is {score}, not a finite number")
        return {"score": score}

    return Bound(process, f"one output {list(spec.shape)} holding one score")


DECODER = Kind("phrase", "a one-phrase detector's score, published as an event when it "
               "crosses phrase.threshold", _bind, entity=entity.PHRASE)

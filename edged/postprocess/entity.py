"""How a decoder's results look in Home Assistant: the entity's platform, the result key
that is its state, and the small summary of a result that its state message carries.

A decoder names one of the views here as its ``entity`` (None: the result has no single
value to show, as ``raw``). The summary keeps what a person reads at a glance: no boxes,
masks or tensors. Home Assistant's recorder refuses attributes over 16 KiB, and a history
of every box of every frame helps nobody.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Result = dict[str, Any]
Platform = Literal["sensor", "binary_sensor", "event"]
MAX_LISTED = 5
"""Classes (top-k) and labels listed in a summary, at most."""


@dataclass(frozen=True)
class EntityView:
    """One kind of Home Assistant entity.

    ``state_key``: the key of the summary that is the entity's state (for an ``event``, the
    event's type); the result has it under the same key, with the same value.
    ``summarize``: result -> the summary (small, JSON). ``state_class``: a sensor's state
    class (``measurement`` keeps long-term statistics of a number)."""

    platform: Platform
    state_key: str
    summarize: Callable[[Result], Result]
    state_class: str | None = None

    def template(self) -> str:
        """Home Assistant's value template over the entity's state message."""
        return f"{{{{ value_json.result.{self.state_key} }}}}"

    def unknown(self) -> Result:
        """The summary of a source whose state edged does not hold (yet): Home Assistant
        renders the state as ``None``, which it shows as unknown."""
        return {self.state_key: None}


def _label(result: Result) -> Result:
    top = [{"label": c.get("label"), "score": c.get("score")}
           for c in result.get("top_k", [])[:MAX_LISTED]]
    return {"label": result.get("label"), "score": result.get("score"), "top_k": top}


def _label_counts(items: list[dict[str, Any]]) -> dict[str, int]:
    counts = Counter(str(i["label"]) for i in items if i.get("label") is not None)
    return dict(counts.most_common(MAX_LISTED))


def _count(key: str) -> Callable[[Result], Result]:
    def summarize(result: Result) -> Result:
        items: list[dict[str, Any]] = result.get(key, [])
        scores = [float(i["score"]) for i in items if i.get("score") is not None]
        summary: Result = {"count": result.get("count", len(items)),
                           "best_score": max(scores) if scores else None}
        labels = _label_counts(items)
        if labels:
            summary["labels"] = labels
        return summary
    return summarize


def _areas(result: Result) -> Result:
    classes: list[dict[str, Any]] = result.get("classes", [])
    return {"count": result.get("count", len(classes)),
            "areas": {str(c.get("label", c.get("index"))): c.get("area")
                      for c in classes[:MAX_LISTED]}}


def _problem(result: Result) -> Result:
    return {"state": result.get("state"), "score": result.get("score"),
            "threshold": result.get("threshold")}


def _phrase(result: Result) -> Result:
    return {"phrase": result.get("phrase"), "score": result.get("score"),
            "threshold": result.get("threshold")}


LABEL = EntityView("sensor", "label", _label)
"""The best class (unknown when none reached the threshold)."""
DETECTIONS = EntityView("sensor", "count", _count("detections"), "measurement")
"""How many boxes, and of which labels."""
POSES = EntityView("sensor", "count", _count("poses"), "measurement")
AREAS = EntityView("sensor", "count", _areas, "measurement")
"""How many classes cover part of the frame, and how much of it."""
PROBLEM = EntityView("binary_sensor", "state", _problem)
"""On (``anomalous``) is a problem, off (``normal``) is fine."""
PHRASE = EntityView("event", "phrase", _phrase)
"""Fires each time the phrase is heard."""

"""One-phrase detectors (wake words): a score per step -> an event when the phrase is heard.

A wake-word model scores every 80 ms, and one utterance keeps the score high for several
steps: the phrase is *heard* when the score reaches the threshold while the topic is armed
and the refractory time since its last event has passed; it re-arms once the score has
fallen ``hysteresis`` below the threshold. Thread-safe and bounded per source topic.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from edged.config import PhraseConfig

Array = np.ndarray[Any, Any]
Result = dict[str, Any]


@dataclass
class _Topic:
    armed: bool = True
    last_event_at: float | None = None


class PhraseTracker:
    """Per source topic: is the detector armed, when did it last fire."""

    def __init__(self, config: PhraseConfig, label: str) -> None:
        self.config = config
        self.label = config.label or label
        self._topics: OrderedDict[str, _Topic] = OrderedDict()
        self._lock = threading.Lock()

    def observe(self, topic: str, score: float, at: float) -> Result:
        """The result for one score of ``topic`` at ``at`` (monotonic s); ``detected`` says
        whether this step is an event."""
        c = self.config
        with self._lock:
            state = self._topics.get(topic)
            if state is None:
                state = self._topics[topic] = _Topic()
                if len(self._topics) > c.max_topics:
                    self._topics.popitem(last=False)
            else:
                self._topics.move_to_end(topic)
            if not state.armed and score < c.threshold - c.hysteresis:
                state.armed = True
            detected = state.armed and score >= c.threshold and self._rested(state, at)
            if detected:
                state.armed = False
                state.last_event_at = at
        return {"phrase": self.label, "score": round(score, 6), "threshold": c.threshold,
                "detected": detected}

    def _rested(self, state: _Topic, at: float) -> bool:
        last = state.last_event_at
        return last is None or (at - last) * 1000.0 >= self.config.refractory_ms

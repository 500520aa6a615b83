"""edged.phrase: one-phrase detector scores -> events with hysteresis and refractory time."""

from __future__ import annotations

from edged.config import PhraseConfig
from edged.phrase import PhraseTracker


def events(tracker: PhraseTracker, scores: list[float], step_s: float = 0.08,
           topic: str = "mic/a") -> list[int]:
    return [i for i, s in enumerate(scores)
            if tracker.observe(topic, s, i * step_s)["detected"]]


def test_one_utterance_above_the_threshold_for_many_steps_is_one_event() -> None:
    tracker = PhraseTracker(PhraseConfig(threshold=0.5, hysteresis=0.2), "hey_jarvis")
    assert events(tracker, [0.0, 0.6, 0.9, 0.4, 0.7, 0.2, 0.0, 0.8]) == [1, 7]


def test_without_hysteresis_a_dip_below_the_threshold_rearms() -> None:
    tracker = PhraseTracker(PhraseConfig(threshold=0.5), "hey_jarvis")
    assert events(tracker, [0.6, 0.4, 0.6]) == [0, 2]


def test_refractory_time_holds_back_the_next_event() -> None:
    tracker = PhraseTracker(PhraseConfig(threshold=0.5, refractory_ms=500), "hey_jarvis")
    # Steps of 80 ms: the dip re-arms it only once 500 ms have passed since step 0.
    assert events(tracker, [0.9, 0.0, 0.9, 0.0, 0.0, 0.0, 0.0, 0.9]) == [0, 7]


def test_topics_are_tracked_apart_and_the_result_names_the_phrase() -> None:
    tracker = PhraseTracker(PhraseConfig(threshold=0.5, label="jarvis"), "hey_jarvis")
    first = tracker.observe("mic/a", 0.9, 0.0)
    assert first == {"phrase": "jarvis", "score": 0.9, "threshold": 0.5, "detected": True}
    assert tracker.observe("mic/b", 0.9, 0.0)["detected"] is True
    assert tracker.observe("mic/a", 0.9, 0.08)["detected"] is False

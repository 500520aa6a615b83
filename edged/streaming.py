"""Streaming chains: stages that each take a sliding window of the rows the stage before
them produced, per source topic.

A wake-word pipeline is three models at three rates: a mel spectrogram on 110 ms of
samples every 80 ms (8 frames out), an embedding on 76 frames every 8 (one row out), a
classifier on 16 embeddings every one. :class:`RowWindow` is the window one stage keeps for
one topic; :class:`TopicStages` holds a topic's windows for every stage and makes sure the
work of its windows is applied in the order the samples came, even when several workers
run them; :class:`StreamingChain` binds the stages of one route to their models and keeps
a bounded set of topics.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from edged import preprocess
from edged.errors import MessageError
from edged.postprocess.base import dequantize
from edged.runtime import LoadedModel

Array = np.ndarray[Any, Any]
RunModel = Callable[[LoadedModel, Array], list[Array]]
T = TypeVar("T")
ORDER_WAIT_S = 1.0
"""Longest a window waits for the one before it before that one counts as lost. The one
before is nearly always being run by another worker (every path that drops a window says
so at once), which a busy machine can hold off the CPU for hundreds of ms: a restart
costs the stream seconds of audio, a wait only this window's time."""


class RowWindow:
    """Rows in, windows of ``size`` rows out every ``hop`` rows (vectorised: a chunk of 1280
    samples is one NumPy copy, not 1280 Python steps). With ``fill`` the window starts
    full of that value and the first comes after ``hop`` rows; without, after ``size``.
    Not thread-safe."""

    def __init__(self, size: int, hop: int, width: int, fill: float | None = None) -> None:
        if not 1 <= hop <= size:
            raise ValueError(f"hop must be in 1..size ({size}), got {hop}")
        self.size, self.hop, self.width, self.fill = size, hop, width, fill
        self.reset()

    def reset(self) -> None:
        """Forget every row held."""
        if self.fill is None:
            self._held = np.zeros((0, self.width), dtype=np.float32)
            self._due = self.size
        else:
            self._held = np.full((self.size, self.width), self.fill, dtype=np.float32)
            self._due = self.hop
        self.pending = 0
        """Rows received that no window has used yet."""

    def push(self, rows: Array) -> list[Array]:
        """Add rows [k, width]; return the windows [size, width] they complete, oldest
        first."""
        if rows.ndim != 2 or rows.shape[1] != self.width:
            raise ValueError(f"rows {list(rows.shape)} are not [k, {self.width}]")
        data = np.concatenate((self._held, rows.astype(np.float32, copy=False)))
        first_end = len(self._held) + self._due
        ends = range(first_end, len(data) + 1, self.hop)
        windows = [data[end - self.size:end] for end in ends]
        if windows:
            self._due = ends[-1] + self.hop - len(data)
            self.pending = len(data) - ends[-1]
        else:
            self._due -= len(rows)
            self.pending += len(rows)
        self._held = data[-self.size:].copy() if len(data) > self.size else data
        return windows


class StreamOrderError(MessageError):
    """A window whose turn has passed: later windows of its topic ran before it."""

    reason = "deadline"


@dataclass(frozen=True)
class Stage:
    """One chain link that keeps a window: its model and how rows reach it."""

    model: LoadedModel
    source: LoadedModel
    width: int
    size: int | None
    hop: int
    fill: float | None
    scale: float
    offset: float

    def rows(self, outputs: Sequence[Array]) -> Array:
        """The source's first output as rows [k, width] of real values, scaled."""
        values = dequantize(outputs[0], self.source.outputs[0]).reshape(-1, self.width)
        if self.scale != 1.0 or self.offset != 0.0:
            values = values * self.scale + self.offset
        return values.astype(np.float32, copy=False)

    def tensor(self, rows: Array) -> Array:
        # Rows in order, flattened, are the input's elements in order ([76, 32] rows of mel
        # frames -> [1, 76, 32, 1]); the shapes were checked at load.
        return preprocess.to_input_tensor(rows.reshape(-1), self.model.input)


class TopicStages:
    """One topic's windows for every stage, applied in window order."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        self.windows = [None if s.size is None else RowWindow(s.size, s.hop, s.width, s.fill)
                        for s in stages]
        self.turn = threading.Condition()
        self.next_seq = 0
        self.issued = 0
        """Numbers handed out to windows so far (on the thread that admits messages)."""
        self.skipped: set[int] = set()
        self.fresh = False
        """The next window numbered starts the stages afresh (its input stream restarted)."""
        self.restart_at: set[int] = set()
        self.restarts = 0

    def reset(self) -> None:
        for window in self.windows:
            if window is not None:
                window.reset()
        self.restarts += 1

    def await_turn(self, seq: int, wait_s: float) -> None:
        """Block (holding ``turn``) until window ``seq`` is next. Windows before it that
        never came (refused, dropped, or run by a stuck worker) start the stages afresh:
        their rows are missing, so what is held must not be stitched to what follows.
        Call with ``turn`` held."""
        self._pass_skipped()
        end = time.monotonic() + wait_s
        while self.next_seq < seq:
            left = end - time.monotonic()
            if left <= 0:
                self.reset()
                self.next_seq = seq
                break
            self.turn.wait(left)
            self._pass_skipped()
        if self.next_seq > seq:
            raise StreamOrderError(f"window {seq} came after window {self.next_seq - 1} of its "
                                   "stream had run; not run")
        if seq in self.restart_at:
            self.restart_at.discard(seq)
            self.reset()

    def done(self, seq: int) -> None:
        """Window ``seq`` ran (call with ``turn`` held)."""
        self.next_seq = seq + 1
        self._pass_skipped()
        self.turn.notify_all()

    def skip(self, seq: int) -> None:
        """Window ``seq`` will never run: the stages restart when its turn comes."""
        with self.turn:
            if seq >= self.next_seq:
                self.skipped.add(seq)
                self._pass_skipped()
                self.turn.notify_all()

    def _pass_skipped(self) -> None:
        while self.next_seq in self.skipped:
            self.skipped.discard(self.next_seq)
            self.restart_at.discard(self.next_seq)
            self.next_seq += 1
            self.reset()


class StreamingChain:
    """The stages of one route after its first model, with their windows per topic."""

    def __init__(self, first: LoadedModel, stages: Sequence[Stage], max_topics: int) -> None:
        self.first = first
        self.stages = tuple(stages)
        self._max_topics = max_topics
        self._topics: OrderedDict[str, TopicStages] = OrderedDict()
        self._lock = threading.Lock()
        self.forgotten = 0

    @classmethod
    def build(cls, first: LoadedModel, chain: Sequence[LoadedModel],
              links: Sequence[Any], max_topics: int) -> StreamingChain:
        """Check each link against the model before it; raise ValueError naming the stage
        that cannot take what it is given."""
        stages, source = [], first
        for model, link in zip(chain, links, strict=True):
            stages.append(_stage(source, model, link))
            source = model
        return cls(first, stages, max_topics)

    def state(self, topic: str) -> TopicStages:
        with self._lock:
            state = self._topics.get(topic)
            if state is None:
                state = self._topics[topic] = TopicStages(self.stages)
                if len(self._topics) > self._max_topics:
                    self._topics.popitem(last=False)
                    self.forgotten += 1
            else:
                self._topics.move_to_end(topic)
            return state

    def number(self, topic: str, count: int) -> list[int]:
        """Numbers for the next ``count`` windows of ``topic``, in the order they came.
        Call from one thread (the one that admits messages)."""
        state = self.state(topic)
        first = state.issued
        state.issued += count
        if state.fresh and count:
            with state.turn:
                state.restart_at.add(first)
            state.fresh = False
        return list(range(first, first + count))

    def restart(self, topic: str) -> None:
        """The input stream of ``topic`` restarted (a gap): the stages start afresh at its
        next window, once the windows before it have run. Same thread as ``number``."""
        self.state(topic).fresh = True

    def skip(self, topic: str, seq: int | None) -> None:
        """A window of ``topic`` that will not run (refused, dropped, failed)."""
        if seq is not None:
            self.state(topic).skip(seq)

    def advance(self, topic: str, seq: int, outputs: list[Array], run: RunModel,
                settle: Callable[[list[list[Array]]], T], wait_s: float = ORDER_WAIT_S) -> T:
        """Feed the first model's ``outputs`` for window ``seq`` of ``topic`` through the
        stages, and hand the outputs of the last stage (once per time it ran; often none,
        its window still filling) to ``settle``, still in the topic's turn: per-topic
        state after the stages (phrase events) moves in window order too."""
        state = self.state(topic)
        with state.turn:
            state.await_turn(seq, wait_s)
            try:
                settled = settle(self._through(state, outputs, run))
            except BaseException:
                state.reset()  # a stage failed midway: its windows hold half a step
                state.done(seq)
                raise
            state.done(seq)
            return settled

    def _through(self, state: TopicStages, outputs: list[Array],
                 run: RunModel) -> list[list[Array]]:
        pending = [outputs]
        for stage, window in zip(self.stages, state.windows, strict=True):
            produced: list[list[Array]] = []
            for out in pending:
                if window is None:
                    produced.append(run(stage.model, stage.tensor(stage.rows(out))))
                    continue
                for rows in window.push(stage.rows(out)):
                    produced.append(run(stage.model, stage.tensor(rows)))
            pending = produced
            if not pending:
                break
        return pending

    @property
    def restarts(self) -> int:
        with self._lock:
            return sum(t.restarts for t in self._topics.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._topics)


def _stage(source: LoadedModel, target: LoadedModel, link: Any) -> Stage:
    where = f"chain stage {target.name!r}"
    if len(source.outputs) != 1:
        raise ValueError(f"{where}: {source.name!r} has {len(source.outputs)} outputs; a "
                         "stage takes exactly one")
    out, want = source.outputs[0], target.input
    width = out.shape[-1] if out.shape else 1
    if want.dtype.kind not in "fiu" or out.dtype.kind not in "fiu":
        raise ValueError(f"{where}: dtypes {out.dtype} -> {want.dtype} are not numeric")
    window = link.window
    if window is None:
        if math.prod(out.shape) != math.prod(want.shape):
            raise ValueError(f"{where}: {source.name!r} outputs {list(out.shape)}, which does "
                             f"not fit its input {list(want.shape)}")
        return Stage(target, source, width, None, 1, None, link.scale, link.offset)
    if window.size * width != math.prod(want.shape):
        raise ValueError(
            f"{where}: a window of {window.size} rows of {width} values (the last axis of "
            f"{source.name!r}'s output {list(out.shape)}) does not fit its input "
            f"{list(want.shape)} ({want.dtype.name})")
    return Stage(target, source, width, window.size, window.hop or window.size, window.fill,
                 link.scale, link.offset)

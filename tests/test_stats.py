"""Stats: stage times are kept as they come and folded into the histograms in batches; the
histograms must count exactly what one-at-a-time counting would."""

from __future__ import annotations

import bisect

from hypothesis import given, settings
from hypothesis import strategies as st

from edged.results import Timings
from edged.stats import BUCKETS_MS, FOLD_AT, STAGES, Stats

times = st.one_of(st.sampled_from([0.0, *BUCKETS_MS]),
                  st.floats(min_value=0.0, max_value=1e5, allow_nan=False))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(times, times, times, times, times), max_size=2 * FOLD_AT + 7))
def test_folded_histograms_count_what_each_result_brought(rows: list[tuple[float, ...]]) -> None:
    stats = Stats()
    stats.add_route("r", "m")
    for row in rows:
        stats.answered("r", Timings(*row))
    exported = stats.export()["r"]
    for i, stage in enumerate(STAGES):
        expected = [0] * (len(BUCKETS_MS) + 1)
        for row in rows:
            expected[bisect.bisect_left(BUCKETS_MS, row[i])] += 1
        histogram = exported.stages[stage]
        assert histogram.counts == expected
        assert histogram.count == len(rows)
        assert abs(histogram.sum_ms - sum(row[i] for row in rows)) <= 1e-6 * max(
            1.0, sum(row[i] for row in rows))
    assert exported.succeeded == len(rows)
    assert list(exported.recent_total) == [row[4] for row in rows][-len(exported.recent_total):]


def test_a_snapshot_reads_results_not_yet_folded() -> None:
    stats = Stats()
    stats.add_route("r", "m")
    stats.answered("r", Timings(queue=1.0, total=3.0))
    snapshot = stats.snapshot()["routes"]["r"]
    assert snapshot["timings_ms"]["total"] == {"count": 1, "mean": 3.0}
    assert snapshot["total_ms"]["p50"] == 3.0

"""The service-time estimate and the expected-finish arithmetic (pure, deterministic)."""

from __future__ import annotations

import pytest

from edged.estimate import ServiceTimeEstimate, expected_finish


def test_starts_from_the_initial_guess() -> None:
    assert ServiceTimeEstimate(initial_s=0.004).seconds == 0.004


def test_tracks_a_high_percentile_of_recent_samples() -> None:
    est = ServiceTimeEstimate(initial_s=1.0, window=100, quantile=0.9, refresh_every=1)
    for ms in range(1, 101):  # 1..100 ms
        est.add(ms / 1000)
    assert est.seconds == pytest.approx(0.090)


def test_forgets_samples_older_than_the_window() -> None:
    est = ServiceTimeEstimate(initial_s=1.0, window=10, quantile=1.0, refresh_every=1)
    est.add(0.5)
    for _ in range(10):
        est.add(0.01)
    assert est.seconds == pytest.approx(0.01)


def test_refreshes_in_batches_once_warm() -> None:
    est = ServiceTimeEstimate(initial_s=1.0, window=64, quantile=1.0, refresh_every=16)
    for _ in range(8):  # the first 7 refresh at once (a cold window); the 8th starts a batch
        est.add(0.002)
    assert est.seconds == pytest.approx(0.002)
    for _ in range(14):
        est.add(0.003)
    assert est.seconds == pytest.approx(0.002)  # 15 samples since the last refresh: < 16
    est.add(0.003)
    assert est.seconds == pytest.approx(0.003)


def test_rejects_a_quantile_outside_0_1() -> None:
    with pytest.raises(ValueError):
        ServiceTimeEstimate(initial_s=1.0, quantile=0.0)


def test_idle_worker_finishes_after_one_service_time() -> None:
    assert expected_finish(now=10.0, ahead=0, workers=2, busy=0, service_s=0.01) == 10.01


def test_queued_work_is_shared_among_workers() -> None:
    # 4 ahead on 2 workers = two service times of waiting, plus half of the running one.
    got = expected_finish(now=0.0, ahead=4, workers=2, busy=2, service_s=0.01)
    assert got == pytest.approx(0.02 + 0.005 + 0.01)

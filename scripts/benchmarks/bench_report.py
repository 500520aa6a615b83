"""The bench's figures: one phase summarised, the tables, and edged's ratios to the peer."""

from __future__ import annotations

from typing import Any

import numpy as np
from bench_load import Phase

Split = tuple[float, float, float, float]


def _pct(values: list[float], digits: int = 3) -> dict[str, float | None]:
    return {f"p{q}": round(float(np.percentile(values, q)), digits) if values else None
            for q in (50, 90, 99)}


def _split(rows: list[Split]) -> dict[str, float] | None:
    if not rows:
        return None
    keys = ("to_server", "queued", "in_server", "back_to_sender")
    return {k: round(float(np.median([r[i] for r in rows])), 2) for i, k in enumerate(keys)}


def summarise(phase: Phase, seconds: float, achieved: float, deadline_ms: float,
              capacity: float) -> dict[str, Any]:
    """Counts at the sender: a result is on time when it arrived within ``deadline_ms`` of
    its sending, late otherwise; refusals are counted by reason."""
    rtts: list[float] = []
    errors: dict[str, int] = {}
    inbound_all: list[float] = []
    splits: list[Split] = []
    for seq, a in phase.answers.items():
        inbound = (a.server_received - phase.sent_at[seq]) * 1000 if a.server_received else None
        if inbound is not None:
            inbound_all.append(inbound)
        if a.reason is not None:
            errors[a.reason] = errors.get(a.reason, 0) + 1
            continue
        rtts.append((a.arrived - phase.sent_at[seq]) * 1000)
        total = a.server_total_ms
        if inbound is not None and total is not None:
            # sender -> server, queued in the server, run in it, server -> sender.
            splits.append((inbound, a.server_queue_ms, total - a.server_queue_ms,
                           rtts[-1] - inbound - total))
    rtt = np.array(rtts)
    sent = len(phase.sent_at)
    on_time = int(np.sum(rtt <= deadline_ms)) if rtt.size else 0
    pct = _pct(rtts)
    slow = pct["p99"] or 0.0
    with_split = [t for t, a in zip(rtts, [a for a in phase.answers.values()
                                           if a.reason is None], strict=True)
                  if a.server_received and a.server_total_ms is not None]
    return {
        "offered_per_s": round(phase.rate, 1),
        "achieved_send_per_s": round(achieved, 1),
        "sent": sent,
        "results": int(rtt.size),
        "on_time": on_time,
        "late": int(rtt.size - on_time),
        "rejected": errors,
        "unanswered": sent - int(rtt.size) - sum(errors.values()),
        "stray_answers": phase.strays,
        "goodput_per_s": round(on_time / seconds, 1),
        "attainment": round(on_time / sent, 4) if sent else None,
        "latency_ms": pct,
        "goodput_of_capacity": round(on_time / seconds / capacity, 4),
        # How old frames were when the server read them (edged says; the peer does not).
        "to_server_ms": _pct(inbound_all, 2) if inbound_all else None,
        "server_stage_median_ms": {
            k: round(float(np.median(v)), 3) for k in
            ("queue", "preprocess", "invoke", "postprocess", "total")
            if (v := [a.server_timings_ms[k] for a in phase.answers.values()
                      if a.reason is None and k in a.server_timings_ms])
        } or None,
        "median_split_ms": _split(splits),
        "slowest_1pct_split_ms": _split([x for x, t in zip(splits, with_split, strict=True)
                                         if t >= slow]),
        "late_median_split_ms": _split([x for x, t in zip(splits, with_split, strict=True)
                                        if t > deadline_ms]),
    }


def _f(v: float | None, width: int = 8, digits: int = 2) -> str:
    return f"{v:{width}.{digits}f}" if v is not None else " " * (width - 1) + "-"


def print_rows(rows: list[dict[str, Any]]) -> None:
    """One line per (level, server), and the ratio edged/peer under each pair."""
    print(f"{'load':>8} {'server':>6} {'offered/s':>10} {'sent/s':>8} {'goodput/s':>10} "
          f"{'on time':>8} {'p50 ms':>8} {'p99 ms':>8} {'late':>6} {'cpu us/req':>11} "
          f"{'cpu %':>6} {'rss MB':>7} {'of cap':>7}  rejected")
    for r in rows:
        lat = r["latency_ms"]
        rejected = ",".join(f"{k}={v}" for k, v in sorted(r["rejected"].items())) or "-"
        print(f"{r['load']:>8} {r['server']:>6} {r['offered_per_s']:>10.0f} "
              f"{r['achieved_send_per_s']:>8.0f} {r['goodput_per_s']:>10.1f} "
              f"{r['attainment'] or 0:>8.3f} {_f(lat['p50'])} {_f(lat['p99'])} "
              f"{r['late']:>6} {r['cpu_us_per_request']:>11.0f} {r['server_cpu_pct']:>6.0f} "
              f"{r['server_peak_rss_mb']:>7.1f} {r['goodput_of_capacity']:>7.3f}  {rejected}")
        ratio = r.get("edged_over_peer")
        if ratio:
            print(f"{'':>8} {'ratio':>6} {'':>10} {'':>8} {_f(ratio['goodput'], 10, 2)} "
                  f"{_f(ratio['on_time'], 8, 2)} {_f(ratio['p50'])} {_f(ratio['p99'])} "
                  f"{_f(ratio['late'], 6, 1)} {_f(ratio['cpu_per_request'], 11, 2)}"
                  f"  (p50 {diff:+.2f} ms vs the peer's)" if (diff := ratio["p50_minus_peer_ms"])
                  is not None else "")


def print_machine(rows: list[dict[str, Any]]) -> None:
    print(f"\n{'load':>8} {'server':>6} {'age at server p50/p90/p99 ms':>30} {'machine %':>10} "
          f"{'broker %':>9} {'sender %':>9} {'receiver %':>11} {'other srv %':>11} "
          f"{'ceiling/s':>10} {'srv at rest %':>14}")
    for r in rows:
        age = r["to_server_ms"] or {}
        other = r["other_cpu_pct"]
        ages = "/".join(f"{age.get(k) or float('nan'):.1f}" for k in ("p50", "p90", "p99"))
        print(f"{r['load']:>8} {r['server']:>6} {ages:>30} {r['machine_cpu_pct']:>10.0f} "
              f"{other.get('broker', float('nan')):>9.0f} {other.get('sender', 0):>9.0f} "
              f"{other.get('receiver', 0):>11.0f} {other.get('idle_server', 0):>11.0f} "
              f"{r['goodput_ceiling_per_s']:>10.0f} {r['server_idle_cpu_pct']:>14.1f}")


def print_splits(rows: list[dict[str, Any]]) -> None:
    print("\nwhere edged's time went (median ms: sender -> edged / queued in edged / running "
          "in edged / edged -> sender;\n  edged's received_at has millisecond resolution, so "
          "the first reads up to 1 ms low and the last up to 1 ms high)")
    for r in rows:
        for label, key in (("all results", "median_split_ms"),
                           ("slowest 1 %", "slowest_1pct_split_ms"),
                           (f"{r['late']} late", "late_median_split_ms")):
            if r[key]:
                part = r[key]
                print(f"  {r['load']:>8} {label:>12}: {part['to_server']:.2f} / "
                      f"{part['queued']:.2f} / {part['in_server']:.2f} / "
                      f"{part['back_to_sender']:.2f}")


def ratios(edged: dict[str, Any], peer: dict[str, Any]) -> dict[str, float | None]:
    """edged / peer for the figures the issue's targets compare."""

    def div(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a is not None and b else None

    return {
        "cpu_per_request": div(edged["cpu_us_per_request"], peer["cpu_us_per_request"]),
        "p50": div(edged["latency_ms"]["p50"], peer["latency_ms"]["p50"]),
        "p99": div(edged["latency_ms"]["p99"], peer["latency_ms"]["p99"]),
        "goodput": div(edged["goodput_per_s"], peer["goodput_per_s"]),
        "on_time": div(edged["attainment"], peer["attainment"]),
        "late": div(edged["late"], peer["late"]),
        "p50_minus_peer_ms": round(edged["latency_ms"]["p50"] - peer["latency_ms"]["p50"], 3)
        if edged["latency_ms"]["p50"] is not None and peer["latency_ms"]["p50"] is not None
        else None,
    }


def passes(row: dict[str, Any], threshold: float = 0.99) -> bool:
    """The --find-max criterion: >= 99 % of those sent answered on time, none late."""
    return bool(row["attainment"] is not None and row["attainment"] >= threshold
                and row["late"] == 0)

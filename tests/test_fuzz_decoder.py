"""The packet decoder under a coverage-guided fuzzer (scripts/fuzz_decoder.py, atheris), for
a bounded time: nothing but ``MalformedPacket`` is raised, the outcome does not depend on
how the bytes are cut into reads, and memory stays bounded (libFuzzer's RSS limit). Long
runs and their figures: docs/brokers.md."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.tools import missing

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "fuzz_decoder.py"
FUZZ_SECONDS = 45
RSS_LIMIT_MB = 1024


def fuzz_module() -> object:
    """scripts/fuzz_decoder.py as a module (its seeds and its target), without atheris:
    only the fuzzer's own process instruments the codec."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import fuzz_decoder
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return fuzz_decoder


def test_the_seed_corpus_is_real_packets_that_decode() -> None:
    from edged.mqtt.packets import Decoder

    fuzz = fuzz_module()
    seeds: list[bytes] = fuzz.seeds()  # type: ignore[attr-defined]
    assert len(seeds) > 20
    for seed in seeds:
        got = Decoder(bool(seed[0] & 1)).feed(seed[2:])
        assert got, seed  # each holds at least one whole packet, and none is malformed
        fuzz.one_input(seed)  # type: ignore[attr-defined]


@pytest.mark.timeout(FUZZ_SECONDS * 4 + 60)
def test_a_bounded_fuzzing_run_finds_nothing(tmp_path: Path) -> None:
    if importlib.util.find_spec("atheris") is None:
        missing("atheris is not installed (pip install -e '.[test]')")
    run = subprocess.run(
        [sys.executable, str(SCRIPT), f"-max_total_time={FUZZ_SECONDS}",
         f"-rss_limit_mb={RSS_LIMIT_MB}", "-timeout=30", "-print_final_stats=1",
         str(tmp_path / "corpus")],
        capture_output=True, text=True, cwd=tmp_path, timeout=FUZZ_SECONDS * 4 + 30,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-5000:]
    done = re.search(r"Done (\d+) runs in (\d+) second", out)
    assert done is not None and int(done.group(1)) > 0, out[-3000:]
    peak = re.search(r"stat::peak_rss_mb:\s+(\d+)", out)
    cover = re.findall(r"cov: (\d+)", out)
    print(f"\nfuzz_decoder: {done.group(1)} inputs in {done.group(2)} s, coverage "
          f"{cover[-1] if cover else '?'} edges, peak RSS "
          f"{peak.group(1) if peak else '?'} MB")

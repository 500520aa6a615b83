#!/usr/bin/env bash
# The benchmark runs behind docs/benchmarks.md ("The hot path"), one after the other, each
# writing its table to docs/bench/<name>.txt and its JSON beside it. Run it on a quiet
# machine: other work on the same cores shows up as latency and CPU edged did not cause.
#   scripts/benchmarks/bench_suite.sh [NAME ...]   (default: all; names as below)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
D=${DURATION:-10}
out=docs/bench
mkdir -p "$out"

run() {
    local name=$1; shift
    echo "== $name: bench.py $*" >&2
    "$PY" scripts/benchmarks/bench.py "$@" --json-out "$out/$name.json" 2>&1 \
        | grep -v -E 'sent +[0-9]+ t=' | tee "$out/$name.txt"
}

case_tiny()     { run tiny --model hey_jarvis --rates 1000 4000 --peer --duration "$D" --receiver raw; }
case_twice()    { run tiny_answered_twice --model hey_jarvis --rates 1000 4000 --publish-answered \
                      --duration "$D" --receiver raw; }
case_max()      { run tiny_max --model hey_jarvis --peer --find-max 1000 --find-max-steps 3 \
                      --duration 6 --receiver raw; }
case_sim()      { run sim4 --model mobilenet --accelerator sim:4 --workers 1 --loads 0.5 1 2 4 \
                      --duration "$D"; }
case_nagle()    { run sim4_nagle --model mobilenet --accelerator sim:4 --workers 1 \
                      --loads 0.5 1 2 --broker-nagle --duration "$D"; }
case_cpu()      { run mobilenet_cpu --model mobilenet --workers 1 --loads 2 4 --peer --duration "$D"; }
case_soak()     { run sim4_soak --model mobilenet --accelerator sim:4 --workers 1 --loads 4 \
                      --soak 300 --duration "$D"; }

for name in "${@:-tiny twice max sim nagle cpu soak}"; do
    for one in $name; do "case_$one"; done
done

#!/usr/bin/env bash
# End-to-end benchmark: weft (pipelines/bench.yaml: OTLP gRPC in -> batch -> OTLP gRPC out)
# between weft-loadgen and a counting sink, for a fixed duration. Reports spans/s, CPU
# seconds per million spans (weft process only, from /proc), peak RSS and the end-to-end
# latency the sink observes. Runs weft pinned to one core (taskset) and unpinned.
#
#   benches/e2e.sh [duration_seconds] [rate]      (rate 0 = as fast as accepted)
#
# Environment: WEFT_BENCH_CONFIG (pipeline file, default pipelines/bench.yaml; e.g.
# pipelines/bench-attributes.yaml), WEFT_BENCH_BIN (directory holding prebuilt weft and
# weft-loadgen: skips the build, e.g. to measure another commit's binaries),
# WEFT_BENCH_CEILING (the decode+encode ceiling in spans/s from
# `cargo bench --bench codec`: each spans-per-CPU-second figure is printed against it).
#
# Needs a release build (built here if missing: ~11 min cold on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-20}
RATE=${2:-0}
TARGET=${CARGO_TARGET_DIR:-target}
CONFIG=${WEFT_BENCH_CONFIG:-pipelines/bench.yaml}
CEILING=${WEFT_BENCH_CEILING:-0}
if [ -n "${WEFT_BENCH_BIN:-}" ]; then
  BIN=$WEFT_BENCH_BIN
else
  cargo build --release --bins >&2
  BIN=$TARGET/release
fi
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

run() {
  local label=$1 pin=$2
  "$BIN/weft-loadgen" sink --listen 127.0.0.1:14317 --duration $((DUR + 5))s >"$WORK/sink.log" 2>&1 &
  local sink=$!
  WEFT_BENCH_IN=127.0.0.1:14318 WEFT_BENCH_SINK=127.0.0.1:14317 $pin "$BIN/weft" --config "$CONFIG" >"$WORK/weft.log" 2>&1 &
  local weft=$!
  sleep 1
  local t0; t0=$(awk '{print $14+$15}' /proc/$weft/stat)
  local gen
  gen=$("$BIN/weft-loadgen" send --endpoint 127.0.0.1:14318 --duration ${DUR}s --rate "$RATE" \
        --items-per-request 100 --attributes 10 --value-size 24 --concurrency 8 --max-refused 1 $3)
  sleep 2
  local t1; t1=$(awk '{print $14+$15}' /proc/$weft/stat)
  local hz; hz=$(getconf CLK_TCK)
  local rss; rss=$(awk '/VmHWM/ {print $2}' /proc/$weft/status)
  kill -TERM $weft; wait $weft || true
  kill $sink 2>/dev/null || true; wait $sink 2>/dev/null || true
  local items; items=$(grep -o 'total [0-9]*' "$WORK/sink.log" | tail -1 | awk '{print $2}')
  echo "== $label ($CONFIG)"
  echo "$gen"
  awk -v i="${items:-0}" -v d="$DUR" -v t0="$t0" -v t1="$t1" -v hz="$hz" -v rss="$rss" -v ceil="$CEILING" 'BEGIN {
    cpu = (t1 - t0) / hz
    printf "weft: %.0f spans/s delivered, %.2f CPU s per million spans (%.1f CPU s), peak RSS %.1f MiB\n", i / d, cpu * 1000000 / (i + 1), cpu, rss / 1024
    if (cpu > 0) {
      per_core = i / cpu
      printf "weft: %.0f spans per CPU-second", per_core
      if (ceil > 0) printf " = %.2f x the decode+encode ceiling (%.0f/s)", per_core / ceil, ceil
      printf "\n"
    } }'
  grep 'e2e latency' "$WORK/sink.log" | sort -t' ' -k2 -n | tail -3
}

run "pinned to one core (taskset -c 0), traces" "taskset -c 0" "--signal traces"
run "unpinned, traces" "" "--signal traces"

#!/usr/bin/env bash
# End-to-end benchmark: weft (pipelines/bench.yaml: OTLP gRPC in -> batch -> OTLP gRPC out)
# between weft-loadgen and a counting sink, for a fixed duration. Reports spans/s, CPU
# seconds per million spans (weft process only, from /proc), peak RSS and the end-to-end
# latency the sink observes. Runs weft pinned to one core (taskset) and unpinned.
#
# `logs` does the same for log records through the Loki encoder (pipelines/bench-loki.yaml,
# protobuf + snappy, into `weft-loadgen sink --mode loki`) and the Elasticsearch encoder
# (pipelines/bench-elasticsearch.yaml, otel mapping + gzip, into `--mode elasticsearch`),
# and prints weft's records per CPU second as a ratio of the encoder alone (its criterion
# bench on the same core, in the same run; bench binaries from `cargo bench --no-run`).
#
#   benches/e2e.sh [duration_seconds] [rate] [traces|logs|all]   (rate 0 = as fast as accepted)
#
# Environment: WEFT_BENCH_CONFIG (the traces pipeline, default pipelines/bench.yaml; e.g.
# pipelines/bench-attributes.yaml), WEFT_BENCH_BIN (directory holding prebuilt weft and
# weft-loadgen: skips the build, e.g. to measure another commit's binaries),
# WEFT_BENCH_CEILING (the decode+encode ceiling in spans/s; when unset the script runs the
# codec bench's decode_encode_proto_100_spans on the same core after the pinned run, from
# `cargo bench --bench codec --no-run`, and prints weft's spans per CPU second against it);
# WEFT_BENCH_GEN_FLAGS (more weft-loadgen send flags, e.g. --value-cardinality 100);
# WEFT_BENCH_LOGS_CONFIG (the logs pipeline instead of pipelines/bench-<exporter>.yaml, with
# WEFT_BENCH_LOGS_EXPORTERS naming one exporter); WEFT_BENCH_PINNED_ONLY=1 (logs: the pinned
# run only, for alternated A/B runs); WEFT_BENCH_SINK_FRAME (the sink's HTTP/2 max frame size, default 16384);
# WEFT_BENCH_LOGS_EXPORTERS (which logs runs, default "loki elasticsearch"; with
# WEFT_BENCH_ES_COMPRESSION=none|gzip and WEFT_BENCH_ES_MAPPING read by the pipeline);
# ports WEFT_BENCH_SINK_PORT, WEFT_BENCH_IN_PORT, WEFT_BENCH_HEALTH_PORT (to run next to
# another benchmark).
#
# Needs a release build (built here if missing: ~11 min cold on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-20}
RATE=${2:-0}
WHAT=${3:-traces}
# Ports (override to run next to another benchmark on the same machine).
SINK_PORT=${WEFT_BENCH_SINK_PORT:-14317}
IN_PORT=${WEFT_BENCH_IN_PORT:-14318}
export WEFT_BENCH_HEALTH=127.0.0.1:${WEFT_BENCH_HEALTH_PORT:-13133}
TARGET=${CARGO_TARGET_DIR:-target}
CONFIG=${WEFT_BENCH_CONFIG:-pipelines/bench.yaml}
CEILING=${WEFT_BENCH_CEILING:-0}
# The HTTP/2 max frame size the OTLP sink advertises (16384: HTTP/2's default, as Go gRPC
# servers do; a larger value models a weft gateway as the next hop).
SINK_FRAME=${WEFT_BENCH_SINK_FRAME:-16384}
if [ -n "${WEFT_BENCH_BIN:-}" ]; then
  BIN=$WEFT_BENCH_BIN     # a directory holding prebuilt weft and weft-loadgen
else
  cargo build --release --bins >&2
  BIN=$TARGET/release
fi
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

# run <label> <pin> <generator flags> [pipeline] [sink mode] [unit]
run() {
  local label=$1 pin=$2 pipeline=${4:-$CONFIG} mode=${5:-otlp} unit=${6:-spans}
  # Pinned runs give weft core 0 to itself: the generator and the sink share core 1.
  local peer=""; [ -n "$pin" ] && peer="taskset -c 1"
  $peer "$BIN/weft-loadgen" sink --mode "$mode" --listen 127.0.0.1:$SINK_PORT --duration $((DUR + 5))s --max-frame-size "$SINK_FRAME" >"$WORK/sink.log" 2>&1 &
  local sink=$!
  WEFT_BENCH_IN=127.0.0.1:$IN_PORT WEFT_BENCH_SINK=127.0.0.1:$SINK_PORT WEFT_BENCH_SINK_URL=http://127.0.0.1:$SINK_PORT \
    $pin "$BIN/weft" --config "$pipeline" >"$WORK/weft.log" 2>&1 &
  local weft=$!
  sleep 1
  kill -0 $weft 2>/dev/null || { echo "weft did not start:" >&2; cat "$WORK/weft.log" >&2; exit 1; }
  local t0; t0=$(awk '{print $14+$15}' /proc/$weft/stat)
  local s0; s0=$(awk '{print $15}' /proc/$weft/stat)
  local gen
  gen=$($peer "$BIN/weft-loadgen" send --endpoint 127.0.0.1:$IN_PORT --duration ${DUR}s --rate "$RATE" \
        --items-per-request 100 --attributes 10 --value-size 24 --concurrency 8 --max-refused 1 $3 ${WEFT_BENCH_GEN_FLAGS:-})
  sleep 2
  local t1; t1=$(awk '{print $14+$15}' /proc/$weft/stat)
  local s1; s1=$(awk '{print $15}' /proc/$weft/stat)
  local hz; hz=$(getconf CLK_TCK)
  local rss; rss=$(awk '/VmHWM/ {print $2}' /proc/$weft/status)
  kill -TERM $weft; wait $weft || true
  kill $sink 2>/dev/null || true; wait $sink 2>/dev/null || true
  local items; items=$(grep -o 'summary: [0-9]*' "$WORK/sink.log" | tail -1 | awk '{print $2}')
  echo "== $label ($pipeline)"
  echo "$gen"
  awk -v i="${items:-0}" -v d="$DUR" -v t0="$t0" -v t1="$t1" -v hz="$hz" -v rss="$rss" -v u="$unit" -v ceil="$CEILING" -v sys="$(( s1 - s0 ))" 'BEGIN {
    cpu = (t1 - t0) / hz
    printf "weft: %.0f %s/s delivered, %.2f CPU s per million %s (%.1f CPU s, busy %.0f%% of one core; %.0f %s per CPU second), peak RSS %.1f MiB\n", i / d, u, cpu * 1000000 / (i + 1), u, cpu, 100 * cpu / d, i / (cpu + 0.000001), u, rss / 1024
    if (cpu > 0) printf "weft: of which in the kernel %.2f CPU s per million %s (%.0f%%)\n", sys / hz * 1000000 / (i + 1), u, 100 * sys / hz / cpu
    if (cpu > 0 && ceil > 0 && u == "spans")
      printf "weft: %.0f spans per CPU-second = %.2f x the decode+encode ceiling (%.0f/s)\n", i / cpu, i / cpu / ceil, ceil
    }'
  PER_CPU=$(awk -v i="${items:-0}" -v t0="$t0" -v t1="$t1" -v hz="$hz" 'BEGIN { printf "%.0f", i / ((t1 - t0) / hz + 0.000001) }')
  # Latency over every request of the run (the generator's timestamp to the sink).
  grep 'sink summary' "$WORK/sink.log" || echo "(no sink summary)"
}

# ceiling <bench target> <bench name>: the encoder alone on the same core (criterion --quick,
# from `cargo bench --no-run`), and weft's last records per CPU second as a ratio of it.
ceiling() {
  local b; b=$(ls -t "$TARGET"/release/deps/"$1"-* 2>/dev/null | grep -v '\.d$' | head -1 || true)
  if [ -z "$b" ]; then echo "(no $1 bench binary: cargo bench --bench $1 --no-run)"; return; fi
  local r; r=$(taskset -c 0 "$b" --bench --quick "$2" 2>/dev/null | grep 'thrpt:' | head -1 |
    awk '{v = $4; u = $5; if (u ~ /^M/) v *= 1000000; else if (u ~ /^K/) v *= 1000; printf "%.0f", v}' || true)
  awk -v c="${r:-0}" -v w="${PER_CPU:-0}" -v n="$2" 'BEGIN {
    printf "ceiling: %s alone %.0f items/s on one core; weft end to end %.0f items per CPU second = %.2fx of it\n", n, c, w, (c > 0 ? w / c : 0) }'
}

if [ "$WHAT" = traces ] || [ "$WHAT" = all ]; then
  run "pinned to one core (taskset -c 0), traces" "taskset -c 0" "--signal traces"
  # The decode+encode ceiling, measured now on the same core (skipped when given).
  [ "$CEILING" = 0 ] && ceiling codec decode_encode_proto_100_spans
  run "unpinned, traces" "" "--signal traces"
fi
if [ "$WHAT" = logs ] || [ "$WHAT" = all ]; then
  for exp in ${WEFT_BENCH_LOGS_EXPORTERS:-loki elasticsearch}; do
    lcfg=${WEFT_BENCH_LOGS_CONFIG:-pipelines/bench-$exp.yaml}
    run "pinned to one core (taskset -c 0), logs -> $exp" "taskset -c 0" "--signal logs" \
      "$lcfg" "$exp" records
    [ -n "${WEFT_BENCH_PINNED_ONLY:-}" ] && continue
    # The encoder alone on the raw batches the pipeline hands it (the exporters' path).
    if [ $exp = loki ]; then ceiling loki raw_direct_protobuf_snappy_1000_records
    else ceiling elasticsearch raw_bulk_body_otel_gzip_1000_logs; fi
    run "unpinned, logs -> $exp" "" "--signal logs" "$lcfg" "$exp" records
  done
fi

#!/usr/bin/env bash
# Memory of what the awss3 exporter gathers: weft (OTLP gRPC in -> batch -> awss3 with
# `flush_interval: 1h`, so nothing is uploaded) takes 8 s of logs at 50,000 records/s
# (~194 MB of OTLP protobuf, all held by the gathering in the sending queue), then prints its
# resident memory and the queue's level. The S3 endpoint is a closed port: gathering does not
# depend on the server (readiness reports the failed bucket check).
#
#   benches/s3_gather_memory.sh            (WEFT_BENCH_BIN: a directory with weft and
#                                           weft-loadgen; default target/release)
set -euo pipefail
BIN=${WEFT_BENCH_BIN:-$(dirname "$0")/../target/release}
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"; [ -n "${W:-}" ] && kill -9 "$W" 2>/dev/null || true' EXIT
cat > "$DIR/weft.yaml" <<'YAML'
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:25317
processors:
  batch:
    send_batch_size: 8192
    timeout: 200ms
exporters:
  awss3:
    s3uploader:
      s3_bucket: archive
      endpoint: http://127.0.0.1:25999
      s3_force_path_style: true
    marshaler: otlp_proto
    flush_interval: 1h
    max_object_size_mib: 512
    sending_queue:
      sizer: bytes
      queue_size: 2147483648
extensions:
  health_check:
    endpoint: 127.0.0.1:25133
service:
  extensions: [health_check]
  pipelines:
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [awss3]
YAML
AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=y "$BIN/weft" --config "$DIR/weft.yaml" > "$DIR/weft.log" 2>&1 &
W=$!
for _ in $(seq 100); do curl -sf 127.0.0.1:25133/metrics > /dev/null && break; sleep 0.1; done
"$BIN/weft-loadgen" send --endpoint 127.0.0.1:25317 --signal logs --rate 50000 --duration 8s \
  --concurrency 4 --max-refused 1 | sed -n 1p
sleep 2
echo "weft: RSS $(awk '/VmRSS/ {printf "%.0f", $2/1024}' /proc/$W/status) MiB, peak $(awk '/VmHWM/ {printf "%.0f", $2/1024}' /proc/$W/status) MiB"
curl -s 127.0.0.1:25133/metrics | grep -E '^weft_exporter_queue_size\{component="awss3"\}' \
  | awk '{printf "gathered in the queue: %.0f MB of OTLP protobuf\n", $2/1e6}'

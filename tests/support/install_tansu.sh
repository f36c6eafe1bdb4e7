#!/usr/bin/env bash
# Installs the tansu Kafka-compatible broker (a crate, built from crates.io) that the Kafka
# tests run against, once, into a cache directory, and prints the binary's path.
#   tests/support/install_tansu.sh            # installs if missing, prints the path
# Cache: $WEFT_TOOLS (default ~/.cache/weft-tools). ~11 minutes on 2 cores the first time.
# `--features libsql,dynostore` gives the sqlite:// and memory:// storage engines.
set -euo pipefail

version=0.6.0
tools=${WEFT_TOOLS:-$HOME/.cache/weft-tools}
root=$tools/tansu-$version
bin=$root/bin/tansu

mkdir -p "$tools"
# One installer at a time (test binaries and .ci/run may ask concurrently).
exec 9>"$tools/tansu.lock"
flock 9
if ! [ -x "$bin" ]; then
    echo "install_tansu: building tansu $version into $root (one time, ~11 min)" >&2
    cargo install "tansu@$version" --locked --features libsql,dynostore \
        --root "$root" --target-dir "$tools/tansu-build" >&2
    rm -rf "$tools/tansu-build"
fi
echo "$bin"

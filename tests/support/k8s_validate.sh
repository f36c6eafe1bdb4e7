#!/usr/bin/env bash
# Validates deploy/kubernetes and every mode of the Helm chart against the Kubernetes API
# schemas, offline (see k8s_validate.py). Called by tests/deploy.rs; runnable by hand:
#   tests/support/k8s_validate.sh [OUT_DIR]
# Rendered chart output is written under OUT_DIR (default: a temporary directory).
#
# The tools live in a virtualenv under the cargo target directory, created on first use
# from the pinned k8s-requirements.txt (needs PyPI once) and reused while the pins are
# unchanged.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
venv=$target/py-venv
requirements=$here/k8s-requirements.txt
python=${PYTHON:-python3}

mkdir -p "$target"
# One installer at a time (parallel test runs share the target directory).
exec 9>"$target/py-venv.lock"
flock 9
if ! cmp -s "$requirements" "$venv/.requirements" || ! [ -x "$venv/bin/python" ]; then
    echo "k8s_validate: installing pinned tools into $venv" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --disable-pip-version-check --no-input --quiet \
        --requirement "$requirements"
    cp "$requirements" "$venv/.requirements"
fi
flock -u 9

out=${1:-}
if [ -z "$out" ]; then
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
fi
"$venv/bin/python" "$here/k8s_validate.py" "$repo" "$out"

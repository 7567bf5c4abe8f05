#!/usr/bin/env bash
# Build the Python rolling policy into a WebAssembly component.
# Usage: examples/python-policy/build.sh   (OUT=path.wasm to change the output)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
OUT="${OUT:-$repo/examples/python-policy/target/python-policy.wasm}"

if ! command -v componentize-py >/dev/null 2>&1; then
    echo "componentize-py not found: pip install componentize-py==0.25.0" >&2
    exit 1
fi

mkdir -p "$(dirname "$OUT")"
componentize-py -d "$repo/wit" -w policy componentize app -p "$here" -o "$OUT"

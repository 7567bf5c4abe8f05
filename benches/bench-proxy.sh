#!/usr/bin/env bash
# `rollout bench proxy`: the front door against nginx under wrk, and failed
# requests during a rolling update. Installs nginx and wrk from Debian's
# packages if they are missing, builds the release binaries, runs the bench.
# Arguments go to the bench (e.g. --output json --seconds 10).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null || ! { command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; }; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq nginx-light wrk
fi

cargo build --release
exec target/release/rollout bench proxy "$@"

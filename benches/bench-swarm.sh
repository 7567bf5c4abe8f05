#!/usr/bin/env bash
# `rollout bench swarm`: rollout's `swarm` backend against Docker Swarm's own
# rolling update, same machine, same run. Installs Docker (Debian's
# `docker.io`) if it is missing and starts dockerd if none answers (both as
# root), initialises a single-node swarm if this engine is not in one,
# builds the release binary, a static examples/demo-app and the three bench
# images `rollout-bench-demo:v1|v2|bad` (FROM scratch; the service specs set
# the health check `/demo-app --check`), then runs the bench.
# Arguments go to the bench (e.g. --output json --replicas 10).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

echo "--- docker" >&2
if ! command -v docker >/dev/null 2>&1 || ! command -v dockerd >/dev/null 2>&1; then
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
  dockerd_log=/tmp/rollout-bench-dockerd.log
  echo "no Docker daemon answers: starting dockerd (log: $dockerd_log)" >&2
  as_root sh -c "nohup dockerd >'$dockerd_log' 2>&1 &"
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  if ! docker info >/dev/null 2>&1; then
    echo "error: dockerd did not answer \`docker info\` within 60 s; its log ($dockerd_log):" >&2
    tail -n 30 "$dockerd_log" >&2 || true
    exit 1
  fi
fi
swarm=$(docker info --format '{{.Swarm.LocalNodeState}}')
if [ "$swarm" = inactive ]; then
  echo "initialising a single-node swarm" >&2
  docker swarm init --advertise-addr 127.0.0.1 >/dev/null
elif [ "$swarm" != active ]; then
  echo "error: this Docker engine's swarm state is '$swarm'; the bench needs an active swarm (\`docker swarm init --advertise-addr 127.0.0.1\`)" >&2
  exit 1
fi

echo "--- build" >&2
cargo build --release
# Static, so it runs FROM scratch; --target keeps the static flag off build
# scripts and proc macros.
triple="$(uname -m)-unknown-linux-gnu"
static_target=target/bench-static
CARGO_TARGET_DIR="$static_target" RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release -p demo-app --target "$triple"

context=$(mktemp -d)
cp "$static_target/$triple/release/demo-app" "$context/demo-app"
# v1 and v2 are healthy; bad passes its first health check and fails every
# check from 1.5 s after it starts (the bench sets UNHEALTHY_AFTER_MS to 1.5
# health intervals on both sides, overriding this default).
for tag in v1 v2 bad; do
  more=""
  [ "$tag" = bad ] && more="ENV UNHEALTHY_AFTER_MS=1500"
  printf 'FROM scratch\nCOPY demo-app /demo-app\nENV VERSION=%s\n%s\nENTRYPOINT ["/demo-app"]\n' \
    "$tag" "$more" >"$context/$tag.Dockerfile"
  docker build -q -t "rollout-bench-demo:$tag" -f "$context/$tag.Dockerfile" "$context" >/dev/null
  echo "built rollout-bench-demo:$tag" >&2
done

rm -rf "$context"

echo "--- bench" >&2
exec target/release/rollout bench swarm "$@"

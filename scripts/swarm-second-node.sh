#!/usr/bin/env bash
# Give this machine's Swarm a second node: a second Docker engine on the
# same machine (its own data root, exec root, socket and bridge, no
# iptables rules), joined as a worker. Tasks Swarm puts there run in
# the same host network, so an agent reaches them on loopback while they
# take every path of a task on another node (stopped by removing their
# service, logs read through the manager). The end-to-end tests then run
# rolling, canary and blue-green across two nodes.
#
# Needs root and a swarm on this machine's engine (`docker swarm init
# --advertise-addr 127.0.0.1`). Idempotent. Prints the line to export:
#   export ROLLOUT_E2E_SWARM_WORKERS=unix:///var/run/rollout-node2.sock
# which tells the tests to copy their images to that engine and to require
# a task on each node.
set -euo pipefail

sock=/var/run/rollout-node2.sock
node=(docker -H "unix://$sock")
log=/tmp/rollout-node2-dockerd.log
# Its own default bridge: with `--bridge=none` a dockerd deletes the host's
# `docker0`, which the first engine's bridge-network containers need.
bridge=rollout-node2
bridge_addr=172.31.254.1/24

if [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
  echo "error: this machine's Docker engine is in no swarm: run \`docker swarm init --advertise-addr 127.0.0.1\` first" >&2
  exit 1
fi

if ! "${node[@]}" info >/dev/null 2>&1; then
  mkdir -p /var/lib/rollout-node2 /var/run/rollout-node2
  if ! ip link show "$bridge" >/dev/null 2>&1; then
    ip link add "$bridge" type bridge
    ip addr add "$bridge_addr" dev "$bridge"
    ip link set "$bridge" up
  fi
  echo "starting a second dockerd on $sock (log: $log)" >&2
  nohup dockerd \
    --data-root /var/lib/rollout-node2 \
    --exec-root /var/run/rollout-node2 \
    --pidfile /var/run/rollout-node2.pid \
    -H "unix://$sock" \
    --bridge="$bridge" --iptables=false --ip6tables=false --ip-masq=false \
    >"$log" 2>&1 &
  for _ in $(seq 60); do
    "${node[@]}" info >/dev/null 2>&1 && break
    sleep 1
  done
  if ! "${node[@]}" info >/dev/null 2>&1; then
    echo "error: the second dockerd did not answer within 60 s; its log ($log):" >&2
    tail -n 30 "$log" >&2 || true
    exit 1
  fi
fi

if [ "$("${node[@]}" info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
  token=$(docker swarm join-token -q worker)
  # Its address is loopback too: the agent reaches a task on it at
  # 127.0.0.1 (the node's Status.Addr), where it listens in the shared
  # host network. 2378: the manager holds 2377.
  "${node[@]}" swarm join --token "$token" \
    --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:2378 --data-path-addr 127.0.0.1 \
    127.0.0.1:2377 >&2
fi
docker node ls >&2
echo "export ROLLOUT_E2E_SWARM_WORKERS=unix://$sock"

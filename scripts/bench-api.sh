#!/usr/bin/env bash
# Runs `notesaga bench api` against a throw-away single node (`notesaga dev`: broker,
# registry and every role, the silent narration engine and the built-in embedder, so the
# sagas the posts start cost little) on a temp data directory and free loopback ports,
# then stops the node (SIGTERM). The bench mints its token with the node's secret
# (--data-dir). The per-user rate limit is switched off (NOTESAGA_RATE_LIMIT=0): the
# bench posts as one user, far above the default limit.
# Usage: scripts/bench-api.sh BIN_DIR [bench args…]   (e.g. --concurrency 32 --duration 20)
set -euo pipefail
bin="${1:?usage: $0 BIN_DIR [bench args]}"; shift
bin="$(cd "$bin" && pwd)"

# A random loopback port nobody listens on now.
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
  done
}
kafka_port="$(free_port)"; registry_port="$(free_port)"; http_port="$(free_port)"
while [ "$registry_port" = "$kafka_port" ]; do registry_port="$(free_port)"; done
while [ "$http_port" = "$kafka_port" ] || [ "$http_port" = "$registry_port" ]; do http_port="$(free_port)"; done

data="$(mktemp -d)"
node=""
stop() {
  if [ -n "$node" ] && kill -0 "$node" 2>/dev/null; then
    kill -TERM "$node" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$node" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$node" 2>/dev/null || true
    wait "$node" 2>/dev/null || true
  fi
  rm -rf "$data"
}
trap stop EXIT

echo "single node: narration silent, embedding builtin, no rate limit, kafka 127.0.0.1:$kafka_port, registry 127.0.0.1:$registry_port, api 127.0.0.1:$http_port" >&2
NOTESAGA_LOG="${NOTESAGA_LOG:-warn}" NOTESAGA_RATE_LIMIT=0 \
NOTESAGA_NARRATION_PROVIDER=silent NOTESAGA_EMBEDDING_PROVIDER=builtin \
  "$bin/notesaga" dev --data-dir "$data" --broker-bin "$bin/notesaga-broker" \
  --kafka-addr "127.0.0.1:$kafka_port" --registry-addr "127.0.0.1:$registry_port" \
  --http-addr "127.0.0.1:$http_port" 2>"$data/node.log" &
node=$!

for _ in $(seq 1 1200); do
  curl -sf "http://127.0.0.1:$http_port/healthz" >/dev/null && break
  kill -0 "$node" 2>/dev/null || { echo "the node exited at start-up:" >&2; tail -20 "$data/node.log" >&2; exit 1; }
  sleep 0.1
done
curl -sf "http://127.0.0.1:$http_port/healthz" >/dev/null \
  || { echo "the node does not answer /healthz after 120 s" >&2; tail -20 "$data/node.log" >&2; exit 1; }

status=0
NOTESAGA_LOG="${NOTESAGA_LOG:-warn}" "$bin/notesaga" bench api \
  --api "http://127.0.0.1:$http_port" --data-dir "$data" "$@" || status=$?
if [ "$status" != 0 ]; then
  echo "bench failed ($status); the node's last log lines:" >&2
  grep -m3 -B2 -A8 -E "panicked|ERROR" "$data/node.log" >&2 || true; tail -20 "$data/node.log" >&2
fi
exit "$status"

#!/usr/bin/env bash
# Runs `notesaga bench replay` against a fresh broker and registry (no roles: the bench
# produces the projection topics' records itself and runs the projector) on free loopback
# ports, replaying into SQLite and into a throw-away database on the PostgreSQL server at
# NOTESAGA_BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432, trust auth),
# then stops them and removes the broker's data.
# Usage: scripts/bench-replay.sh BIN_DIR [bench args…]   (e.g. --events 1000000)
set -euo pipefail
bin="${1:?usage: $0 BIN_DIR [bench args]}"; shift
bin="$(cd "$bin" && pwd)"
postgres="${NOTESAGA_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}"

# free_port (this script starts no `notesaga dev`, only a broker and a registry).
. "$(dirname "${BASH_SOURCE[0]}")/lib/node.sh"
kafka_port="$(free_port)"; registry_port="$(free_port)"
while [ "$registry_port" = "$kafka_port" ]; do registry_port="$(free_port)"; done

data="$(mktemp -d)"
pids=()
# The registry first: it reads the broker to its last moment and would log the broker's
# going away as errors.
stop() {
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[$i]}" 2>/dev/null || true
    wait "${pids[$i]}" 2>/dev/null || true
  done
  rm -rf "$data"
}
trap stop EXIT
"$bin/notesaga-broker" --data-dir "$data/broker" --kafka-addr "127.0.0.1:$kafka_port" 2>"$data/broker.log" &
pids+=($!)
NOTESAGA_LOG=warn "$bin/notesaga" registry --kafka-addr "127.0.0.1:$kafka_port" \
  --registry-addr "127.0.0.1:$registry_port" &
pids+=($!)
for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$registry_port/subjects" >/dev/null && break; sleep 0.1; done
echo "broker 127.0.0.1:$kafka_port, registry 127.0.0.1:$registry_port, PostgreSQL $postgres" >&2
NOTESAGA_LOG="${NOTESAGA_LOG:-warn}" "$bin/notesaga" bench replay \
  --kafka-addr "127.0.0.1:$kafka_port" --registry-url "http://127.0.0.1:$registry_port" \
  --database-url sqlite --database-url "$postgres" "$@"

#!/usr/bin/env bash
# A/B of builds on the closed saga loop: for ROUNDS rounds, each BIN_DIR in turn starts a
# throw-away `notesaga dev` (silent narration, hash embedder), runs `notesaga bench saga`
# at CONCURRENCY (default 32) clients for SECONDS, and prints sagas/s with p50/p99, the
# node's CPU time per completed saga (its processes, from /proc/PID/stat, warm-up
# included) and the broker's fetch requests per saga. This machine's speed drifts
# (docs/field-notes.md): only builds alternated in one run compare.
# Usage: scripts/ab-saga.sh ROUNDS SECONDS BIN_DIR [BIN_DIR…]
#   CONCURRENCY=N, REST=seconds between runs (default 5), NODE_ENV="VAR=value …" for
#   every node.
set -euo pipefail
rounds="${1:?usage: $0 ROUNDS SECONDS BIN_DIR [BIN_DIR…]}"
seconds="${2:?usage: $0 ROUNDS SECONDS BIN_DIR [BIN_DIR…]}"
shift 2
[ "$#" -ge 1 ] || { echo "usage: $0 ROUNDS SECONDS BIN_DIR [BIN_DIR…]" >&2; exit 1; }
. "$(dirname "${BASH_SOURCE[0]}")/lib/node.sh"

fetches() {
  curl -s "http://127.0.0.1:$1/metrics" \
    | awk '/^notesaga_broker_fetch_requests_total/ { s += $2 } END { print s + 0 }'
}

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for _ in $(seq 1 "$rounds"); do
  for bin in "$@"; do
    bin="$(cd "$bin" && pwd)"
    node_prepare
    metrics_port="$(free_port)"
    # shellcheck disable=SC2086 # NODE_ENV is a list of assignments
    node_start "$bin" /healthz NOTESAGA_RATE_LIMIT=0 \
      NOTESAGA_BROKER_METRICS_ADDR="127.0.0.1:$metrics_port" \
      NOTESAGA_NARRATION_PROVIDER=silent NOTESAGA_EMBEDDING_PROVIDER=builtin ${NODE_ENV:-} || exit 1
    ticks="$(cpu_ticks "$node")"
    fetched="$(fetches "$metrics_port")"
    saga_loop "$bin" "${CONCURRENCY:-32}" "$seconds" >"$data/loop.txt" 2>&1
    ticks=$(( $(cpu_ticks "$node") - ticks ))
    fetched=$(( $(fetches "$metrics_port") - fetched ))
    completed="$(grep -oE '\(([0-9]+) completed' "$data/loop.txt" | tr -d '(' | awk '{ s += $1 } END { print s + 0 }')"
    line="$(grep 'clients:' "$data/loop.txt" | tail -1 | sed 's/; of which.*//')"
    awk -v who="$bin" -v line="$line" -v t="$ticks" -v hz="$(getconf CLK_TCK)" -v f="$fetched" -v n="$completed" \
      -v loadavg="$(cut -d' ' -f1 /proc/loadavg)" \
      'BEGIN { if (n == 0) n = 1; printf "%s |%s | CPU %.2f ms/saga | %.1f fetches/saga | load %s\n", who, line, t * 1000 / hz / n, f / n, loadavg }'
    node_stop
    sleep "${REST:-5}"
  done
done

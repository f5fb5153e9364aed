#!/usr/bin/env bash
# notesaga against Restate on this machine, in one run: the note pipeline (embed →
# narrate → publish, compensated in reverse) at each closed-loop concurrency, silent
# narration and the built-in hash embedder on both sides, then one notesaga line with the
# default embedding model. Each side runs alone (the other is stopped), one after the
# other, so they share the machine equally. After each side's levels: the CPU time its
# processes used per completed saga (the bench client not counted), a figure this
# shared machine's noise moves less than sagas/s.
# Usage: scripts/bench-compare.sh BIN_DIR RESTATE_DIR [LEVELS] [SECONDS]
#   RESTATE_DIR: where `make restate-peer` installed bench/restate (node_modules inside).
set -euo pipefail
bin="${1:?usage: $0 BIN_DIR RESTATE_DIR [LEVELS] [SECONDS]}"
restate_dir="${2:?usage: $0 BIN_DIR RESTATE_DIR [LEVELS] [SECONDS]}"
levels="${3:-1,8,32,128}"
seconds="${4:-20}"
bin="$(cd "$bin" && pwd)"
restate_dir="$(cd "$restate_dir" && pwd)"

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"

. "$(dirname "${BASH_SOURCE[0]}")/lib/node.sh"

# --- notesaga -------------------------------------------------------------------------
node_prepare
echo
echo "== notesaga dev: broker --storage native --fsync always (group commit, fdatasync before every ack);"
echo "   projections and embedding store SQLite (WAL); narration silent, embedding builtin (hash)"
node_start "$bin" /healthz NOTESAGA_RATE_LIMIT=0 \
  NOTESAGA_NARRATION_PROVIDER=silent NOTESAGA_EMBEDDING_PROVIDER=builtin || exit 1
ticks="$(cpu_ticks "$node")"
saga_loop "$bin" "$levels" "$seconds" | tee "$data/loop.txt"
cpu_per_saga "$ticks" "$(cpu_ticks "$node")" "$data/loop.txt" "notesaga dev and its broker"
node_stop

if [ -n "${DEFAULT_EMBEDDER:-}" ]; then
  node_prepare
  echo
  echo "== notesaga dev, the default embedding model ($DEFAULT_EMBEDDER), silent narration, 32 clients"
  node_start "$bin" /healthz NOTESAGA_RATE_LIMIT=0 NOTESAGA_NARRATION_PROVIDER=silent \
    NOTESAGA_EMBEDDING_PROVIDER="$DEFAULT_EMBEDDER" || exit 1
  saga_loop "$bin" 32 "$seconds"
  node_stop
fi

# --- Restate --------------------------------------------------------------------------
rs_data="$(mktemp -d)"
ingress="$(free_port)"; admin="$(free_port)"; fabric="$(free_port)"; service="$(free_port)"
rs_server=""; rs_service=""
rs_stop() {
  for pid in $rs_service $rs_server; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in $rs_service $rs_server; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$rs_data"
}
trap 'rs_stop; node_cleanup' EXIT
wal_fsync="$("$restate_dir/node_modules/.bin/restate-server" --dump-config 2>/dev/null \
  | sed -n '/^\[bifrost.local\]/,/^\[/p' | grep -E '^rocksdb-disable-wal(-fsync)? ' | tr '\n' ' ')"
echo
echo "== Restate $("$restate_dir/node_modules/.bin/restate-server" --version | cut -d' ' -f2) (its defaults; bifrost.local: $wal_fsync),"
echo "   TypeScript SDK $(node -p "require('$restate_dir/node_modules/@restatedev/restate-sdk/package.json').version") on Node.js $(node --version): bench/restate/pipeline.mjs"
RESTATE_INGRESS__BIND_ADDRESS="127.0.0.1:$ingress" RESTATE_ADMIN__BIND_ADDRESS="127.0.0.1:$admin" \
  RESTATE_BIND_ADDRESS="127.0.0.1:$fabric" RESTATE_LISTEN_MODE=tcp \
  "$restate_dir/node_modules/.bin/restate-server" --base-dir "$rs_data" --no-logo \
  >"$rs_data/server.log" 2>&1 &
rs_server=$!
(cd "$restate_dir" && PORT="$service" RESTATE_LOGGING=WARN exec node pipeline.mjs) >"$rs_data/service.log" 2>&1 &
rs_service=$!
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$admin/health" >/dev/null && break
  sleep 0.1
done
curl -sf -X POST "http://127.0.0.1:$admin/deployments" -H 'content-type: application/json' \
  -d "{\"uri\":\"http://127.0.0.1:$service\"}" >/dev/null \
  || { echo "cannot register the Restate service:" >&2; tail -20 "$rs_data/server.log" "$rs_data/service.log" >&2; exit 1; }
ticks="$(cpu_ticks "$rs_server" "$rs_service")"
"$bin/notesaga" bench restate --url "http://127.0.0.1:$ingress" \
  --concurrency "$levels" --seconds "$seconds" --body-size 100 | tee "$rs_data/loop.txt"
cpu_per_saga "$ticks" "$(cpu_ticks "$rs_server" "$rs_service")" "$rs_data/loop.txt" \
  "restate-server and the Node.js service"

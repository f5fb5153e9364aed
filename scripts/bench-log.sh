#!/usr/bin/env bash
# Runs `notesaga bench log` against a fresh single node (broker + registry) on free
# loopback ports, then stops it. Usage: scripts/bench-log.sh BIN_DIR [bench args…]
set -euo pipefail
bin="${1:?usage: $0 BIN_DIR [bench args]}"; shift
data="$(mktemp -d)"
trap 'kill "$dev" 2>/dev/null; wait "$dev" 2>/dev/null; rm -rf "$data"' EXIT
NOTESAGA_LOG=warn "$bin/notesaga" dev --data-dir "$data" --http-addr 127.0.0.1:18480 \
  --kafka-addr 127.0.0.1:19492 --registry-addr 127.0.0.1:18481 &
dev=$!
for _ in $(seq 1 600); do curl -sf http://127.0.0.1:18480/healthz >/dev/null && break; sleep 0.1; done
NOTESAGA_LOG=warn "$bin/notesaga" bench log --kafka-addr 127.0.0.1:19492 \
  --registry-url http://127.0.0.1:18481 "$@"

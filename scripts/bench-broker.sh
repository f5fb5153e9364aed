#!/usr/bin/env bash
# Runs `notesaga bench TARGET` against a fresh broker and registry (no roles, so nothing
# else loads the broker) on free loopback ports, then stops them.
# Usage: scripts/bench-broker.sh BIN_DIR TARGET [bench args…]   (TARGET: log, notes)
set -euo pipefail
bin="${1:?usage: $0 BIN_DIR TARGET [bench args]}"; shift
target="${1:?usage: $0 BIN_DIR TARGET [bench args]}"; shift
data="$(mktemp -d)"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$data"' EXIT
"$bin/notesaga-broker" --data-dir "$data/broker" --kafka-addr 127.0.0.1:19492 2>"$data/broker.log" &
pids+=($!)
NOTESAGA_LOG=warn "$bin/notesaga" registry --kafka-addr 127.0.0.1:19492 --registry-addr 127.0.0.1:18481 &
pids+=($!)
for _ in $(seq 1 600); do curl -sf http://127.0.0.1:18481/subjects >/dev/null && break; sleep 0.1; done
NOTESAGA_LOG=warn "$bin/notesaga" bench "$target" --kafka-addr 127.0.0.1:19492 \
  --registry-url http://127.0.0.1:18481 "$@"

#!/usr/bin/env bash
# Runs `notesaga bench log` against a fresh broker and registry (no roles, so nothing
# else loads the broker) on free loopback ports, then stops them.
# Usage: scripts/bench-log.sh BIN_DIR [bench args…]
set -euo pipefail
bin="${1:?usage: $0 BIN_DIR [bench args]}"; shift
data="$(mktemp -d)"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$data"' EXIT
"$bin/notesaga-broker" --data-dir "$data/broker" --kafka-addr 127.0.0.1:19492 2>"$data/broker.log" &
pids+=($!)
NOTESAGA_LOG=warn "$bin/notesaga" registry --kafka-addr 127.0.0.1:19492 --registry-addr 127.0.0.1:18481 &
pids+=($!)
for _ in $(seq 1 600); do curl -sf http://127.0.0.1:18481/subjects >/dev/null && break; sleep 0.1; done
NOTESAGA_LOG=warn "$bin/notesaga" bench log --kafka-addr 127.0.0.1:19492 \
  --registry-url http://127.0.0.1:18481 "$@"

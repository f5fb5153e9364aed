#!/usr/bin/env bash
# Runs `notesaga bench log` against a fresh broker and registry (see bench-broker.sh).
# Usage: scripts/bench-log.sh BIN_DIR [bench args…]
set -euo pipefail
bin="${1:?usage: $0 BIN_DIR [bench args]}"; shift
exec "$(dirname "$0")/bench-broker.sh" "$bin" log "$@"

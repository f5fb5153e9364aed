#!/usr/bin/env bash
# Runs `notesaga bench saga` against a throw-away single node (`notesaga dev`: broker,
# registry and every role) on a temp data directory and free loopback ports, with the
# given narration engine and the built-in embedder, then stops the node (SIGTERM).
# Usage: scripts/bench-saga.sh BIN_DIR PROVIDER [bench args…]
#   PROVIDER: espeak (espeak-ng) or silent (the benchmark engine: silence at once, to
#   isolate the orchestration overhead).
set -euo pipefail
bin="${1:?usage: $0 BIN_DIR PROVIDER [bench args]}"
provider="${2:?usage: $0 BIN_DIR PROVIDER [bench args]}"
shift 2
bin="$(cd "$bin" && pwd)"

. "$(dirname "${BASH_SOURCE[0]}")/lib/node.sh"
node_prepare
echo "single node: narration $provider, embedding builtin, kafka 127.0.0.1:$kafka_port, registry 127.0.0.1:$registry_port, api 127.0.0.1:$http_port" >&2
node_start "$bin" /healthz \
  NOTESAGA_NARRATION_PROVIDER="$provider" NOTESAGA_EMBEDDING_PROVIDER=builtin || exit 1

status=0
NOTESAGA_LOG="${NOTESAGA_LOG:-warn}" "$bin/notesaga" bench saga \
  --api "$api" --data-dir "$data" --kafka-addr "127.0.0.1:$kafka_port" \
  --registry-url "http://127.0.0.1:$registry_port" "$@" || status=$?
if [ "$status" != 0 ]; then
  echo "bench failed ($status); the node's last log lines:" >&2
  node_log
fi
exit "$status"

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

. "$(dirname "${BASH_SOURCE[0]}")/lib/node.sh"
node_prepare
echo "single node: narration silent, embedding builtin, no rate limit, kafka 127.0.0.1:$kafka_port, registry 127.0.0.1:$registry_port, api 127.0.0.1:$http_port" >&2
node_start "$bin" /healthz NOTESAGA_RATE_LIMIT=0 \
  NOTESAGA_NARRATION_PROVIDER=silent NOTESAGA_EMBEDDING_PROVIDER=builtin || exit 1

status=0
NOTESAGA_LOG="${NOTESAGA_LOG:-warn}" "$bin/notesaga" bench api \
  --api "$api" --data-dir "$data" "$@" || status=$?
if [ "$status" != 0 ]; then
  echo "bench failed ($status); the node's last log lines:" >&2
  node_log
fi
exit "$status"

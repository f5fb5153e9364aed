#!/usr/bin/env bash
# The operations contracts, checked against a live system (issue 15):
#   1. the Prometheus alert rules load, and `promtool test rules` makes every alert fire
#      and stay quiet (deploy/prometheus/notesaga-alerts.test.yml); the dashboard is JSON;
#   2. a throw-away single node (`notesaga dev`, every role in one process) runs a flow:
#      a note whose narration provider is down (nothing listens at its URL), so it
#      fails and compensates (provider errors, the breaker's state);
#   3. every metric name the dashboard and the rules use is on that node's /metrics;
#   4. its /asyncapi.json validates with @asyncapi/parser and its Avro schema parser
#      (every payload parsed as Avro), and its channels are exactly the topics the
#      broker holds and its flow messages exactly the subjects the registry holds.
# Usage: scripts/check-contracts.sh BIN_DIR (the test build: the node needs no feature,
#   but `make check-contracts` reuses the binaries `make test` built).
#   NOTESAGA_ASYNCAPI_MODULES: node_modules holding the parser (default: the pinned copy
#   `make check-contracts` installs under ~/.cache/notesaga-asyncapi).
set -euo pipefail
bin="${1:?usage: $0 BIN_DIR}"
bin="$(cd "$bin" && pwd)"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
modules="${NOTESAGA_ASYNCAPI_MODULES:-$HOME/.cache/notesaga-asyncapi/node_modules}"
[ -d "$modules/@asyncapi/parser" ] || { echo "no @asyncapi/parser under $modules (make check-contracts installs it)" >&2; exit 1; }

echo "== alert rules and dashboard" >&2
promtool check rules "$root/deploy/prometheus/notesaga-alerts.yml"
(cd "$root/deploy/prometheus" && promtool test rules notesaga-alerts.test.yml)
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["panels"], "no panels"' \
  "$root/deploy/grafana/notesaga.json"

. "$root/scripts/lib/node.sh"
node_prepare
dead_port="$(free_port)"
echo "== single node: api $api, kafka 127.0.0.1:$kafka_port; narration provider down at 127.0.0.1:$dead_port" >&2
node_start "$bin" /readyz \
  NOTESAGA_EMBEDDING_PROVIDER=builtin \
  NOTESAGA_NARRATION_PROVIDER=openai NOTESAGA_NARRATION_URL="http://127.0.0.1:$dead_port" \
  NOTESAGA_NARRATION_ATTEMPTS=2 NOTESAGA_NARRATION_RETRY_BUDGET_SECS=2 \
  NOTESAGA_NARRATION_RETRY_BUDGET_PER_KB_SECS=0 || exit 1
token="$("$bin/notesaga" token --sub contracts --data-dir "$data" | tail -n 1)"
auth=(-H "Authorization: Bearer $token")

note="$(curl -sf "${auth[@]}" -H 'content-type: application/json' -X POST "$api/v1/notes" \
  -d '{"title": "Contracts", "body": "A note whose narration cannot be rendered."}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["note_id"])')"
# Debian's kcat (librdkafka 2.0.2) needs the pre-0.10 protocol with tansu (docs/topics.md);
# it reads metadata that way, but cannot produce (tansu refuses its old produce request).
kcat_old=(-X api.version.request=false -X broker.version.fallback=0.9.0)
for _ in $(seq 1 240); do
  status="$(curl -s "${auth[@]}" "$api/v1/notes/$note" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("status",""))' 2>/dev/null || true)"
  [ "$status" = failed ] && break
  sleep 0.5
done
[ "$status" = failed ] || { echo "the note did not fail (status: $status)" >&2; node_log; exit 1; }

echo "== metric names of the dashboard and the rules on /metrics" >&2
names="$(grep -ohE 'notesaga_[a-z_]+' "$root/deploy/grafana/notesaga.json" "$root/deploy/prometheus/notesaga-alerts.yml" | sort -u)"
# The consumer lag comes from librdkafka's statistics every 5 s: wait for it.
missing=""
for _ in $(seq 1 60); do
  curl -sf "$api/metrics" >"$data/metrics.txt"
  missing=""
  for name in $names; do
    grep -qE "^$name(\{| )" "$data/metrics.txt" || missing="$missing $name"
  done
  [ -z "$missing" ] && break
  sleep 1
done
if [ -n "$missing" ]; then
  echo "metrics used by deploy/ but not exported:$missing" >&2
  exit 1
fi
echo "all $(echo "$names" | wc -l) metric names are exported" >&2

echo "== AsyncAPI: validate, then compare with the broker and the registry" >&2
curl -sf "${auth[@]}" "$api/asyncapi.json" >"$data/asyncapi.json"
kcat "${kcat_old[@]}" -L -J -b "127.0.0.1:$kafka_port" >"$data/topics.json"
curl -sf "http://127.0.0.1:$registry_port/subjects" >"$data/subjects.json"
NOTESAGA_ASYNCAPI_MODULES="$modules" node "$root/scripts/lib/asyncapi-check.mjs" \
  "$data/asyncapi.json" "$data/topics.json" "$data/subjects.json"

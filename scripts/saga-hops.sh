#!/usr/bin/env bash
# Where a saga's time goes, hop by hop, read from the records themselves: starts a
# throw-away `notesaga dev` (silent narration, hash embedder, as bench-compare's notesaga
# side), runs `notesaga bench saga` at CONCURRENCY clients for SECONDS, reads every flow
# topic with kcat, and prints, per pair of consecutive record types of a note (by the
# producer's timestamps), the gap's p50/p90/p99, and the saga's own time from the API's
# CreateNote to NotePublished. Notes that started in the first 2 s are left out (start-up).
# Usage: scripts/saga-hops.sh BIN_DIR [CONCURRENCY] [SECONDS]
set -euo pipefail
bin="${1:?usage: $0 BIN_DIR [CONCURRENCY] [SECONDS]}"
concurrency="${2:-32}"
seconds="${3:-15}"
bin="$(cd "$bin" && pwd)"
command -v kcat >/dev/null || { echo "kcat is missing: make deps" >&2; exit 1; }

. "$(dirname "${BASH_SOURCE[0]}")/lib/node.sh"
node_prepare
node_start "$bin" /healthz NOTESAGA_RATE_LIMIT=0 \
  NOTESAGA_NARRATION_PROVIDER=silent NOTESAGA_EMBEDDING_PROVIDER=builtin || exit 1
saga_loop "$bin" "$concurrency" "$seconds"
records="$data/records.txt"
for topic in notes.commands notes.events embedding.commands embedding.events \
  narration.commands narration.events saga.note-pipeline; do
  kcat -C -b "127.0.0.1:$kafka_port" -t "$topic" -e -q -f '%t %o %T %k %h\n' 2>/dev/null || true
done >"$records"

python3 - "$records" <<'EOF'
import collections, sys

notes = collections.defaultdict(list)
for line in open(sys.argv[1]):
    parts = line.split()
    if len(parts) < 5:
        continue
    topic, offset, timestamp, key, headers = parts[0], int(parts[1]), int(parts[2]), parts[3], parts[4]
    fields = dict(kv.split("=", 1) for kv in headers.split(",") if "=" in kv)
    notes[key].append((timestamp, offset, fields.get("event_type", "?")))
if not notes:
    sys.exit("no records read")
start = min(r[0] for rs in notes.values() for r in rs)

def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]

gaps, sagas = collections.defaultdict(list), []
for rs in notes.values():
    rs.sort()
    published = [r for r in rs if r[2] == "NotePublished"]
    if rs[0][0] - start < 2000 or not published:
        continue
    sagas.append(published[0][0] - rs[0][0])
    for a, b in zip(rs, rs[1:]):
        gaps[f"{a[2]} -> {b[2]}"].append(b[0] - a[0])
print(f"\nsaga on the log (CreateNote -> NotePublished), {len(sagas)} notes: "
      f"p50 {pct(sagas, .5)} ms, p99 {pct(sagas, .99)} ms")
print(f"{'hop (by producer timestamps)':58} {'n':>6} {'p50':>5} {'p90':>5} {'p99':>5}  ms")
for hop, values in sorted(gaps.items(), key=lambda kv: -sum(kv[1])):
    if len(values) >= 0.1 * len(sagas):
        print(f"{hop:58} {len(values):6} {pct(values, .5):5} {pct(values, .9):5} {pct(values, .99):5}")
EOF
node_stop

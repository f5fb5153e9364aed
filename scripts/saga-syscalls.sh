#!/usr/bin/env bash
# System calls per saga, by thread group: starts a throw-away `notesaga dev` (silent
# narration, hash embedder), runs `notesaga bench saga` at CONCURRENCY clients for
# SECONDS, and counts the system calls of the roles process and its broker with
# `perf trace -s` over 5 s in the middle of the run, divided by the sagas that window
# completed (at the run's rate). Tracing slows the run; compare builds with the same
# script, not with the untraced figures.
# Usage: scripts/saga-syscalls.sh BIN_DIR [CONCURRENCY] [SECONDS]
# Needs perf (Debian's linux-perf) and root or kernel.perf_event_paranoid ≤ 0.
set -euo pipefail
bin="${1:?usage: $0 BIN_DIR [CONCURRENCY] [SECONDS]}"
concurrency="${2:-32}"
seconds="${3:-20}"
bin="$(cd "$bin" && pwd)"
command -v perf >/dev/null || { echo "perf is missing: apt-get install linux-perf" >&2; exit 1; }
[ "$seconds" -ge 12 ] || { echo "SECONDS must be at least 12 (5 s are traced after 6 s)" >&2; exit 1; }

. "$(dirname "${BASH_SOURCE[0]}")/lib/node.sh"
node_prepare
node_start "$bin" /healthz NOTESAGA_RATE_LIMIT=0 \
  NOTESAGA_NARRATION_PROVIDER=silent NOTESAGA_EMBEDDING_PROVIDER=builtin || exit 1
saga_loop "$bin" "$concurrency" "$seconds" >"$data/loop.txt" 2>&1 &
loop=$!
sleep 6
broker="$(pgrep -P "$node" notesaga-broker || true)"
perf trace -s -p "$node${broker:+,$broker}" -o "$data/trace.txt" -- sleep 5 2>/dev/null
wait "$loop"
grep 'clients:' "$data/loop.txt"
rate="$(grep -oE '[0-9.]+ sagas/s' "$data/loop.txt" | head -1 | cut -d' ' -f1)"
python3 - "$data/trace.txt" "$rate" <<'PY'
import collections, re, sys

per = collections.defaultdict(collections.Counter)
thread = None
for line in open(sys.argv[1]):
    m = re.match(r'\s*(\S[^()]*?) \((\d+)\), (\d+) events', line)
    if m:
        thread = re.sub(r'\d+$', '', m.group(1))
        continue
    m = re.match(r'\s+(\w+)\s+(\d+)\s+(\d+)\s', line)
    if m and thread:
        per[thread][m.group(1)] += int(m.group(2))
sagas = float(sys.argv[2]) * 5
print(f"system calls per saga (~{sagas:.0f} sagas in the 5 s traced):")
total = 0
for name, calls in sorted(per.items(), key=lambda kv: -sum(kv[1].values())):
    total += sum(calls.values())
    top = ", ".join(f"{call} {n / sagas:.1f}" for call, n in calls.most_common(8))
    print(f"  {name:18} {sum(calls.values()) / sagas:6.1f}  {top}")
print(f"  {'all':18} {total / sagas:6.1f}")
PY

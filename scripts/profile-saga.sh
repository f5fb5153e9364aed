#!/usr/bin/env bash
# Where the CPU goes in a closed saga loop: starts a throw-away `notesaga dev` (silent
# narration, hash embedder, as bench-compare's notesaga side), runs `notesaga bench saga`
# at CONCURRENCY clients for SECONDS, and records the whole machine with perf (cpu-clock:
# this VM has no hardware counters) over the middle of the run. Prints the shares by
# process and by thread name, and leaves perf.data in OUT for `perf report -i`.
# Usage: scripts/profile-saga.sh BIN_DIR [CONCURRENCY] [SECONDS] [OUT]
# Needs perf (Debian's linux-perf) and root or kernel.perf_event_paranoid ≤ 0.
set -euo pipefail
bin="${1:?usage: $0 BIN_DIR [CONCURRENCY] [SECONDS] [OUT]}"
concurrency="${2:-32}"
seconds="${3:-30}"
out="${4:-$(mktemp -d)}"
bin="$(cd "$bin" && pwd)"
mkdir -p "$out"
command -v perf >/dev/null || { echo "perf is missing: apt-get install linux-perf" >&2; exit 1; }

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
. "$(dirname "${BASH_SOURCE[0]}")/lib/node.sh"
node_prepare
node_start "$bin" /healthz NOTESAGA_RATE_LIMIT=0 \
  NOTESAGA_NARRATION_PROVIDER=silent NOTESAGA_EMBEDDING_PROVIDER=builtin || exit 1
saga_loop "$bin" "$concurrency" "$seconds" &
bench=$!
# Skip the warm-up, record the middle half of the run.
sleep $((seconds / 4 + 3))
perf record -q -e cpu-clock -F 499 -a -g -o "$out/perf.data" -- sleep $((seconds / 2)) 2>/dev/null
wait "$bench"
node_stop
echo
echo "== share of samples by process"
perf report -i "$out/perf.data" --no-children --sort comm --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -25
echo
echo "== top symbols"
perf report -i "$out/perf.data" --no-children --sort comm,dso,sym --stdio -g none 2>/dev/null | grep -E '^ +[0-9]' | head -40
echo
echo "perf.data: $out/perf.data"

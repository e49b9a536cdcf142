# Glyphoxa — the two commands are `make demo` (once the demo lands; see
# README) and `make test`. CI runs `make test` through .ci/run.

CARGO ?= cargo

.PHONY: setup test fmt clippy deps unit bench check-config

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

bench:
	$(CARGO) bench

check-config:
	$(CARGO) run --quiet -- check-config --config examples/glyphoxa.yaml

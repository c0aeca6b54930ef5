# StreamForge developer commands. `make test` is what CI runs.

# Keep build output outside the clone so fresh clones (CI) build incrementally.
CARGO_TARGET_DIR ?= $(HOME)/.cache/streamforge/target
export CARGO_TARGET_DIR

CARGO ?= cargo

.PHONY: all run test deps unit-test doc-test bench lint fmt clean-data

all: lint test

## run: the whole pipeline on embedded defaults (http://127.0.0.1:8080)
run:
	$(CARGO) run --release -- run

## test: every unit, property, component and integration test
test: deps unit-test doc-test

## deps: install what the tests need and the machine lacks (PostgreSQL, Redis)
deps:
	./scripts/install-test-deps.sh

unit-test: deps
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		$(CARGO) test --workspace --no-fail-fast; \
	fi

doc-test:
	$(CARGO) test --workspace --doc

## bench: sustained throughput and ingest->stored latency (see docs/benchmarks.md)
bench:
	$(CARGO) run --release -- bench

## lint: formatting and clippy, warnings are errors
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## clean-data: remove the embedded store under ./data
clean-data:
	rm -rf ./data

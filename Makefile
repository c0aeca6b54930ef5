# StreamForge developer commands. `make test` is what CI runs.

# Keep build output outside the clone so fresh clones (CI) build incrementally.
CARGO_TARGET_DIR ?= $(HOME)/.cache/streamforge/target
export CARGO_TARGET_DIR

CARGO ?= cargo

# Tools the project installs for itself (actionlint) live here.
TOOLS_BIN ?= $(HOME)/.cache/streamforge/bin
ACTIONLINT_VERSION ?= v1.7.12

# The compose stack (`make up`), and the store `make migrate-*` works on:
# by default the stack's TimescaleDB as published on this host.
COMPOSE ?= docker compose --env-file deploy/.env -f deploy/docker-compose.yml
STORE ?= $(or $(STREAMFORGE_STORE),postgres://postgres:streamforge@127.0.0.1:5432/market)

.PHONY: all run test deps unit-test doc-test bench bench-rest lint fmt clean-data up down migrate-up migrate-down migrate-version fuzz

all: lint test

## run: the whole pipeline on embedded defaults (http://127.0.0.1:8080)
run:
	$(CARGO) run --release -- run

## test: every unit, property, component and integration test
test: deps unit-test doc-test

## deps: install what the tests need and the machine lacks (PostgreSQL, Redis,
## Prometheus, Chromium, Playwright, OpenSSL headers, Apache Kafka's jars)
deps:
	./scripts/install-test-deps.sh

## Tests whose name contains `timescaledb` need the TimescaleDB extension:
## they run only where it is installed; otherwise they are left out (not run,
## not counted) and the summary says how many and why.
unit-test: deps
	@if where=$$(./scripts/timescaledb-installed.sh); then \
		skip=""; note="make test: the TimescaleDB tests ran ($$where)"; \
	else \
		skip="--skip timescaledb"; \
		n=$$($(CARGO) test --workspace --tests -- --list 2>/dev/null | grep -c 'timescaledb[^ ]*: test$$'); \
		note="make test: $$n TimescaleDB tests LEFT OUT, not run and not counted ($$where; install the extension to run them)"; \
	fi; \
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast -- $$skip; status=$$?; \
	else \
		$(CARGO) test --workspace --no-fail-fast -- $$skip; status=$$?; \
	fi; \
	echo "$$note"; exit $$status

doc-test:
	$(CARGO) test --workspace --doc

## bench: sustained throughput and ingest->stored latency (see docs/benchmarks.md)
bench:
	$(CARGO) build --release -p streamforge -p streamforge-bench
	$(CARGO) run --release -p streamforge-bench --

## bench-rest: REST reads with wrk against an embedded run, every endpoint
## in one round, ratios to /healthz (docs/benchmarks.md)
bench-rest:
	./scripts/bench-rest.sh

## fuzz: every fuzz target for FUZZ_SECONDS each (default 600); needs a
## nightly toolchain and cargo-fuzz, says so when missing (docs/reliability.md)
FUZZ_SECONDS ?= 600
fuzz:
	./scripts/fuzz.sh $(FUZZ_SECONDS)

## lint: formatting, clippy (warnings are errors) and the CI workflow (actionlint).
## A check whose tool this machine lacks (and cannot install) is reported as
## NOT RUN, by name, instead of failing.
lint:
	@if $(CARGO) fmt --version >/dev/null 2>&1; then \
		echo "lint: cargo fmt --check"; $(CARGO) fmt --all -- --check; \
	else echo "lint: NOT RUN: cargo fmt (rustfmt is not installed for this toolchain)"; fi
	@if $(CARGO) clippy --version >/dev/null 2>&1; then \
		echo "lint: cargo clippy -D warnings"; $(CARGO) clippy --workspace --all-targets -- -D warnings; \
	else echo "lint: NOT RUN: cargo clippy (clippy is not installed for this toolchain)"; fi
	@if [ ! -x "$(TOOLS_BIN)/actionlint" ] && command -v go >/dev/null 2>&1; then \
		echo "lint: installing actionlint $(ACTIONLINT_VERSION) into $(TOOLS_BIN)"; \
		GOBIN="$(TOOLS_BIN)" go install github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VERSION) || true; \
	fi
	@if [ -x "$(TOOLS_BIN)/actionlint" ]; then \
		echo "lint: actionlint .github/workflows"; "$(TOOLS_BIN)/actionlint" -shellcheck= -pyflakes=; \
	else echo "lint: NOT RUN: actionlint (no Go toolchain to install it with)"; fi

## up / down: the compose stack (Kafka, TimescaleDB, Redis, the roles,
## Prometheus, Grafana, tracing); needs Docker
up:
	@[ -f deploy/.env ] || cp deploy/.env.example deploy/.env
	$(COMPOSE) up -d --build

down:
	$(COMPOSE) down

## migrate-up / migrate-down / migrate-version: the store schema of
## STORE (default: the compose stack's TimescaleDB on this host)
migrate-up:
	$(CARGO) run --release -- migrate up --store '$(STORE)'

migrate-down:
	$(CARGO) run --release -- migrate down --store '$(STORE)'

migrate-version:
	$(CARGO) run --release -- migrate status --store '$(STORE)'

fmt:
	$(CARGO) fmt --all

## clean-data: remove the embedded store under ./data
clean-data:
	rm -rf ./data

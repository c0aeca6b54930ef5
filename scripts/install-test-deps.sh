#!/usr/bin/env bash
# Installs what the tests need and the machine lacks: PostgreSQL server
# binaries (initdb, postgres, psql), Redis (redis-server, redis-cli),
# Prometheus (it scrapes a running pipeline in a test), Chromium and
# Playwright (the dashboard is tested in a headless browser; Node.js must be
# there already) and tansu, a Kafka-compatible broker (from crates.io; about
# 10 minutes to build on 2 cores). The tests start their own throwaway
# servers from these.
set -euo pipefail

# The broker: a cargo binary, no root needed.
if ! command -v tansu >/dev/null 2>&1 && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/tansu" ]; then
    echo "installing tansu (Kafka-compatible broker for the tests)"
    # Its own target directory: not the project's, so a project build is not invalidated.
    env -u CARGO_TARGET_DIR cargo install tansu --version '~0.6' --locked --features libsql
fi

# The browser driver for the dashboard test, pinned by web/tests/package-lock.json.
web_tests="$(dirname "$0")/../web/tests"
if [ ! -d "$web_tests/node_modules/playwright-core" ]; then
    if ! command -v npm >/dev/null 2>&1; then
        echo "cannot install playwright-core for the dashboard test: no npm; install Node.js" >&2
        exit 1
    fi
    echo "installing playwright-core (dashboard browser test)"
    npm ci --prefix "$web_tests" --no-audit --no-fund
fi

missing=()
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    missing+=(postgresql)
fi
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
[ -x /usr/bin/chromium ] || command -v chromium >/dev/null 2>&1 || missing+=(chromium)

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

echo "installing test dependencies: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
else
    echo "cannot install ${missing[*]}: not root and no sudo; install them with your package manager" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "cannot install ${missing[*]}: no apt-get here; install them with your package manager" >&2
    exit 1
fi
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}"

#!/usr/bin/env bash
# Installs what the tests need and the machine lacks: PostgreSQL server
# binaries (initdb, postgres, psql), Redis (redis-server, redis-cli),
# Prometheus (it scrapes a running pipeline in a test), Chromium and
# Playwright (the dashboard is tested in a headless browser; Node.js must be
# there already), the headers the Kafka client builds against (OpenSSL,
# for TLS and SASL/SCRAM), and Apache Kafka's jars from Maven Central (Java
# 17 and Maven must be there already). The tests start their own throwaway
# servers from these. Does nothing for what is there already.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"

# Apache Kafka: the broker and its tools, as jars resolved by Maven into a
# cache outside the clone (the version is the one in scripts/kafka/pom.xml).
kafka_version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/kafka/pom.xml")"
kafka_lib="${STREAMFORGE_KAFKA_LIB:-$HOME/.cache/streamforge/kafka-$kafka_version/lib}"
if ! ls "$kafka_lib"/kafka_2.13-"$kafka_version"*.jar >/dev/null 2>&1; then
    for tool in java mvn; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            echo "cannot resolve Apache Kafka $kafka_version's jars: no $tool; install Java 17 and Maven" >&2
            exit 1
        fi
    done
    echo "resolving Apache Kafka $kafka_version from Maven Central into $kafka_lib"
    mkdir -p "$kafka_lib.partial"
    mvn -B -q -f "$here/kafka/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$kafka_lib.partial"
    rm -rf "$kafka_lib"
    mv "$kafka_lib.partial" "$kafka_lib"
fi

# The browser driver for the dashboard test, pinned by web/tests/package-lock.json.
web_tests="$here/../web/tests"
if [ ! -d "$web_tests/node_modules/playwright-core" ]; then
    if ! command -v npm >/dev/null 2>&1; then
        echo "cannot install playwright-core for the dashboard test: no npm; install Node.js" >&2
        exit 1
    fi
    echo "installing playwright-core (dashboard browser test)"
    npm ci --prefix "$web_tests" --no-audit --no-fund
fi

# Schemathesis for the API contract test (crates/streamforge/tests/api_contract.rs),
# from PyPI into its own virtual environment, pinned.
schemathesis_version=4.32.5
schemathesis_env="${HOME:-/root}/.cache/streamforge/schemathesis"
if ! "$schemathesis_env/bin/st" --version 2>/dev/null | grep -q "$schemathesis_version"; then
    echo "installing schemathesis $schemathesis_version into $schemathesis_env (API contract test)"
    rm -rf "$schemathesis_env"
    if ! python3 -m venv "$schemathesis_env"; then
        echo "cannot create a Python virtual environment: install python3-venv" >&2
        exit 1
    fi
    "$schemathesis_env/bin/pip" install -q --disable-pip-version-check "schemathesis==$schemathesis_version"
fi

missing=()
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    missing+=(postgresql)
fi
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
# The dashboard test drives $CHROMIUM when set (another Chromium-based browser).
[ -n "${CHROMIUM:-}" ] && [ -x "$CHROMIUM" ] || [ -x /usr/bin/chromium ] \
    || command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# The Kafka client (librdkafka, built by cargo) links OpenSSL for TLS and SCRAM.
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)

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

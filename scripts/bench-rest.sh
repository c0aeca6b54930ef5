#!/usr/bin/env bash
# The REST read benchmark of docs/benchmarks.md: `wrk` against an embedded
# `streamforge run` (synthetic market, SQLite, in-memory cache), every
# endpoint on the same server in the same run, ROUNDS (default 2) rounds.
# Prints one line per endpoint and round: requests/s, p99, and the ratio to
# `/healthz` of the same round.
#   scripts/bench-rest.sh            # build, start, measure, stop
#   BIN=path/to/streamforge scripts/bench-rest.sh   # another build
# Needs wrk (`apt-get install wrk`).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-2}"
DURATION="${DURATION:-8s}"
CONNECTIONS="${CONNECTIONS:-32}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/streamforge/target}"
if [ -z "${BIN:-}" ]; then
  cargo build -q --release -p streamforge
  BIN="$CARGO_TARGET_DIR/release/streamforge"
fi
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
work="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$BIN" run --http-addr "127.0.0.1:$port" --data-dir "$work" --rate 300 >"$work/run.log" 2>&1 &
run=$!
cleanup() { kill "$run" 2>/dev/null || true; wait "$run" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
base="http://127.0.0.1:$port"
for _ in $(seq 100); do curl -fs "$base/api/v1/quotes/AAPL/latest" >/dev/null 2>&1 && break; sleep 0.2; done
# Enough history for full pages and a few minutes of candles.
sleep "${SETTLE:-12}"
paths=(/healthz /api/v1/quotes/AAPL/latest "/api/v1/ticks/AAPL?limit=100" "/api/v1/candles/AAPL?interval=1m" /api/v1/symbols)
for round in $(seq "$ROUNDS"); do
  healthz=""
  for p in "${paths[@]}"; do
    out="$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency "$base$p")"
    rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
    p99="$(awk '$1 == "99%" {print $2}' <<<"$out")"
    non2xx="$(awk '/Non-2xx/ {print $NF}' <<<"$out")"
    [ -z "$healthz" ] && healthz="$rps"
    ratio="$(python3 -c "print(f'{$rps / $healthz:.2f}')")"
    printf 'round %s  %-36s %10s req/s  p99 %-8s  ÷ /healthz %s%s\n' \
      "$round" "$p" "$rps" "$p99" "$ratio" "${non2xx:+  NON-2XX $non2xx}"
  done
done

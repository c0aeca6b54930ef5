#!/usr/bin/env bash
# Runs every fuzz target for a bounded time: scripts/fuzz.sh [SECONDS] [TARGET...]
# (make fuzz FUZZ_SECONDS=600). Needs a nightly toolchain and cargo-fuzz
# (`cargo install cargo-fuzz`); says so and stops when either is missing.
# Corpora grow in fuzz/corpus/<target> (seeded from test_data/ and
# fuzz/seeds/); crashes land in fuzz/artifacts/<target>.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(finnhub_frame wire_decode recording ws_request query_params)
fi
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: NOT RUN: no nightly toolchain (cargo fuzz needs one; rustup toolchain install nightly)" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: NOT RUN: cargo-fuzz is not installed (cargo install cargo-fuzz)" >&2
  exit 1
fi

# Seed corpora: the recorded frames and session of test_data/, and the
# hand-written seeds of fuzz/seeds/.
mkdir -p fuzz/corpus/{finnhub_frame,wire_decode,recording,ws_request,query_params}
i=0
while IFS= read -r line; do
  i=$((i + 1))
  printf '%s' "$line" > "fuzz/corpus/finnhub_frame/seed-frame-$i"
done < test_data/finnhub/frames.ndjson
if command -v zstd >/dev/null; then
  zstd -dcq test_data/finnhub/session.ndjson.zst > fuzz/corpus/recording/seed-session
  head -c 4096 fuzz/corpus/recording/seed-session > fuzz/corpus/recording/seed-session-head
fi
for t in wire_decode ws_request query_params; do
  cp fuzz/seeds/$t/* fuzz/corpus/$t/
done

for t in "${targets[@]}"; do
  echo "== fuzz $t for ${seconds}s"
  (cd fuzz && cargo +nightly fuzz run "$t" "corpus/$t" -- \
      -max_total_time="$seconds" -max_len=262144 -rss_limit_mb=2048 -print_final_stats=1) \
    2>&1 | tee "fuzz/last-$t.log" | grep -E "^(#[0-9]+ *DONE|Done|stat::|==|SUMMARY|Test unit written)" || true
  if ls fuzz/artifacts/"$t"/crash-* >/dev/null 2>&1; then
    echo "fuzz: $t found crashes in fuzz/artifacts/$t" >&2
    exit 1
  fi
done

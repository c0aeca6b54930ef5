#!/usr/bin/env bash
# The Kafka-path benchmarks of docs/benchmarks.md, measured side by side in
# one run on throwaway engines (Apache Kafka, PostgreSQL, Redis from
# testkit's `engines` example, the same as the tests):
#   bus    `streamforge-bench --scenario bus` vs Kafka's own ProducerPerformance,
#          the same payloads, acks=all, idempotence, lz4, linger 5 ms
#   path   ingest -> Kafka -> persist -> PostgreSQL + Redis in one process:
#          full speed, and ingest->stored latency at 10,000 ticks/s
#   scale  1 vs 2 `streamforge persist` processes draining one backlog on
#          6 partitions
#   sink   the PostgreSQL sink alone vs the server's own limit on the same
#          schema (COPY into an unlogged staging table + one INSERT ... ON
#          CONFLICT DO NOTHING into ticks), the same rows
# Usage: scripts/bench-kafka.sh [bus] [path] [scale] [sink]   (default: all)
# RUNS (default 3) runs of each; prints one line per measurement, then the
# medians. Needs `make deps` (Kafka's jars, PostgreSQL, Redis).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-3}"
what="${*:-bus path scale sink}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/streamforge/target}"
cargo build -q --release -p streamforge -p streamforge-bench
cargo build -q --release -p streamforge-testkit --example engines
sf="$CARGO_TARGET_DIR/release/streamforge"
bench="$CARGO_TARGET_DIR/release/streamforge-bench"
kafka_version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' scripts/kafka/pom.xml)"
kafka_lib="${STREAMFORGE_KAFKA_LIB:-$HOME/.cache/streamforge/kafka-$kafka_version/lib}"

work="$(mktemp -d)"
mkfifo "$work/hold"
"$CARGO_TARGET_DIR/release/examples/engines" kafka postgres redis <"$work/hold" >"$work/engines.env" &
engines=$!
exec 9>"$work/hold"
cleanup() { exec 9>&-; wait "$engines" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 600); do grep -q READY "$work/engines.env" 2>/dev/null && break; sleep 0.2; done
grep -q READY "$work/engines.env" || { echo "the engines did not start" >&2; exit 1; }
# shellcheck disable=SC1090
source <(grep '=' "$work/engines.env")
pg_server="${POSTGRES_URL%/*}"
echo "engines: $KAFKA_URL $POSTGRES_URL $REDIS_URL; $(nproc) cores; $(date -u +%F)"

kafka_tool() { java -Xmx512m -cp "$kafka_lib/*" -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.properties" "$@"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
# Names unique to each call (they run in subshells: no shared counter).
fresh_db() {
    local name="bench_$(date +%s%N)"
    psql -q "$pg_server/postgres" -c "CREATE DATABASE $name" >/dev/null
    echo "$pg_server/$name"
}
# A config file of its own topic and group, so runs do not read each other's data.
fresh_config() {
    local n; n="$(date +%s%N)"
    local file="$work/run-$n.toml"
    cat >"$file" <<EOF
bus = "$KAFKA_URL"
store = "$1"
cache = "$REDIS_URL"
[http]
addr = "127.0.0.1:0"
[ingest]
topic = "bench-ticks-$$-$n"
dlq_topic = "bench-ticks-$$-$n.dlq"
[persist]
group = "bench-persist-$$-$n"
[log]
level = "warn"
EOF
    echo "$file"
}
rows() { psql -tA "$1" -c "SELECT count(*) FROM ticks"; }

if [[ " $what " == *" bus "* ]]; then
    records=1000000
    for i in $(seq "$RUNS"); do
        ours=$("$bench" --scenario bus --bus "$KAFKA_URL" --sink-ticks "$records" --batch-size 5000 \
            --payload-file "$work/payloads.txt" 2>/dev/null | awk -F'|' '/ produce /{gsub(/ /,"",$3); print $3}')
        kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BOOTSTRAP" --create \
            --topic "perf-$$-$i" --partitions 6 --replication-factor 1 >/dev/null
        peer=$(kafka_tool org.apache.kafka.tools.ProducerPerformance --topic "perf-$$-$i" \
            --num-records "$records" --payload-file "$work/payloads.txt" --throughput -1 \
            --producer-props bootstrap.servers="$KAFKA_BOOTSTRAP" acks=all enable.idempotence=true \
            compression.type=lz4 linger.ms=5 2>/dev/null | tail -1 | sed -E 's/.* records sent, ([0-9.]+) records\/sec.*/\1/')
        echo "bus run $i: streamforge $ours msg/s, ProducerPerformance $peer msg/s, ratio $(echo "$ours / $peer" | bc -l | cut -c1-5)"
        echo "$ours" >>"$work/bus.ours"; echo "$peer" >>"$work/bus.peer"
    done
    o=$(median <"$work/bus.ours"); p=$(median <"$work/bus.peer")
    echo "bus median: streamforge $o msg/s, ProducerPerformance $p msg/s, ratio $(echo "$o / $p" | bc -l | cut -c1-5)"
fi

if [[ " $what " == *" path "* ]]; then
    for i in $(seq "$RUNS"); do
        db=$(fresh_db); cfg=$(fresh_config "$db")
        "$sf" --config "$cfg" migrate up >/dev/null
        full=$("$bench" --config "$cfg" --scenario throughput --duration 20s --warmup 5s 2>/dev/null | grep '| throughput')
        db=$(fresh_db); cfg=$(fresh_config "$db")
        "$sf" --config "$cfg" migrate up >/dev/null
        lat=$("$bench" --config "$cfg" --scenario latency --latency-rate 10000 --duration 20s --warmup 5s 2>/dev/null | grep '| latency')
        echo "path run $i: $full"
        echo "path run $i: $lat"
        echo "$full" | awk -F'|' '{gsub(/ /,"",$3); print $3}' >>"$work/path.full"
        echo "$lat" | awk -F'|' '{gsub(/ /,"",$8); print $8}' >>"$work/path.p99"
    done
    echo "path median: full speed $(median <"$work/path.full") ticks/s stored; at 10,000/s p99 ingest->stored $(median <"$work/path.p99") ms"
fi

if [[ " $what " == *" scale "* ]]; then
    for i in $(seq "$RUNS"); do
        db=$(fresh_db); cfg=$(fresh_config "$db")
        "$sf" --config "$cfg" migrate up >/dev/null
        # One backlog for both: ingest at full speed for 15 s, then stop.
        "$sf" --config "$cfg" ingest --rate max >/dev/null 2>&1 &
        ingest=$!; sleep 15; kill -TERM "$ingest"; wait "$ingest"
        for members in 1 2; do
            sed -i "s/^group = .*/group = \"bench-persist-$(date +%s%N)\"/" "$cfg"
            psql -q "$db" -c "TRUNCATE ticks" >/dev/null
            pids=()
            start=$(date +%s.%N)
            for _ in $(seq "$members"); do "$sf" --config "$cfg" persist >/dev/null 2>&1 & pids+=($!); done
            # Drained when the count stops growing for 3 s.
            last=-1; same=0; total=0
            while [ "$same" -lt 6 ]; do
                sleep 0.5; total=$(rows "$db")
                if [ "$total" = "$last" ] && [ "$total" -gt 0 ]; then same=$((same + 1)); else same=0; last=$total; fi
            done
            took=$(echo "$(date +%s.%N) - $start - 3" | bc -l)
            kill -TERM "${pids[@]}"; wait "${pids[@]}" || true
            rate=$(echo "$total / $took" | bc -l | cut -d. -f1)
            echo "scale run $i: $members persist: $total rows in $(echo "$took" | cut -c1-5) s = $rate rows/s"
            echo "$rate" >>"$work/scale.$members"
        done
    done
    one=$(median <"$work/scale.1"); two=$(median <"$work/scale.2")
    echo "scale median: 1 persist $one rows/s, 2 persist $two rows/s, ratio $(echo "$two / $one" | bc -l | cut -c1-5)"
fi

if [[ " $what " == *" sink "* ]]; then
    ticks=500000
    for i in $(seq "$RUNS"); do
        db=$(fresh_db); cfg=$(fresh_config "$db")
        sink=$("$bench" --config "$cfg" --scenario sink --sink-ticks "$ticks" --batch-size 5000 2>/dev/null \
            | awk -F'|' '/ new rows /{gsub(/ /,"",$3); print $3}')
        # The same rows again, into the same (emptied) table and partitions.
        psql -q "$db" -c "\\copy (SELECT * FROM ticks) TO '$work/rows.copy'"
        psql -q "$db" -c "TRUNCATE ticks" -c "CHECKPOINT" >/dev/null
        start=$(date +%s.%N)
        psql -q -v ON_ERROR_STOP=1 "$db" >/dev/null <<EOF
CREATE UNLOGGED TABLE stage (LIKE ticks);
\\copy stage FROM '$work/rows.copy'
INSERT INTO ticks SELECT * FROM stage ON CONFLICT DO NOTHING;
EOF
        took=$(echo "$(date +%s.%N) - $start" | bc -l)
        limit=$(echo "$ticks / $took" | bc -l | cut -d. -f1)
        echo "sink run $i: streamforge sink $sink rows/s, COPY + INSERT $limit rows/s, ratio $(echo "$sink / $limit" | bc -l | cut -c1-5)"
        echo "$sink" >>"$work/sink.ours"; echo "$limit" >>"$work/sink.raw"
    done
    o=$(median <"$work/sink.ours"); r=$(median <"$work/sink.raw")
    echo "sink median: streamforge $o rows/s, COPY + INSERT $r rows/s, ratio $(echo "$o / $r" | bc -l | cut -c1-5)"
fi

CREATE MATERIALIZED VIEW candles_1m WITH (timescaledb.continuous) AS
                     SELECT symbol, time_bucket(INTERVAL '1 minute', ts) AS bucket,
                            first(price, ts) AS open, max(price) AS high, min(price) AS low,
                            last(price, ts) AS close, sum(size) AS volume,
                            sum(price * size) AS notional, count(*) AS trades,
                            min(ts) AS first_ts, max(ts) AS last_ts
                       FROM ticks GROUP BY symbol, bucket WITH NO DATA;
                     ALTER MATERIALIZED VIEW candles_1m SET (timescaledb.materialized_only = false);
                     SELECT add_continuous_aggregate_policy('candles_1m',
                         start_offset => INTERVAL '2 hours', end_offset => INTERVAL '1 minute',
                         schedule_interval => INTERVAL '1 minute');CREATE MATERIALIZED VIEW candles_1h WITH (timescaledb.continuous) AS
                     SELECT symbol, time_bucket(INTERVAL '1 hour', ts) AS bucket,
                            first(price, ts) AS open, max(price) AS high, min(price) AS low,
                            last(price, ts) AS close, sum(size) AS volume,
                            sum(price * size) AS notional, count(*) AS trades,
                            min(ts) AS first_ts, max(ts) AS last_ts
                       FROM ticks GROUP BY symbol, bucket WITH NO DATA;
                     ALTER MATERIALIZED VIEW candles_1h SET (timescaledb.materialized_only = false);
                     SELECT add_continuous_aggregate_policy('candles_1h',
                         start_offset => INTERVAL '2 days', end_offset => INTERVAL '1 hour',
                         schedule_interval => INTERVAL '30 minutes');
DROP MATERIALIZED VIEW IF EXISTS candles_1h CASCADE;
         DROP MATERIALIZED VIEW IF EXISTS candles_1m CASCADE;CREATE MATERIALIZED VIEW candles_1s
                 WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
                 SELECT symbol, time_bucket(INTERVAL '1 second', ts) AS bucket,
                        (array_agg(price ORDER BY ts, tick_id))[1] AS open, min(ts) AS open_ts,
                        (array_agg(tick_id ORDER BY ts, tick_id))[1] AS open_id,
                        max(price) AS high, min(price) AS low,
                        (array_agg(price ORDER BY ts DESC, tick_id DESC))[1] AS close,
                        max(ts) AS close_ts,
                        (array_agg(tick_id ORDER BY ts DESC, tick_id DESC))[1] AS close_id,
                        sum(size) AS volume, sum(price * size) AS notional, count(*) AS trades
                   FROM ticks GROUP BY symbol, time_bucket(INTERVAL '1 second', ts) WITH NO DATA;
             SELECT add_continuous_aggregate_policy('candles_1s',
                 start_offset => INTERVAL '1 hour', end_offset => INTERVAL '10 seconds',
                 schedule_interval => INTERVAL '30 seconds');CREATE MATERIALIZED VIEW candles_1m
                 WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
                 SELECT symbol, time_bucket(INTERVAL '1 minute', ts) AS bucket,
                        (array_agg(price ORDER BY ts, tick_id))[1] AS open, min(ts) AS open_ts,
                        (array_agg(tick_id ORDER BY ts, tick_id))[1] AS open_id,
                        max(price) AS high, min(price) AS low,
                        (array_agg(price ORDER BY ts DESC, tick_id DESC))[1] AS close,
                        max(ts) AS close_ts,
                        (array_agg(tick_id ORDER BY ts DESC, tick_id DESC))[1] AS close_id,
                        sum(size) AS volume, sum(price * size) AS notional, count(*) AS trades
                   FROM ticks GROUP BY symbol, time_bucket(INTERVAL '1 minute', ts) WITH NO DATA;
             SELECT add_continuous_aggregate_policy('candles_1m',
                 start_offset => INTERVAL '6 hours', end_offset => INTERVAL '1 minute',
                 schedule_interval => INTERVAL '1 minute');CREATE MATERIALIZED VIEW candles_1h
                 WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
                 SELECT symbol, time_bucket(INTERVAL '1 hour', bucket) AS bucket,
                            (array_agg(open ORDER BY open_ts, open_id))[1] AS open,
                            min(open_ts) AS open_ts,
                            (array_agg(open_id ORDER BY open_ts, open_id))[1] AS open_id,
                            max(high) AS high, min(low) AS low,
                            (array_agg(close ORDER BY close_ts DESC, close_id DESC))[1] AS close,
                            max(close_ts) AS close_ts,
                            (array_agg(close_id ORDER BY close_ts DESC, close_id DESC))[1] AS close_id,
                            sum(volume) AS volume, sum(notional) AS notional,
                            sum(trades)::BIGINT AS trades
                       FROM candles_1m GROUP BY symbol, time_bucket(INTERVAL '1 hour', bucket) WITH NO DATA;
             SELECT add_continuous_aggregate_policy('candles_1h',
                 start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
                 schedule_interval => INTERVAL '30 minutes');CREATE MATERIALIZED VIEW candles_1d
                 WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
                 SELECT symbol, time_bucket(INTERVAL '1 day', bucket) AS bucket,
                            (array_agg(open ORDER BY open_ts, open_id))[1] AS open,
                            min(open_ts) AS open_ts,
                            (array_agg(open_id ORDER BY open_ts, open_id))[1] AS open_id,
                            max(high) AS high, min(low) AS low,
                            (array_agg(close ORDER BY close_ts DESC, close_id DESC))[1] AS close,
                            max(close_ts) AS close_ts,
                            (array_agg(close_id ORDER BY close_ts DESC, close_id DESC))[1] AS close_id,
                            sum(volume) AS volume, sum(notional) AS notional,
                            sum(trades)::BIGINT AS trades
                       FROM candles_1h GROUP BY symbol, time_bucket(INTERVAL '1 day', bucket) WITH NO DATA;
             SELECT add_continuous_aggregate_policy('candles_1d',
                 start_offset => INTERVAL '30 days', end_offset => INTERVAL '1 day',
                 schedule_interval => INTERVAL '1 hour');
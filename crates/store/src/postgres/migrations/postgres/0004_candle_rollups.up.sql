CREATE TABLE candles_1s (
                     symbol   TEXT COLLATE "C" NOT NULL,
                     bucket   TIMESTAMPTZ      NOT NULL,
                     open     DOUBLE PRECISION NOT NULL,
                     open_ts  TIMESTAMPTZ      NOT NULL,
                     open_id  BIGINT           NOT NULL,
                     high     DOUBLE PRECISION NOT NULL,
                     low      DOUBLE PRECISION NOT NULL,
                     close    DOUBLE PRECISION NOT NULL,
                     close_ts TIMESTAMPTZ      NOT NULL,
                     close_id BIGINT           NOT NULL,
                     volume   DOUBLE PRECISION NOT NULL,
                     notional DOUBLE PRECISION NOT NULL,
                     trades   BIGINT           NOT NULL,
                     PRIMARY KEY (symbol, bucket));
                 INSERT INTO candles_1s AS c
              (symbol, bucket, open, open_ts, open_id, high, low, close, close_ts, close_id,
               volume, notional, trades)
         SELECT symbol, date_bin(INTERVAL '1 second', ts, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS b,
                (array_agg(price ORDER BY ts, tick_id))[1], min(ts),
                (array_agg(tick_id ORDER BY ts, tick_id))[1],
                max(price), min(price),
                (array_agg(price ORDER BY ts DESC, tick_id DESC))[1], max(ts),
                (array_agg(tick_id ORDER BY ts DESC, tick_id DESC))[1],
                sum(size), sum(price * size), count(*)
           FROM ticks GROUP BY symbol, b ORDER BY symbol, b
         ON CONFLICT (symbol, bucket) DO UPDATE SET
             open = CASE WHEN (EXCLUDED.open_ts, EXCLUDED.open_id) < (c.open_ts, c.open_id)
                         THEN EXCLUDED.open ELSE c.open END,
             open_id = CASE WHEN (EXCLUDED.open_ts, EXCLUDED.open_id) < (c.open_ts, c.open_id)
                            THEN EXCLUDED.open_id ELSE c.open_id END,
             open_ts = LEAST(EXCLUDED.open_ts, c.open_ts),
             close = CASE WHEN (EXCLUDED.close_ts, EXCLUDED.close_id) > (c.close_ts, c.close_id)
                          THEN EXCLUDED.close ELSE c.close END,
             close_id = CASE WHEN (EXCLUDED.close_ts, EXCLUDED.close_id) > (c.close_ts, c.close_id)
                             THEN EXCLUDED.close_id ELSE c.close_id END,
             close_ts = GREATEST(EXCLUDED.close_ts, c.close_ts),
             high = GREATEST(EXCLUDED.high, c.high), low = LEAST(EXCLUDED.low, c.low),
             volume = c.volume + EXCLUDED.volume, notional = c.notional + EXCLUDED.notional,
             trades = c.trades + EXCLUDED.trades;CREATE TABLE candles_1m (
                     symbol   TEXT COLLATE "C" NOT NULL,
                     bucket   TIMESTAMPTZ      NOT NULL,
                     open     DOUBLE PRECISION NOT NULL,
                     open_ts  TIMESTAMPTZ      NOT NULL,
                     open_id  BIGINT           NOT NULL,
                     high     DOUBLE PRECISION NOT NULL,
                     low      DOUBLE PRECISION NOT NULL,
                     close    DOUBLE PRECISION NOT NULL,
                     close_ts TIMESTAMPTZ      NOT NULL,
                     close_id BIGINT           NOT NULL,
                     volume   DOUBLE PRECISION NOT NULL,
                     notional DOUBLE PRECISION NOT NULL,
                     trades   BIGINT           NOT NULL,
                     PRIMARY KEY (symbol, bucket));
                 INSERT INTO candles_1m AS c
              (symbol, bucket, open, open_ts, open_id, high, low, close, close_ts, close_id,
               volume, notional, trades)
         SELECT symbol, date_bin(INTERVAL '1 minute', ts, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS b,
                (array_agg(price ORDER BY ts, tick_id))[1], min(ts),
                (array_agg(tick_id ORDER BY ts, tick_id))[1],
                max(price), min(price),
                (array_agg(price ORDER BY ts DESC, tick_id DESC))[1], max(ts),
                (array_agg(tick_id ORDER BY ts DESC, tick_id DESC))[1],
                sum(size), sum(price * size), count(*)
           FROM ticks GROUP BY symbol, b ORDER BY symbol, b
         ON CONFLICT (symbol, bucket) DO UPDATE SET
             open = CASE WHEN (EXCLUDED.open_ts, EXCLUDED.open_id) < (c.open_ts, c.open_id)
                         THEN EXCLUDED.open ELSE c.open END,
             open_id = CASE WHEN (EXCLUDED.open_ts, EXCLUDED.open_id) < (c.open_ts, c.open_id)
                            THEN EXCLUDED.open_id ELSE c.open_id END,
             open_ts = LEAST(EXCLUDED.open_ts, c.open_ts),
             close = CASE WHEN (EXCLUDED.close_ts, EXCLUDED.close_id) > (c.close_ts, c.close_id)
                          THEN EXCLUDED.close ELSE c.close END,
             close_id = CASE WHEN (EXCLUDED.close_ts, EXCLUDED.close_id) > (c.close_ts, c.close_id)
                             THEN EXCLUDED.close_id ELSE c.close_id END,
             close_ts = GREATEST(EXCLUDED.close_ts, c.close_ts),
             high = GREATEST(EXCLUDED.high, c.high), low = LEAST(EXCLUDED.low, c.low),
             volume = c.volume + EXCLUDED.volume, notional = c.notional + EXCLUDED.notional,
             trades = c.trades + EXCLUDED.trades;CREATE TABLE candles_1h (
                     symbol   TEXT COLLATE "C" NOT NULL,
                     bucket   TIMESTAMPTZ      NOT NULL,
                     open     DOUBLE PRECISION NOT NULL,
                     open_ts  TIMESTAMPTZ      NOT NULL,
                     open_id  BIGINT           NOT NULL,
                     high     DOUBLE PRECISION NOT NULL,
                     low      DOUBLE PRECISION NOT NULL,
                     close    DOUBLE PRECISION NOT NULL,
                     close_ts TIMESTAMPTZ      NOT NULL,
                     close_id BIGINT           NOT NULL,
                     volume   DOUBLE PRECISION NOT NULL,
                     notional DOUBLE PRECISION NOT NULL,
                     trades   BIGINT           NOT NULL,
                     PRIMARY KEY (symbol, bucket));
                 INSERT INTO candles_1h AS c
              (symbol, bucket, open, open_ts, open_id, high, low, close, close_ts, close_id,
               volume, notional, trades)
         SELECT symbol, date_bin(INTERVAL '1 hour', ts, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS b,
                (array_agg(price ORDER BY ts, tick_id))[1], min(ts),
                (array_agg(tick_id ORDER BY ts, tick_id))[1],
                max(price), min(price),
                (array_agg(price ORDER BY ts DESC, tick_id DESC))[1], max(ts),
                (array_agg(tick_id ORDER BY ts DESC, tick_id DESC))[1],
                sum(size), sum(price * size), count(*)
           FROM ticks GROUP BY symbol, b ORDER BY symbol, b
         ON CONFLICT (symbol, bucket) DO UPDATE SET
             open = CASE WHEN (EXCLUDED.open_ts, EXCLUDED.open_id) < (c.open_ts, c.open_id)
                         THEN EXCLUDED.open ELSE c.open END,
             open_id = CASE WHEN (EXCLUDED.open_ts, EXCLUDED.open_id) < (c.open_ts, c.open_id)
                            THEN EXCLUDED.open_id ELSE c.open_id END,
             open_ts = LEAST(EXCLUDED.open_ts, c.open_ts),
             close = CASE WHEN (EXCLUDED.close_ts, EXCLUDED.close_id) > (c.close_ts, c.close_id)
                          THEN EXCLUDED.close ELSE c.close END,
             close_id = CASE WHEN (EXCLUDED.close_ts, EXCLUDED.close_id) > (c.close_ts, c.close_id)
                             THEN EXCLUDED.close_id ELSE c.close_id END,
             close_ts = GREATEST(EXCLUDED.close_ts, c.close_ts),
             high = GREATEST(EXCLUDED.high, c.high), low = LEAST(EXCLUDED.low, c.low),
             volume = c.volume + EXCLUDED.volume, notional = c.notional + EXCLUDED.notional,
             trades = c.trades + EXCLUDED.trades;CREATE TABLE candles_1d (
                     symbol   TEXT COLLATE "C" NOT NULL,
                     bucket   TIMESTAMPTZ      NOT NULL,
                     open     DOUBLE PRECISION NOT NULL,
                     open_ts  TIMESTAMPTZ      NOT NULL,
                     open_id  BIGINT           NOT NULL,
                     high     DOUBLE PRECISION NOT NULL,
                     low      DOUBLE PRECISION NOT NULL,
                     close    DOUBLE PRECISION NOT NULL,
                     close_ts TIMESTAMPTZ      NOT NULL,
                     close_id BIGINT           NOT NULL,
                     volume   DOUBLE PRECISION NOT NULL,
                     notional DOUBLE PRECISION NOT NULL,
                     trades   BIGINT           NOT NULL,
                     PRIMARY KEY (symbol, bucket));
                 INSERT INTO candles_1d AS c
              (symbol, bucket, open, open_ts, open_id, high, low, close, close_ts, close_id,
               volume, notional, trades)
         SELECT symbol, date_bin(INTERVAL '1 day', ts, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS b,
                (array_agg(price ORDER BY ts, tick_id))[1], min(ts),
                (array_agg(tick_id ORDER BY ts, tick_id))[1],
                max(price), min(price),
                (array_agg(price ORDER BY ts DESC, tick_id DESC))[1], max(ts),
                (array_agg(tick_id ORDER BY ts DESC, tick_id DESC))[1],
                sum(size), sum(price * size), count(*)
           FROM ticks GROUP BY symbol, b ORDER BY symbol, b
         ON CONFLICT (symbol, bucket) DO UPDATE SET
             open = CASE WHEN (EXCLUDED.open_ts, EXCLUDED.open_id) < (c.open_ts, c.open_id)
                         THEN EXCLUDED.open ELSE c.open END,
             open_id = CASE WHEN (EXCLUDED.open_ts, EXCLUDED.open_id) < (c.open_ts, c.open_id)
                            THEN EXCLUDED.open_id ELSE c.open_id END,
             open_ts = LEAST(EXCLUDED.open_ts, c.open_ts),
             close = CASE WHEN (EXCLUDED.close_ts, EXCLUDED.close_id) > (c.close_ts, c.close_id)
                          THEN EXCLUDED.close ELSE c.close END,
             close_id = CASE WHEN (EXCLUDED.close_ts, EXCLUDED.close_id) > (c.close_ts, c.close_id)
                             THEN EXCLUDED.close_id ELSE c.close_id END,
             close_ts = GREATEST(EXCLUDED.close_ts, c.close_ts),
             high = GREATEST(EXCLUDED.high, c.high), low = LEAST(EXCLUDED.low, c.low),
             volume = c.volume + EXCLUDED.volume, notional = c.notional + EXCLUDED.notional,
             trades = c.trades + EXCLUDED.trades;
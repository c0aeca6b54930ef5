-- Candle rollups, one table per stored width (1s, 1m, 1h, 1d; 5m and 15m
-- are folded from 1m when read). Kept by the writer in the same transaction
-- as the ticks, from the ticks that were newly inserted only, so a
-- redelivered tick changes nothing and a late one corrects its bucket.
-- open/close remember the (ts, tick_id) of the trade they came from, so an
-- earlier or later trade arriving late replaces them. Times in microseconds.

CREATE TABLE IF NOT EXISTS candles_1s (
    symbol_id INTEGER NOT NULL REFERENCES symbols (id),
    bucket    INTEGER NOT NULL,
    open      REAL    NOT NULL,
    open_ts   INTEGER NOT NULL,
    open_id   INTEGER NOT NULL,
    high      REAL    NOT NULL,
    low       REAL    NOT NULL,
    close     REAL    NOT NULL,
    close_ts  INTEGER NOT NULL,
    close_id  INTEGER NOT NULL,
    volume    REAL    NOT NULL,
    notional  REAL    NOT NULL,
    trades    INTEGER NOT NULL,
    PRIMARY KEY (symbol_id, bucket)
) WITHOUT ROWID;

-- Ticks stored before this migration.
INSERT INTO candles_1s
SELECT g.symbol_id, g.bucket,
       o.price, o.ts, o.tick_id, g.high, g.low, c.price, c.ts, c.tick_id,
       g.volume, g.notional, g.trades
  FROM (SELECT symbol_id, (ts - ((ts % 1000000) + 1000000) % 1000000) AS bucket,
               min(ts) AS first_ts, max(ts) AS last_ts, max(price) AS high, min(price) AS low,
               sum(size) AS volume, sum(price * size) AS notional, count(*) AS trades
          FROM ticks GROUP BY symbol_id, bucket) g
  JOIN ticks o ON o.symbol_id = g.symbol_id AND o.ts = g.first_ts
       AND o.tick_id = (SELECT min(tick_id) FROM ticks
                         WHERE symbol_id = g.symbol_id AND ts = g.first_ts)
  JOIN ticks c ON c.symbol_id = g.symbol_id AND c.ts = g.last_ts
       AND c.tick_id = (SELECT max(tick_id) FROM ticks
                         WHERE symbol_id = g.symbol_id AND ts = g.last_ts);

CREATE TABLE IF NOT EXISTS candles_1m (
    symbol_id INTEGER NOT NULL REFERENCES symbols (id),
    bucket    INTEGER NOT NULL,
    open      REAL    NOT NULL,
    open_ts   INTEGER NOT NULL,
    open_id   INTEGER NOT NULL,
    high      REAL    NOT NULL,
    low       REAL    NOT NULL,
    close     REAL    NOT NULL,
    close_ts  INTEGER NOT NULL,
    close_id  INTEGER NOT NULL,
    volume    REAL    NOT NULL,
    notional  REAL    NOT NULL,
    trades    INTEGER NOT NULL,
    PRIMARY KEY (symbol_id, bucket)
) WITHOUT ROWID;

-- Ticks stored before this migration.
INSERT INTO candles_1m
SELECT g.symbol_id, g.bucket,
       o.price, o.ts, o.tick_id, g.high, g.low, c.price, c.ts, c.tick_id,
       g.volume, g.notional, g.trades
  FROM (SELECT symbol_id, (ts - ((ts % 60000000) + 60000000) % 60000000) AS bucket,
               min(ts) AS first_ts, max(ts) AS last_ts, max(price) AS high, min(price) AS low,
               sum(size) AS volume, sum(price * size) AS notional, count(*) AS trades
          FROM ticks GROUP BY symbol_id, bucket) g
  JOIN ticks o ON o.symbol_id = g.symbol_id AND o.ts = g.first_ts
       AND o.tick_id = (SELECT min(tick_id) FROM ticks
                         WHERE symbol_id = g.symbol_id AND ts = g.first_ts)
  JOIN ticks c ON c.symbol_id = g.symbol_id AND c.ts = g.last_ts
       AND c.tick_id = (SELECT max(tick_id) FROM ticks
                         WHERE symbol_id = g.symbol_id AND ts = g.last_ts);

CREATE TABLE IF NOT EXISTS candles_1h (
    symbol_id INTEGER NOT NULL REFERENCES symbols (id),
    bucket    INTEGER NOT NULL,
    open      REAL    NOT NULL,
    open_ts   INTEGER NOT NULL,
    open_id   INTEGER NOT NULL,
    high      REAL    NOT NULL,
    low       REAL    NOT NULL,
    close     REAL    NOT NULL,
    close_ts  INTEGER NOT NULL,
    close_id  INTEGER NOT NULL,
    volume    REAL    NOT NULL,
    notional  REAL    NOT NULL,
    trades    INTEGER NOT NULL,
    PRIMARY KEY (symbol_id, bucket)
) WITHOUT ROWID;

-- Ticks stored before this migration.
INSERT INTO candles_1h
SELECT g.symbol_id, g.bucket,
       o.price, o.ts, o.tick_id, g.high, g.low, c.price, c.ts, c.tick_id,
       g.volume, g.notional, g.trades
  FROM (SELECT symbol_id, (ts - ((ts % 3600000000) + 3600000000) % 3600000000) AS bucket,
               min(ts) AS first_ts, max(ts) AS last_ts, max(price) AS high, min(price) AS low,
               sum(size) AS volume, sum(price * size) AS notional, count(*) AS trades
          FROM ticks GROUP BY symbol_id, bucket) g
  JOIN ticks o ON o.symbol_id = g.symbol_id AND o.ts = g.first_ts
       AND o.tick_id = (SELECT min(tick_id) FROM ticks
                         WHERE symbol_id = g.symbol_id AND ts = g.first_ts)
  JOIN ticks c ON c.symbol_id = g.symbol_id AND c.ts = g.last_ts
       AND c.tick_id = (SELECT max(tick_id) FROM ticks
                         WHERE symbol_id = g.symbol_id AND ts = g.last_ts);

CREATE TABLE IF NOT EXISTS candles_1d (
    symbol_id INTEGER NOT NULL REFERENCES symbols (id),
    bucket    INTEGER NOT NULL,
    open      REAL    NOT NULL,
    open_ts   INTEGER NOT NULL,
    open_id   INTEGER NOT NULL,
    high      REAL    NOT NULL,
    low       REAL    NOT NULL,
    close     REAL    NOT NULL,
    close_ts  INTEGER NOT NULL,
    close_id  INTEGER NOT NULL,
    volume    REAL    NOT NULL,
    notional  REAL    NOT NULL,
    trades    INTEGER NOT NULL,
    PRIMARY KEY (symbol_id, bucket)
) WITHOUT ROWID;

-- Ticks stored before this migration.
INSERT INTO candles_1d
SELECT g.symbol_id, g.bucket,
       o.price, o.ts, o.tick_id, g.high, g.low, c.price, c.ts, c.tick_id,
       g.volume, g.notional, g.trades
  FROM (SELECT symbol_id, (ts - ((ts % 86400000000) + 86400000000) % 86400000000) AS bucket,
               min(ts) AS first_ts, max(ts) AS last_ts, max(price) AS high, min(price) AS low,
               sum(size) AS volume, sum(price * size) AS notional, count(*) AS trades
          FROM ticks GROUP BY symbol_id, bucket) g
  JOIN ticks o ON o.symbol_id = g.symbol_id AND o.ts = g.first_ts
       AND o.tick_id = (SELECT min(tick_id) FROM ticks
                         WHERE symbol_id = g.symbol_id AND ts = g.first_ts)
  JOIN ticks c ON c.symbol_id = g.symbol_id AND c.ts = g.last_ts
       AND c.tick_id = (SELECT max(tick_id) FROM ticks
                         WHERE symbol_id = g.symbol_id AND ts = g.last_ts);

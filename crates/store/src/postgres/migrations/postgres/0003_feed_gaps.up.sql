CREATE TABLE gaps (
                 provider   TEXT        NOT NULL,
                 symbol     TEXT COLLATE "C" NOT NULL,
                 from_ts    TIMESTAMPTZ NOT NULL,
                 to_ts      TIMESTAMPTZ NOT NULL,
                 connection INTEGER     NOT NULL,
                 reason     TEXT        NOT NULL,
                 PRIMARY KEY (symbol, from_ts, provider));
             CREATE INDEX gaps_by_time ON gaps (from_ts);
-- Symbols get a small integer id, so tick keys compare integers only.
-- first_ts, last_ts and ticks are maintained in the same transaction as the ticks.
CREATE TABLE IF NOT EXISTS symbols (
    id       INTEGER PRIMARY KEY,
    symbol   TEXT    NOT NULL UNIQUE,
    first_ts INTEGER NOT NULL,
    last_ts  INTEGER NOT NULL,
    ticks    INTEGER NOT NULL
);

-- Ticks, keyed so that writing the same tick twice stores it once.
-- Times are microseconds since the Unix epoch (UTC); tick_id is the 64-bit
-- id as a signed integer.
CREATE TABLE IF NOT EXISTS ticks (
    symbol_id   INTEGER NOT NULL REFERENCES symbols (id),
    ts          INTEGER NOT NULL,
    tick_id     INTEGER NOT NULL,
    price       REAL    NOT NULL,
    size        REAL    NOT NULL,
    exchange    TEXT    NOT NULL,
    src_id      TEXT    NOT NULL,
    -- '' when there are none, else a JSON array of strings
    conditions  TEXT    NOT NULL,
    ingested_at INTEGER NOT NULL,
    PRIMARY KEY (symbol_id, ts, tick_id)
) WITHOUT ROWID;

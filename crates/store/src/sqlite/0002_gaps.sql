-- Feed gaps: spans in which a provider may have missed trades of a symbol.
CREATE TABLE gaps (
    provider   TEXT    NOT NULL,
    symbol     TEXT    NOT NULL,
    from_ts    INTEGER NOT NULL,  -- µs since the epoch
    to_ts      INTEGER NOT NULL,
    connection INTEGER NOT NULL,
    reason     TEXT    NOT NULL,
    PRIMARY KEY (symbol, from_ts, provider)
) WITHOUT ROWID;
CREATE INDEX gaps_by_time ON gaps (from_ts);

-- The completeness ledger's counts from ingest: per symbol, minute (its
-- start, microseconds) and provider, the trades received, rejected and
-- duplicated, one row per ingest process (producer). last_seq is the
-- producer's sequence number of the last tally added: a tally delivered
-- again is not added twice.
CREATE TABLE ledger (
    symbol     TEXT    NOT NULL,
    minute     INTEGER NOT NULL,
    provider   TEXT    NOT NULL,
    producer   TEXT    NOT NULL,
    received   INTEGER NOT NULL,
    rejected   INTEGER NOT NULL,
    duplicates INTEGER NOT NULL,
    last_seq   INTEGER NOT NULL,
    PRIMARY KEY (symbol, minute, provider, producer)
) WITHOUT ROWID;

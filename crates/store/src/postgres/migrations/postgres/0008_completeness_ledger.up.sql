-- The completeness ledger's counts from ingest: per symbol, minute (its
-- start) and provider, the trades received, rejected and duplicated, one
-- row per ingest process (producer). last_seq is the producer's sequence
-- number of the last tally added: a tally delivered again is not added
-- twice.
CREATE TABLE ledger (
    symbol     TEXT        NOT NULL,
    minute     TIMESTAMPTZ NOT NULL,
    provider   TEXT        NOT NULL,
    producer   TEXT        NOT NULL,
    received   BIGINT      NOT NULL,
    rejected   BIGINT      NOT NULL,
    duplicates BIGINT      NOT NULL,
    last_seq   BIGINT      NOT NULL,
    PRIMARY KEY (symbol, minute, provider, producer)
);

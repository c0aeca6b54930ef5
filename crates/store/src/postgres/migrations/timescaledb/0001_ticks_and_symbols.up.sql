CREATE TABLE ticks (
        symbol      TEXT COLLATE "C" NOT NULL,
        ts          TIMESTAMPTZ      NOT NULL,
        tick_id     BIGINT           NOT NULL,
        price       DOUBLE PRECISION NOT NULL,
        size        DOUBLE PRECISION NOT NULL,
        exchange    TEXT             NOT NULL,
        src_id      TEXT             NOT NULL,
        conditions  TEXT[]           NOT NULL,
        ingested_at TIMESTAMPTZ      NOT NULL,
        PRIMARY KEY (symbol, ts, tick_id)); CREATE TABLE symbols (
        symbol   TEXT COLLATE "C" PRIMARY KEY,
        first_ts TIMESTAMPTZ NOT NULL,
        last_ts  TIMESTAMPTZ NOT NULL,
        ticks    BIGINT      NOT NULL);
                 SELECT create_hypertable('ticks', 'ts', chunk_time_interval => INTERVAL '{chunk_days} days');
                 ALTER TABLE ticks SET (timescaledb.compress,
                     timescaledb.compress_segmentby = 'symbol',
                     timescaledb.compress_orderby = 'ts DESC, tick_id DESC');
                 SELECT add_compression_policy('ticks', INTERVAL '{compress_after_days} days');{retention_policy}
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
        PRIMARY KEY (symbol, ts, tick_id)) PARTITION BY RANGE (ts); CREATE TABLE symbols (
        symbol   TEXT COLLATE "C" PRIMARY KEY,
        first_ts TIMESTAMPTZ NOT NULL,
        last_ts  TIMESTAMPTZ NOT NULL,
        ticks    BIGINT      NOT NULL);
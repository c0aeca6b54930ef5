-- The venue's own id of a trade, when the venue numbers its trades, and
-- how the trade reached StreamForge: NULL when live, 'backfill' when taken
-- from the venue's history to fill a gap. Nullable without a default, so
-- adding them rewrites nothing.
ALTER TABLE ticks
    ADD COLUMN source_id TEXT,
    ADD COLUMN origin    TEXT;

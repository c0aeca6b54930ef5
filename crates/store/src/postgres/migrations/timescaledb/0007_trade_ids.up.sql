-- The venue's own id of a trade, when the venue numbers its trades, and
-- how the trade reached StreamForge: NULL when live, 'backfill' when taken
-- from the venue's history to fill a gap. Nullable without a default, so
-- adding them rewrites nothing; one column per statement, as a hypertable
-- with compression takes them.
ALTER TABLE ticks ADD COLUMN source_id TEXT;
ALTER TABLE ticks ADD COLUMN origin TEXT;

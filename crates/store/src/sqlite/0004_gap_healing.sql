-- Healing a gap from the venue's trade history: where it stands, the venue
-- trade ids it spans (when the venue numbers trades), how many trades were
-- taken from the history, and why it cannot heal.
ALTER TABLE gaps ADD COLUMN status TEXT NOT NULL DEFAULT 'open';
ALTER TABLE gaps ADD COLUMN first_id INTEGER;
ALTER TABLE gaps ADD COLUMN last_id INTEGER;
ALTER TABLE gaps ADD COLUMN backfilled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE gaps ADD COLUMN detail TEXT NOT NULL DEFAULT '';
CREATE INDEX gaps_unhealed ON gaps (provider, status);

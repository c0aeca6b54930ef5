-- Partitions are made and dropped through these functions, which run with
-- the rights of the schema owner: a writer role without DDL rights can
-- store ticks of a new day (and persist can apply retention) while it
-- cannot drop or alter a table itself.
CREATE FUNCTION streamforge_add_partition(day BIGINT) RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    start TIMESTAMPTZ := to_timestamp(day * 86400);
BEGIN
    EXECUTE format(
        'CREATE TABLE IF NOT EXISTS public.%I PARTITION OF public.ticks FOR VALUES FROM (%L) TO (%L)',
        'ticks_p' || to_char(start AT TIME ZONE 'UTC', 'YYYYMMDD'),
        start, start + INTERVAL '1 day');
END $$;

CREATE FUNCTION streamforge_drop_partitions_before(day BIGINT) RETURNS SETOF TEXT
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    keep_from TEXT := 'ticks_p' || to_char(to_timestamp(day * 86400) AT TIME ZONE 'UTC', 'YYYYMMDD');
    part TEXT;
BEGIN
    FOR part IN
        SELECT c.relname FROM pg_inherits i
          JOIN pg_class c ON c.oid = i.inhrelid
          JOIN pg_class p ON p.oid = i.inhparent
         WHERE p.relname = 'ticks' AND c.relname LIKE 'ticks_p%'
           AND length(c.relname) = length(keep_from) AND c.relname < keep_from
         ORDER BY c.relname
    LOOP
        EXECUTE format('DROP TABLE IF EXISTS public.%I', part);
        RETURN NEXT part;
    END LOOP;
END $$;

REVOKE ALL ON FUNCTION streamforge_add_partition(BIGINT) FROM PUBLIC;
REVOKE ALL ON FUNCTION streamforge_drop_partitions_before(BIGINT) FROM PUBLIC;

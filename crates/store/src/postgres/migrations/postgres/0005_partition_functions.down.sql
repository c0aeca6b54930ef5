DROP FUNCTION IF EXISTS streamforge_drop_partitions_before(BIGINT);
DROP FUNCTION IF EXISTS streamforge_add_partition(BIGINT);

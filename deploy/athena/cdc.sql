-- Generated from playlake_schemas::Table by playlake_lake::athena::athena_ddl; do not edit.
-- Regenerate: PLAYLAKE_UPDATE_DDL=1 cargo test -p playlake-lake --test athena
-- Replace s3://YOUR-BUCKET/playlake with your lake's s3://bucket/prefix.
-- playlake lake table `cdc`: Parquet under s3://YOUR-BUCKET/playlake/cdc/, partitioned by table, dt, hour.
-- Partition projection: no MSCK REPAIR TABLE or crawler is needed. dt is the day in the processor's time zone.
-- table uses injected projection: every query MUST filter on it with = or IN (for example WHERE "table" = 'value'), or Athena rejects the query.
-- Values are Hive-escaped in paths (/ = % .. and control characters as %XX, null as __HIVE_DEFAULT_PARTITION__); filter on the escaped form for such values.
CREATE EXTERNAL TABLE IF NOT EXISTS `cdc` (
  `event_id` string,
  `event_name` string,
  `sequence_number` string,
  `shard_id` string,
  `approximate_creation_time` timestamp,
  `keys` string,
  `new_image` string,
  `old_image` string,
  `ttl_expired` boolean
)
PARTITIONED BY (
  `table` string,
  `dt` string,
  `hour` string
)
STORED AS PARQUET
LOCATION 's3://YOUR-BUCKET/playlake/cdc/'
TBLPROPERTIES (
  'projection.enabled'='true',
  'projection.table.type'='injected',
  'projection.dt.type'='date',
  'projection.dt.format'='yyyy-MM-dd',
  'projection.dt.range'='2020-01-01,NOW+1DAYS',
  'projection.dt.interval'='1',
  'projection.dt.interval.unit'='DAYS',
  'projection.hour.type'='integer',
  'projection.hour.range'='0,23',
  'projection.hour.digits'='2',
  'storage.location.template'='s3://YOUR-BUCKET/playlake/cdc/table=${table}/dt=${dt}/hour=${hour}/'
);

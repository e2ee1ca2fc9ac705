-- Generated from playlake_schemas::Table by playlake_lake::athena::athena_ddl; do not edit.
-- Regenerate: PLAYLAKE_UPDATE_DDL=1 cargo test -p playlake-lake --test athena
-- Replace s3://YOUR-BUCKET/playlake with your lake's s3://bucket/prefix.
-- playlake lake table `viewers`: Parquet under s3://YOUR-BUCKET/playlake/viewers/, partitioned by dt, stream_id.
-- Partition projection: no MSCK REPAIR TABLE or crawler is needed. dt is the day in the processor's time zone.
-- stream_id uses injected projection: every query MUST filter on it with = or IN (for example WHERE "stream_id" = 'value'), or Athena rejects the query.
-- Values are Hive-escaped in paths (/ = % .. and control characters as %XX, null as __HIVE_DEFAULT_PARTITION__); filter on the escaped form for such values.
CREATE EXTERNAL TABLE IF NOT EXISTS `viewers` (
  `window_start` timestamp,
  `window_end` timestamp,
  `viewers` bigint
)
PARTITIONED BY (
  `dt` string,
  `stream_id` string
)
STORED AS PARQUET
LOCATION 's3://YOUR-BUCKET/playlake/viewers/'
TBLPROPERTIES (
  'projection.enabled'='true',
  'projection.dt.type'='date',
  'projection.dt.format'='yyyy-MM-dd',
  'projection.dt.range'='2020-01-01,NOW+1DAYS',
  'projection.dt.interval'='1',
  'projection.dt.interval.unit'='DAYS',
  'projection.stream_id.type'='injected',
  'storage.location.template'='s3://YOUR-BUCKET/playlake/viewers/dt=${dt}/stream_id=${stream_id}/'
);

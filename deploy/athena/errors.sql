-- Generated from playlake_schemas::Table by playlake_lake::athena::athena_ddl; do not edit.
-- Regenerate: PLAYLAKE_UPDATE_DDL=1 cargo test -p playlake-lake --test athena
-- Replace s3://YOUR-BUCKET/playlake with your lake's s3://bucket/prefix.
-- playlake lake table `errors`: Parquet under s3://YOUR-BUCKET/playlake/errors/, partitioned by dt.
-- Partition projection: no MSCK REPAIR TABLE or crawler is needed. dt is the day in the processor's time zone.
CREATE EXTERNAL TABLE IF NOT EXISTS `errors` (
  `source_topic` string,
  `source_partition` bigint,
  `source_offset` bigint,
  `reason` string,
  `raw` string
)
PARTITIONED BY (
  `dt` string
)
STORED AS PARQUET
LOCATION 's3://YOUR-BUCKET/playlake/errors/'
TBLPROPERTIES (
  'projection.enabled'='true',
  'projection.dt.type'='date',
  'projection.dt.format'='yyyy-MM-dd',
  'projection.dt.range'='2020-01-01,NOW+1DAYS',
  'projection.dt.interval'='1',
  'projection.dt.interval.unit'='DAYS',
  'storage.location.template'='s3://YOUR-BUCKET/playlake/errors/dt=${dt}/'
);

-- Generated from playlake_schemas::Table by playlake_lake::athena::athena_ddl; do not edit.
-- Regenerate: PLAYLAKE_UPDATE_DDL=1 cargo test -p playlake-lake --test athena
-- Replace s3://YOUR-BUCKET/playlake with your lake's s3://bucket/prefix.
-- playlake lake table `events`: Parquet under s3://YOUR-BUCKET/playlake/events/, partitioned by dt, hour.
-- Partition projection: no MSCK REPAIR TABLE or crawler is needed. dt is the day in the processor's time zone.
CREATE EXTERNAL TABLE IF NOT EXISTS `events` (
  `event_id` string,
  `uuid` string,
  `stream_id` string,
  `user_id` string,
  `event_type` string,
  `event_time` timestamp,
  `position_start` double,
  `position_end` double
)
PARTITIONED BY (
  `dt` string,
  `hour` string
)
STORED AS PARQUET
LOCATION 's3://YOUR-BUCKET/playlake/events/'
TBLPROPERTIES (
  'projection.enabled'='true',
  'projection.dt.type'='date',
  'projection.dt.format'='yyyy-MM-dd',
  'projection.dt.range'='2020-01-01,NOW+1DAYS',
  'projection.dt.interval'='1',
  'projection.dt.interval.unit'='DAYS',
  'projection.hour.type'='integer',
  'projection.hour.range'='0,23',
  'projection.hour.digits'='2',
  'storage.location.template'='s3://YOUR-BUCKET/playlake/events/dt=${dt}/hour=${hour}/'
);

//! Arrow schemas of the lake's tables (SPEC section 5).
//!
//! Data flow: the sink turns the JSON rows it reads from the result topics into Arrow
//! record batches with [`Table::arrow_schema`] and writes them as Parquet under
//! `<table>/<partition columns>/`; `playlake athena-ddl` and `playlake query` read the
//! same schemas and [`Table::partition_columns`] to declare the tables. Partition
//! columns live in the path only, never in the files, so they are not in these
//! schemas. Types: timestamps are `Timestamp(Millisecond, "UTC")` (Parquet INT64
//! TIMESTAMP(MILLIS, UTC)), counts `Int64`, seconds and positions `Float64`, text
//! `Utf8`, and the cdc `ttl_expired` flag `Boolean`.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use thiserror::Error;

/// A table of the lake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Playback sessions (`playback.sessions`).
    Sessions,
    /// Concurrent viewers per window (`playback.viewers`).
    Viewers,
    /// Daily statistics per stream (`playback.daily`).
    Daily,
    /// Raw valid playback events (`playback.events`).
    Events,
    /// Raw DynamoDB changes (`playback.cdc.<table>`).
    Cdc,
    /// The DLQ archive (`playback.dlq`).
    Errors,
}

/// A table name that is not one of the lake's tables.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown table {0:?}: expected one of sessions, viewers, daily, events, cdc, errors")]
pub struct UnknownTable(pub String);

/// The type of every timestamp column.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

impl Table {
    /// Every table, in SPEC order.
    pub const ALL: [Table; 6] = [
        Table::Sessions,
        Table::Viewers,
        Table::Daily,
        Table::Events,
        Table::Cdc,
        Table::Errors,
    ];

    /// The table's name: its top-level directory in the lake and its Athena name.
    pub const fn name(self) -> &'static str {
        match self {
            Table::Sessions => "sessions",
            Table::Viewers => "viewers",
            Table::Daily => "daily",
            Table::Events => "events",
            Table::Cdc => "cdc",
            Table::Errors => "errors",
        }
    }

    /// The topic the sink reads for this table, after `<prefix>.`: `sessions`,
    /// `viewers`, `daily`, `events`, `dlq`, and for cdc the topic prefix `cdc.` to
    /// which the DynamoDB table name is appended.
    pub const fn topic_suffix(self) -> &'static str {
        match self {
            Table::Sessions => "sessions",
            Table::Viewers => "viewers",
            Table::Daily => "daily",
            Table::Events => "events",
            Table::Cdc => "cdc.",
            Table::Errors => "dlq",
        }
    }

    /// Hive partition columns, outermost first (`dt` is `YYYY-MM-DD`, `hour` is `HH`,
    /// `table` is the DynamoDB table). They are strings in the path, not in the files.
    pub const fn partition_columns(self) -> &'static [&'static str] {
        match self {
            Table::Sessions | Table::Viewers => &["dt", "stream_id"],
            Table::Daily | Table::Errors => &["dt"],
            Table::Events => &["dt", "hour"],
            Table::Cdc => &["table", "dt", "hour"],
        }
    }

    /// Stored columns whose values are (nearly) all distinct within a file: ids,
    /// times to the millisecond, positions and durations, JSON images, offsets. The
    /// writer leaves them out of dictionary encoding: a dictionary of distinct
    /// values is the values again plus an index per row, and interning every value
    /// (hash, compare) cost 8% of the encoder's time on the events table, whose
    /// files came out 1.7% smaller without it (the dictionary of such a column fills
    /// its page limit and falls back to plain encoding anyway).
    pub const fn distinct_columns(self) -> &'static [&'static str] {
        match self {
            Table::Sessions => &[
                "session_start",
                "session_end",
                "position_start",
                "position_end",
                "watched_seconds",
            ],
            Table::Viewers => &["window_start", "window_end"],
            Table::Daily => &[],
            Table::Events => &["event_id", "event_time", "position_start", "position_end"],
            Table::Cdc => &[
                "event_id",
                "sequence_number",
                "approximate_creation_time",
                "new_image",
                "old_image",
            ],
            Table::Errors => &["source_offset", "raw"],
        }
    }

    /// The columns stored in the table's Parquet files, in order.
    pub fn arrow_schema(self) -> SchemaRef {
        let ts = timestamp_type;
        let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
        let int = |name: &str| Field::new(name, DataType::Int64, false);
        let float = |name: &str| Field::new(name, DataType::Float64, false);
        let fields = match self {
            Table::Sessions => vec![
                text("uuid", false),
                text("user_id", true),
                Field::new("session_start", ts(), false),
                Field::new("session_end", ts(), false),
                float("position_start"),
                float("position_end"),
                float("watched_seconds"),
                int("event_count"),
                int("seek_count"),
                text("ended_by", false),
            ],
            Table::Viewers => vec![
                Field::new("window_start", ts(), false),
                Field::new("window_end", ts(), false),
                int("viewers"),
            ],
            Table::Daily => vec![
                text("stream_id", false),
                int("views"),
                int("unique_users"),
                float("watched_seconds"),
                int("peak_viewers"),
            ],
            Table::Events => vec![
                text("event_id", false),
                text("uuid", false),
                text("stream_id", false),
                text("user_id", true),
                text("event_type", false),
                Field::new("event_time", ts(), false),
                float("position_start"),
                float("position_end"),
            ],
            Table::Cdc => vec![
                text("event_id", false),
                text("event_name", false),
                text("sequence_number", true),
                text("shard_id", true),
                Field::new("approximate_creation_time", ts(), false),
                text("keys", false),
                text("new_image", true),
                text("old_image", true),
                Field::new("ttl_expired", DataType::Boolean, false),
            ],
            Table::Errors => vec![
                text("source_topic", false),
                int("source_partition"),
                int("source_offset"),
                text("reason", false),
                text("raw", false),
            ],
        };
        Arc::new(Schema::new(fields))
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Table {
    type Err = UnknownTable;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Table::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| UnknownTable(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(table: Table) -> Vec<String> {
        table
            .arrow_schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    #[test]
    fn distinct_columns_are_stored_columns() {
        for table in Table::ALL {
            let stored = columns(table);
            for column in table.distinct_columns() {
                assert!(stored.iter().any(|c| c == column), "{table}: {column}");
            }
        }
    }

    #[test]
    fn columns_match_the_spec_in_order() {
        assert_eq!(
            columns(Table::Sessions),
            [
                "uuid",
                "user_id",
                "session_start",
                "session_end",
                "position_start",
                "position_end",
                "watched_seconds",
                "event_count",
                "seek_count",
                "ended_by"
            ]
        );
        assert_eq!(
            columns(Table::Viewers),
            ["window_start", "window_end", "viewers"]
        );
        assert_eq!(
            columns(Table::Daily),
            [
                "stream_id",
                "views",
                "unique_users",
                "watched_seconds",
                "peak_viewers"
            ]
        );
        assert_eq!(
            columns(Table::Events),
            [
                "event_id",
                "uuid",
                "stream_id",
                "user_id",
                "event_type",
                "event_time",
                "position_start",
                "position_end"
            ]
        );
        assert_eq!(
            columns(Table::Cdc),
            [
                "event_id",
                "event_name",
                "sequence_number",
                "shard_id",
                "approximate_creation_time",
                "keys",
                "new_image",
                "old_image",
                "ttl_expired"
            ]
        );
        assert_eq!(
            columns(Table::Errors),
            [
                "source_topic",
                "source_partition",
                "source_offset",
                "reason",
                "raw"
            ]
        );
    }

    #[test]
    fn partition_columns_are_not_stored() {
        for table in Table::ALL {
            let schema = table.arrow_schema();
            for column in table.partition_columns() {
                assert!(schema.field_with_name(column).is_err(), "{table}.{column}");
            }
        }
        assert_eq!(Table::Cdc.partition_columns(), ["table", "dt", "hour"]);
        assert_eq!(Table::Sessions.partition_columns(), ["dt", "stream_id"]);
    }

    #[test]
    fn types_follow_the_rules() {
        for table in Table::ALL {
            for field in table.arrow_schema().fields() {
                let name = field.name().as_str();
                let want = match name {
                    "session_start"
                    | "session_end"
                    | "window_start"
                    | "window_end"
                    | "event_time"
                    | "approximate_creation_time" => timestamp_type(),
                    "event_count" | "seek_count" | "viewers" | "views" | "unique_users"
                    | "peak_viewers" | "source_partition" | "source_offset" => DataType::Int64,
                    "position_start" | "position_end" | "watched_seconds" => DataType::Float64,
                    "ttl_expired" => DataType::Boolean,
                    _ => DataType::Utf8,
                };
                assert_eq!(field.data_type(), &want, "{table}.{name}");
                let nullable = matches!(
                    name,
                    "user_id" | "sequence_number" | "shard_id" | "new_image" | "old_image"
                );
                assert_eq!(field.is_nullable(), nullable, "{table}.{name}");
            }
        }
        assert_eq!(
            timestamp_type(),
            DataType::Timestamp(TimeUnit::Millisecond, Some(Arc::from("UTC")))
        );
    }

    #[test]
    fn names_parse_back() {
        for table in Table::ALL {
            assert_eq!(table.name().parse::<Table>(), Ok(table));
            assert_eq!(table.to_string(), table.name());
        }
        assert_eq!("nope".parse::<Table>(), Err(UnknownTable("nope".into())));
        assert_eq!(Table::Errors.topic_suffix(), "dlq");
    }
}

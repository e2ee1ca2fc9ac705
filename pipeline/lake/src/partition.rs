//! Where a row lives in the lake: its table's Hive partition directory (SPEC
//! section 5).
//!
//! Data flow: the sink reads a row, asks [`crate::rows::LakeRow::partition`] for its
//! [`PartitionPath`] (built here from the row's time and ids), groups rows by that
//! path, and the writer pool keeps one Parquet file open per path. `dt` and `hour`
//! are computed in the configured time zone ([`PartitionConfig::time_zone`], UTC by
//! default, the same setting as the processor's day boundaries). Values are escaped
//! with [`crate::hive::escape`]; [`PartitionPath::parse`] reads a relative directory
//! back into the original values.

use std::fmt;
use std::sync::Arc;

use chrono::{Datelike, NaiveDate, TimeZone, Timelike};
use chrono_tz::Tz;
use playlake_schemas::{Table, TimestampMs};

use crate::error::{LakeError, Result};
use crate::hive;

/// How rows are mapped to partition directories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionConfig {
    /// Time zone of the `dt` and `hour` partition values (UTC by default).
    pub time_zone: Tz,
}

impl Default for PartitionConfig {
    fn default() -> Self {
        Self { time_zone: Tz::UTC }
    }
}

impl PartitionConfig {
    /// The calendar day and hour of `ts` in the configured zone.
    pub fn day_hour(&self, table: Table, ts: TimestampMs) -> Result<(NaiveDate, u32)> {
        if self.time_zone == Tz::UTC {
            // The default zone needs no zone database: asking chrono-tz for UTC's
            // offset was most of the cost of placing a row (about 80 ns a row, 3% of
            // the sink benchmark's CPU time).
            if let Some(day_hour) = utc_day_hour(ts.0) {
                return Ok(day_hour);
            }
        }
        self.zoned_day_hour(table, ts)
    }

    /// [`Self::day_hour`] through the zone database (any zone; out-of-range errors).
    fn zoned_day_hour(&self, table: Table, ts: TimestampMs) -> Result<(NaiveDate, u32)> {
        let utc = ts
            .to_datetime()
            .map_err(|source| LakeError::TimestampOutOfRange {
                table: table.name(),
                source,
            })?;
        let local = self.time_zone.from_utc_datetime(&utc.naive_utc());
        Ok((local.date_naive(), local.hour()))
    }
}

const MS_PER_HOUR: i64 = 3_600_000;
const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;
/// 1970-01-01 counted in days from 0001-01-01 (day 1 of the common era).
const UNIX_EPOCH_FROM_CE_DAYS: i64 = 719_163;

/// The UTC day and hour of epoch milliseconds `ms`; `None` beyond chrono's dates.
fn utc_day_hour(ms: i64) -> Option<(NaiveDate, u32)> {
    let days = ms.div_euclid(MS_PER_DAY);
    // In 0..24: the remainder is in 0..MS_PER_DAY.
    let hour = (ms.rem_euclid(MS_PER_DAY) / MS_PER_HOUR) as u32;
    let from_ce = i32::try_from(days.checked_add(UNIX_EPOCH_FROM_CE_DAYS)?).ok()?;
    Some((NaiveDate::from_num_days_from_ce_opt(from_ce)?, hour))
}

/// The partition directory of one table, relative to the lake root: the table name
/// followed by one escaped `column=value` segment per partition column.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionPath {
    table: Table,
    /// `table/col=value/...`, escaped, no trailing slash. Shared: the sink hands the
    /// same directory to every row of it ([`PathMemo`]).
    rendered: Arc<str>,
    /// Bytes of the longest `/`-separated name in `rendered` (a function of it, so
    /// the derived comparisons are unchanged): the sink checks it against the local
    /// file system's limit for every row, and splitting the path per row cost about
    /// 1% of its time.
    longest_name: usize,
}

impl PartitionPath {
    /// Builds the path of `table` from its partition values, given in the order of
    /// [`Table::partition_columns`]. A `None` value is the Hive default partition.
    pub fn new(table: Table, values: &[Option<&str>]) -> Result<Self> {
        let columns = table.partition_columns();
        if columns.len() != values.len() {
            return Err(LakeError::config(
                "partition values",
                format!(
                    "table {table} has partition columns {columns:?}, got {} values",
                    values.len()
                ),
            ));
        }
        let mut rendered = String::from(table.name());
        for (column, value) in columns.iter().zip(values) {
            rendered.push('/');
            rendered.push_str(column);
            rendered.push('=');
            rendered.push_str(&hive::escape(*value));
        }
        let longest_name = rendered.split('/').map(str::len).max().unwrap_or(0);
        Ok(Self {
            table,
            rendered: rendered.into(),
            longest_name,
        })
    }

    /// `sessions/dt=YYYY-MM-DD/stream_id=S` or `viewers/...`: day of `ts` and a stream.
    pub fn day_stream(
        table: Table,
        config: &PartitionConfig,
        ts: TimestampMs,
        stream_id: &str,
    ) -> Result<Self> {
        PathParts::day_stream(table, config, ts, stream_id)?.render()
    }

    /// `<table>/dt=YYYY-MM-DD` for a day already computed (daily stats).
    pub fn day(table: Table, day: NaiveDate) -> Result<Self> {
        PathParts::day(table, day).render()
    }

    /// `<table>/dt=YYYY-MM-DD` for the day of `ts` (errors).
    pub fn day_of(table: Table, config: &PartitionConfig, ts: TimestampMs) -> Result<Self> {
        PathParts::day_of(table, config, ts)?.render()
    }

    /// `events/dt=YYYY-MM-DD/hour=HH`, or with `prefix` (the cdc source table)
    /// `cdc/table=T/dt=YYYY-MM-DD/hour=HH`.
    pub fn day_hour(
        table: Table,
        config: &PartitionConfig,
        ts: TimestampMs,
        prefix: Option<&str>,
    ) -> Result<Self> {
        PathParts::day_hour(table, config, ts, prefix)?.render()
    }

    /// Reads a relative directory (`sessions/dt=.../stream_id=...`) back into its
    /// table and unescaped values; `None` when it is not one of the lake's layouts.
    pub fn parse(relative: &str) -> Option<(Table, Vec<Option<String>>)> {
        let mut segments = relative.trim_end_matches('/').split('/');
        let table: Table = segments.next()?.parse().ok()?;
        let mut values = Vec::new();
        for column in table.partition_columns() {
            let segment = segments.next()?;
            let value = segment.strip_prefix(column)?.strip_prefix('=')?;
            values.push(hive::unescape(value));
        }
        if segments.next().is_some() {
            return None;
        }
        Some((table, values))
    }

    /// Rebuilds a path from its rendered relative directory (as stored in a
    /// manifest); `None` when it is not one of the lake's layouts.
    pub fn from_relative(relative: &str) -> Option<Self> {
        let (table, values) = Self::parse(relative)?;
        let values: Vec<Option<&str>> = values.iter().map(Option::as_deref).collect();
        let path = Self::new(table, &values).ok()?;
        (&*path.rendered == relative).then_some(path)
    }

    /// The table this directory belongs to.
    pub fn table(&self) -> Table {
        self.table
    }

    /// The escaped relative directory, without a trailing slash.
    pub fn as_str(&self) -> &str {
        &self.rendered
    }

    /// Bytes of the longest directory name in [`PartitionPath::as_str`] (what a
    /// file system's NAME_MAX limits).
    pub fn longest_name_bytes(&self) -> usize {
        self.longest_name
    }
}

impl fmt::Display for PartitionPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rendered)
    }
}

/// What a row's directory is made of, before it is rendered: computed per row
/// without allocating, so that [`PathMemo`] can hand out the directory of the rows
/// before it instead of escaping and formatting the same text again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathParts<'a> {
    /// The table.
    pub table: Table,
    /// The `dt` value.
    pub day: NaiveDate,
    /// The `hour` value, for tables partitioned by hour.
    pub hour: Option<u32>,
    /// The table's text partition value: the stream id (sessions, viewers) or the
    /// source table (cdc).
    pub text: Option<&'a str>,
}

impl<'a> PathParts<'a> {
    /// See [`PartitionPath::day_stream`].
    pub fn day_stream(
        table: Table,
        config: &PartitionConfig,
        ts: TimestampMs,
        stream_id: &'a str,
    ) -> Result<Self> {
        let (day, _) = config.day_hour(table, ts)?;
        Ok(Self {
            table,
            day,
            hour: None,
            text: Some(stream_id),
        })
    }

    /// See [`PartitionPath::day`].
    pub fn day(table: Table, day: NaiveDate) -> Self {
        Self {
            table,
            day,
            hour: None,
            text: None,
        }
    }

    /// See [`PartitionPath::day_of`].
    pub fn day_of(table: Table, config: &PartitionConfig, ts: TimestampMs) -> Result<Self> {
        let (day, _) = config.day_hour(table, ts)?;
        Ok(Self::day(table, day))
    }

    /// See [`PartitionPath::day_hour`].
    pub fn day_hour(
        table: Table,
        config: &PartitionConfig,
        ts: TimestampMs,
        prefix: Option<&'a str>,
    ) -> Result<Self> {
        let (day, hour) = config.day_hour(table, ts)?;
        Ok(Self {
            table,
            day,
            hour: Some(hour),
            text: prefix,
        })
    }

    /// The escaped directory, the values in the order of the table's partition
    /// columns (`dt`, `hour`, and the text value for any other column).
    pub fn render(&self) -> Result<PartitionPath> {
        let day = day_text(self.day);
        let hour = self.hour.map(|h| format!("{h:02}"));
        let values: Vec<Option<&str>> = self
            .table
            .partition_columns()
            .iter()
            .map(|column| match *column {
                "dt" => Some(day.as_str()),
                "hour" => hour.as_deref(),
                _ => self.text,
            })
            .collect();
        PartitionPath::new(self.table, &values)
    }
}

/// How many directories [`PathMemo`] remembers: a poll's rows mostly fall into a
/// few (one hour of events, the streams of a few busy sessions).
const MEMO_PATHS: usize = 16;

/// [`PathParts`] kept by [`PathMemo`].
#[derive(Debug)]
struct OwnedParts {
    table: Table,
    day: NaiveDate,
    hour: Option<u32>,
    text: Option<Box<str>>,
}

impl OwnedParts {
    fn is(&self, parts: &PathParts<'_>) -> bool {
        self.table == parts.table
            && self.day == parts.day
            && self.hour == parts.hour
            && self.text.as_deref() == parts.text
    }
}

/// The directories of the last rows, so that a row whose [`PathParts`] equal a
/// recent row's shares that row's [`PartitionPath`] (a reference count, not a
/// rendered string per row).
#[derive(Debug, Default)]
pub struct PathMemo {
    recent: Vec<(OwnedParts, PartitionPath)>,
    /// The slot the next new directory replaces once `recent` is full.
    next: usize,
}

impl PathMemo {
    /// The directory of `parts`: a recent one when equal, else rendered now.
    pub fn path(&mut self, parts: PathParts<'_>) -> Result<PartitionPath> {
        if let Some((_, path)) = self.recent.iter().find(|(seen, _)| seen.is(&parts)) {
            return Ok(path.clone());
        }
        let path = parts.render()?;
        let entry = (
            OwnedParts {
                table: parts.table,
                day: parts.day,
                hour: parts.hour,
                text: parts.text.map(Box::from),
            },
            path.clone(),
        );
        if self.recent.len() < MEMO_PATHS {
            self.recent.push(entry);
        } else {
            self.recent[self.next] = entry;
            self.next = (self.next + 1) % MEMO_PATHS;
        }
        Ok(path)
    }
}

/// `YYYY-MM-DD`, as chrono's `%Y-%m-%d` writes it (without parsing a format string
/// per row: this runs for every row the sink writes).
fn day_text(day: NaiveDate) -> String {
    let year = day.year();
    if (0..=9999).contains(&year) {
        format!("{year:04}-{:02}-{:02}", day.month(), day.day())
    } else {
        day.format("%Y-%m-%d").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JUNE_1_2330_UTC: TimestampMs = TimestampMs(1_748_820_600_000);

    /// The UTC shortcut gives what the zone database gives, out-of-range included.
    fn utc_shortcut_agrees(ms: i64) {
        let utc = PartitionConfig::default();
        let shortcut = utc_day_hour(ms);
        let zoned = utc.zoned_day_hour(Table::Events, TimestampMs(ms)).ok();
        assert_eq!(shortcut, zoned, "{ms}");
        assert_eq!(
            utc.day_hour(Table::Events, TimestampMs(ms)).ok(),
            zoned,
            "{ms}"
        );
    }

    #[test]
    fn the_utc_shortcut_agrees_with_the_zone_database_at_the_edges() {
        let edges = [
            0,
            -1,
            1,
            MS_PER_HOUR - 1,
            MS_PER_HOUR,
            MS_PER_DAY - 1,
            MS_PER_DAY,
            -MS_PER_DAY,
            -MS_PER_DAY - 1,
            JUNE_1_2330_UTC.0,
            i64::MIN,
            i64::MAX,
        ];
        for ms in edges {
            utc_shortcut_agrees(ms);
        }
        // chrono's first and last instants, and one millisecond beyond each.
        let first = NaiveDate::MIN
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_millis());
        let last = NaiveDate::MAX
            .and_hms_milli_opt(23, 59, 59, 999)
            .map(|t| t.and_utc().timestamp_millis());
        for ms in [first.unwrap(), last.unwrap()] {
            utc_shortcut_agrees(ms);
            utc_shortcut_agrees(ms - 1);
            utc_shortcut_agrees(ms + 1);
        }
        assert!(utc_day_hour(first.unwrap() - 1).is_none());
        assert!(utc_day_hour(last.unwrap() + 1).is_none());
    }

    proptest::proptest! {
        #[test]
        fn the_utc_shortcut_agrees_with_the_zone_database(
            ms in proptest::prop_oneof![
                proptest::num::i64::ANY,
                -9_000_000_000_000_000i64..9_000_000_000_000_000,
                1_600_000_000_000i64..1_900_000_000_000,
            ]
        ) {
            utc_shortcut_agrees(ms);
        }
    }

    #[test]
    fn memo_hands_out_the_directory_each_row_would_get() {
        let utc = PartitionConfig::default();
        let mut memo = PathMemo::default();
        let mut seen = std::collections::BTreeSet::new();
        for round in 0..3 {
            for i in 0..(MEMO_PATHS as i64 + 7) {
                let ts = TimestampMs(JUNE_1_2330_UTC.0 + (i % 3) * 3_600_000 + round);
                let stream = format!("s{}", i % 11);
                for parts in [
                    PathParts::day_stream(Table::Sessions, &utc, ts, &stream).unwrap(),
                    PathParts::day_stream(Table::Viewers, &utc, ts, &stream).unwrap(),
                    PathParts::day_hour(Table::Events, &utc, ts, None).unwrap(),
                    PathParts::day_hour(Table::Cdc, &utc, ts, Some(&stream)).unwrap(),
                ] {
                    let path = memo.path(parts).unwrap();
                    assert_eq!(path, parts.render().unwrap(), "{parts:?}");
                    seen.insert(path);
                }
            }
        }
        // More directories than the memo holds: entries were replaced on the way.
        assert!(seen.len() > 3 * MEMO_PATHS, "{}", seen.len());
    }

    #[test]
    fn layouts_follow_the_spec() {
        let utc = PartitionConfig::default();
        let p = PartitionPath::day_stream(Table::Sessions, &utc, JUNE_1_2330_UTC, "s1").unwrap();
        assert_eq!(p.as_str(), "sessions/dt=2025-06-01/stream_id=s1");
        let p = PartitionPath::day_stream(Table::Viewers, &utc, JUNE_1_2330_UTC, "a/b").unwrap();
        assert_eq!(p.as_str(), "viewers/dt=2025-06-01/stream_id=a%2Fb");
        let day = NaiveDate::from_ymd_opt(2025, 6, 1).unwrap();
        assert_eq!(
            PartitionPath::day(Table::Daily, day).unwrap().as_str(),
            "daily/dt=2025-06-01"
        );
        let p = PartitionPath::day_hour(Table::Events, &utc, JUNE_1_2330_UTC, None).unwrap();
        assert_eq!(p.as_str(), "events/dt=2025-06-01/hour=23");
        let p =
            PartitionPath::day_hour(Table::Cdc, &utc, JUNE_1_2330_UTC, Some("play:back")).unwrap();
        assert_eq!(p.as_str(), "cdc/table=play%3Aback/dt=2025-06-01/hour=23");
        let p = PartitionPath::day_of(Table::Errors, &utc, JUNE_1_2330_UTC).unwrap();
        assert_eq!(p.as_str(), "errors/dt=2025-06-01");
    }

    #[test]
    fn the_longest_name_is_that_of_the_escaped_path() {
        let utc = PartitionConfig::default();
        let long = "s".repeat(300);
        for (stream, want) in [
            ("s1", "stream_id=s1".len()),
            // Escaped: each '/' takes 3 bytes on disk.
            ("a/b/c", "stream_id=a%2Fb%2Fc".len()),
            (long.as_str(), "stream_id=".len() + 300),
            ("", "stream_id=".len() + crate::HIVE_DEFAULT_PARTITION.len()),
        ] {
            let p =
                PartitionPath::day_stream(Table::Sessions, &utc, JUNE_1_2330_UTC, stream).unwrap();
            let by_split = p.as_str().split('/').map(str::len).max().unwrap();
            assert_eq!(p.longest_name_bytes(), by_split, "{p}");
            assert_eq!(
                p.longest_name_bytes(),
                want.max("dt=2025-06-01".len()),
                "{p}"
            );
        }
        let p =
            PartitionPath::day(Table::Daily, NaiveDate::from_ymd_opt(2025, 6, 1).unwrap()).unwrap();
        assert_eq!(p.longest_name_bytes(), "dt=2025-06-01".len());
    }

    #[test]
    fn day_text_matches_chrono_in_every_year_range() {
        for (y, m, d) in [
            (2025, 6, 1),
            (1, 1, 1),
            (999, 12, 31),
            (9999, 12, 31),
            (10000, 1, 1),
            (-1, 3, 4),
        ] {
            let day = NaiveDate::from_ymd_opt(y, m, d).unwrap();
            assert_eq!(day_text(day), day.format("%Y-%m-%d").to_string());
        }
    }

    #[test]
    fn time_zone_moves_dt_and_hour() {
        let berlin = PartitionConfig {
            time_zone: chrono_tz::Europe::Berlin,
        };
        let p = PartitionPath::day_hour(Table::Events, &berlin, JUNE_1_2330_UTC, None).unwrap();
        assert_eq!(p.as_str(), "events/dt=2025-06-02/hour=01");
        let la = PartitionConfig {
            time_zone: chrono_tz::America::Los_Angeles,
        };
        let p =
            PartitionPath::day_stream(Table::Sessions, &la, TimestampMs(1_748_736_000_000), "s")
                .unwrap();
        assert_eq!(p.as_str(), "sessions/dt=2025-05-31/stream_id=s");
    }

    #[test]
    fn out_of_range_time_is_an_error_not_a_panic() {
        let err = PartitionPath::day_of(
            Table::Errors,
            &PartitionConfig::default(),
            TimestampMs(i64::MAX),
        )
        .unwrap_err();
        assert!(
            matches!(err, LakeError::TimestampOutOfRange { .. }),
            "{err}"
        );
    }

    #[test]
    fn hostile_values_stay_in_their_directory_and_parse_back() {
        let utc = PartitionConfig::default();
        let hostile = [
            "../x",
            "a/b",
            "a=b",
            "%",
            "..",
            ".",
            "ünï/cødé",
            "x\0y",
            "stream_id=evil",
        ];
        for value in hostile {
            let p =
                PartitionPath::day_stream(Table::Sessions, &utc, JUNE_1_2330_UTC, value).unwrap();
            let segments: Vec<&str> = p.as_str().split('/').collect();
            assert_eq!(segments.len(), 3, "{p}");
            assert!(segments.iter().all(|s| *s != ".." && *s != "."), "{p}");
            let (table, values) = PartitionPath::parse(p.as_str()).unwrap();
            assert_eq!(table, Table::Sessions);
            assert_eq!(values, [Some("2025-06-01".into()), Some(value.into())]);
        }
        let p = PartitionPath::new(Table::Sessions, &[Some("2025-06-01"), None]).unwrap();
        assert_eq!(
            p.as_str(),
            "sessions/dt=2025-06-01/stream_id=__HIVE_DEFAULT_PARTITION__"
        );
        let (_, values) = PartitionPath::parse(p.as_str()).unwrap();
        assert_eq!(values[1], None);
        let p = PartitionPath::new(Table::Sessions, &[Some("2025-06-01"), Some("")]).unwrap();
        assert_eq!(PartitionPath::parse(p.as_str()).unwrap().1[1], None);
    }

    #[test]
    fn wrong_arity_and_foreign_paths_are_rejected() {
        assert!(PartitionPath::new(Table::Daily, &[]).is_err());
        assert_eq!(PartitionPath::parse("nope/dt=x"), None);
        assert_eq!(PartitionPath::parse("daily/hour=1"), None);
        assert_eq!(PartitionPath::parse("daily/dt=x/extra"), None);
    }
}

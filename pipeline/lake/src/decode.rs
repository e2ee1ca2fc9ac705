//! Kafka record values (and headers) back into lake rows.
//!
//! Data flow: the sink reads a record from a result or raw topic and calls
//! [`DecodeRow::decode`] of the table's row type; the row then goes through the
//! manifest's dedup and the writer pool. Result topics (`sessions`, `viewers`,
//! `daily`) and `cdc.<table>` carry the rows as JSON with the lake's column names.
//! `events` carries producers' raw input: it is parsed and validated again with the
//! schema crate's parser, taking the record's own timestamp as "now" so that the
//! answer is the same on every replay; an invalid event yields `None`, because the
//! processor already sent it to the DLQ, which the `errors` table archives. DLQ
//! records are rebuilt from their headers and original bytes.

use playlake_schemas::{
    parse_playback_event, parse_playback_event_into, ChangeEvent, DailyStat, DlqHeaderError,
    DlqRecord, PlaybackEvent, Session, ViewerWindow,
};

use crate::error::{LakeError, Result};
use crate::rows::{LakeRow, RecordMeta};

/// Why a record could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The value is not the table's JSON row.
    #[error("the value is not a JSON row of this table")]
    Json(#[source] serde_json::Error),
    /// The DLQ record's headers are missing or malformed.
    #[error("the DLQ record's headers are unusable")]
    DlqHeaders(#[source] DlqHeaderError),
}

/// A row type that can be read from its topic's records.
pub trait DecodeRow: LakeRow {
    /// The row of one record, or `None` when the record holds no row for the lake.
    fn decode(meta: &RecordMeta, value: &[u8], headers: &[(&str, &[u8])]) -> Result<Option<Self>>;

    /// [`DecodeRow::decode`] into `row`, an earlier row given back for reuse
    /// ([`crate::RowBin`]): `Ok(true)` when `row` now holds the record's row,
    /// `Ok(false)` (and `row` in any state) when the record holds none. Row types
    /// whose parser can refill a row in place override it.
    fn decode_into(
        meta: &RecordMeta,
        value: &[u8],
        headers: &[(&str, &[u8])],
        row: &mut Self,
    ) -> Result<bool> {
        Ok(match Self::decode(meta, value, headers)? {
            Some(decoded) => {
                *row = decoded;
                true
            }
            None => false,
        })
    }
}

fn error(table: &'static str, meta: &RecordMeta, source: DecodeError) -> LakeError {
    LakeError::Decode {
        table,
        topic: meta.topic.to_owned(),
        partition: meta.partition,
        offset: meta.offset,
        source,
    }
}

macro_rules! json_rows {
    ($($row:ty),*) => {$(
        impl DecodeRow for $row {
            fn decode(meta: &RecordMeta, value: &[u8], _: &[(&str, &[u8])]) -> Result<Option<Self>> {
                serde_json::from_slice(value)
                    .map(Some)
                    .map_err(|e| error(Self::TABLE.name(), meta, DecodeError::Json(e)))
            }
        }
    )*};
}

json_rows!(Session, ViewerWindow, DailyStat, ChangeEvent);

impl DecodeRow for PlaybackEvent {
    fn decode(meta: &RecordMeta, value: &[u8], _: &[(&str, &[u8])]) -> Result<Option<Self>> {
        Ok(parse_playback_event(value, meta.timestamp.as_millis()).ok())
    }

    fn decode_into(
        meta: &RecordMeta,
        value: &[u8],
        _: &[(&str, &[u8])],
        row: &mut Self,
    ) -> Result<bool> {
        Ok(parse_playback_event_into(value, meta.timestamp.as_millis(), row).is_ok())
    }
}

impl DecodeRow for DlqRecord {
    fn decode(meta: &RecordMeta, value: &[u8], headers: &[(&str, &[u8])]) -> Result<Option<Self>> {
        DlqRecord::from_headers(headers.iter().copied(), value)
            .map(Some)
            .map_err(|e| error(Self::TABLE.name(), meta, DecodeError::DlqHeaders(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{dlq, meta, session, T0};

    #[test]
    fn result_rows_round_trip_through_json() {
        let s = session(3, "a/b");
        let bytes = serde_json::to_vec(&s).unwrap();
        let m = meta("playback.sessions", 7);
        assert_eq!(Session::decode(&m, &bytes, &[]).unwrap(), Some(s));
        let err = Session::decode(&m, b"{}", &[]).unwrap_err();
        assert!(err.to_string().contains("playback.sessions"), "{err}");
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn invalid_events_are_left_to_the_dlq() {
        let m = meta("playback.events", 0);
        let good = format!(r#"{{"uuid":"u","stream_id":"s","event_time":{T0},"position_end":3}}"#);
        let event = PlaybackEvent::decode(&m, good.as_bytes(), &[])
            .unwrap()
            .unwrap();
        assert_eq!(event.stream_id, "s");
        assert_eq!(PlaybackEvent::decode(&m, b"not json", &[]).unwrap(), None);
        // Into an old row: the same event, every field overwritten.
        let mut old = crate::fixtures::event(9, "an old stream");
        old.user_id = Some("an old user".into());
        assert!(PlaybackEvent::decode_into(&m, good.as_bytes(), &[], &mut old).unwrap());
        assert_eq!(old, event);
        assert!(!PlaybackEvent::decode_into(&m, b"not json", &[], &mut old).unwrap());
        // The default (a row type without an in-place parser) replaces the row.
        let s = session(3, "a/b");
        let bytes = serde_json::to_vec(&s).unwrap();
        let mut old = session(4, "c");
        assert!(Session::decode_into(&m, &bytes, &[], &mut old).unwrap());
        assert_eq!(old, s);
        assert!(Session::decode_into(&m, b"{}", &[], &mut old).is_err());
    }

    #[test]
    fn dlq_records_come_from_headers() {
        let r = dlq(1);
        let headers = r.headers();
        let pairs: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
        let m = meta("playback.dlq", 1);
        assert_eq!(
            DlqRecord::decode(&m, &r.raw, &pairs).unwrap(),
            Some(r.clone())
        );
        assert!(DlqRecord::decode(&m, &r.raw, &[]).is_err());
    }
}

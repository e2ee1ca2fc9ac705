//! The dead-letter queue (SPEC section 6) and the headers of side-output records.
//!
//! Data flow: when the processor (or any stage) cannot use a record, it writes the
//! record's original bytes unchanged to `playback.dlq` with the headers named here
//! ([`DlqRecord::headers`]). The sink reads the DLQ back
//! ([`DlqRecord::from_headers`]) and archives it in the lake's `errors` table, like
//! Firehose's error prefix. Late events (`playback.late`) carry the
//! [`LATE_OPERATOR_HEADER`] and [`LATE_WATERMARK_HEADER`] headers.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Header: why the record was rejected (`<reason_code>: <message>`, see
/// [`crate::InvalidEvent::dlq_reason`]).
pub const ERROR_HEADER: &str = "playlake.error";
/// Header: the topic the record was read from.
pub const SOURCE_TOPIC_HEADER: &str = "playlake.source.topic";
/// Header: the partition it was read from (decimal).
pub const SOURCE_PARTITION_HEADER: &str = "playlake.source.partition";
/// Header: its offset in that partition (decimal).
pub const SOURCE_OFFSET_HEADER: &str = "playlake.source.offset";
/// Header of a late event: the operator it was late for (`sessions`, `viewers`,
/// `daily`).
pub const LATE_OPERATOR_HEADER: &str = "playlake.late.operator";
/// Header of a late event: that operator's watermark (epoch ms, decimal).
pub const LATE_WATERMARK_HEADER: &str = "playlake.late.watermark";

/// A rejected record with where it came from: an `errors` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DlqRecord {
    /// Topic the record was read from.
    pub source_topic: String,
    /// Partition it was read from.
    pub source_partition: i32,
    /// Offset within that partition.
    pub source_offset: i64,
    /// Why it was rejected (`<reason_code>: <message>`).
    pub reason: String,
    /// The original record value, byte for byte. In JSON and in the lake's `raw`
    /// column it is a string: the bytes as UTF-8, with invalid sequences replaced by
    /// U+FFFD (the DLQ topic itself keeps the exact bytes).
    #[serde(with = "raw_as_string")]
    pub raw: Vec<u8>,
}

/// A DLQ record whose headers are missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DlqHeaderError {
    /// A required header is absent.
    #[error("DLQ record has no `{0}` header")]
    Missing(&'static str),
    /// A header is not UTF-8 or not a number where a number is expected.
    #[error("DLQ header `{header}` has an invalid value {value:?}")]
    Invalid {
        /// The header name.
        header: &'static str,
        /// Its value, lossily decoded.
        value: String,
    },
}

impl DlqRecord {
    /// The headers to put on the DLQ record (the value is [`DlqRecord::raw`]).
    pub fn headers(&self) -> [(&'static str, String); 4] {
        [
            (ERROR_HEADER, self.reason.clone()),
            (SOURCE_TOPIC_HEADER, self.source_topic.clone()),
            (SOURCE_PARTITION_HEADER, self.source_partition.to_string()),
            (SOURCE_OFFSET_HEADER, self.source_offset.to_string()),
        ]
    }

    /// Rebuilds the record from a DLQ message's headers and value. Unknown headers
    /// are ignored; when a header repeats, the last one wins.
    pub fn from_headers<'h, I>(headers: I, value: &[u8]) -> Result<Self, DlqHeaderError>
    where
        I: IntoIterator<Item = (&'h str, &'h [u8])>,
    {
        let mut reason = None;
        let mut topic = None;
        let mut partition = None;
        let mut offset = None;
        for (name, bytes) in headers {
            let slot = match name {
                ERROR_HEADER => &mut reason,
                SOURCE_TOPIC_HEADER => &mut topic,
                SOURCE_PARTITION_HEADER => &mut partition,
                SOURCE_OFFSET_HEADER => &mut offset,
                _ => continue,
            };
            *slot = Some(bytes);
        }
        let text = |header: &'static str, v: Option<&[u8]>| -> Result<String, DlqHeaderError> {
            let bytes = v.ok_or(DlqHeaderError::Missing(header))?;
            String::from_utf8(bytes.to_vec()).map_err(|_| DlqHeaderError::Invalid {
                header,
                value: String::from_utf8_lossy(bytes).into_owned(),
            })
        };
        let number = |header: &'static str, v: Option<&[u8]>| -> Result<i64, DlqHeaderError> {
            let s = text(header, v)?;
            s.trim()
                .parse()
                .map_err(|_| DlqHeaderError::Invalid { header, value: s })
        };
        let partition_number = number(SOURCE_PARTITION_HEADER, partition)?;
        Ok(DlqRecord {
            source_topic: text(SOURCE_TOPIC_HEADER, topic)?,
            source_partition: i32::try_from(partition_number).map_err(|_| {
                DlqHeaderError::Invalid {
                    header: SOURCE_PARTITION_HEADER,
                    value: partition_number.to_string(),
                }
            })?,
            source_offset: number(SOURCE_OFFSET_HEADER, offset)?,
            reason: text(ERROR_HEADER, reason)?,
            raw: value.to_vec(),
        })
    }

    /// The `raw` column value: the bytes as UTF-8, invalid sequences replaced.
    pub fn raw_lossy(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }

    /// The reason code (the part of `reason` before the first `:`).
    pub fn reason_code(&self) -> &str {
        self.reason
            .split_once(':')
            .map_or(self.reason.as_str(), |(code, _)| code)
    }
}

/// serde for `raw`: a string on the wire (see [`DlqRecord::raw`]).
mod raw_as_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(raw: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&String::from_utf8_lossy(raw))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        String::deserialize(deserializer).map(String::into_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(raw: &[u8]) -> DlqRecord {
        DlqRecord {
            source_topic: "playback.events".into(),
            source_partition: 3,
            source_offset: 42,
            reason: "missing_field: field `uuid` is required".into(),
            raw: raw.to_vec(),
        }
    }

    #[test]
    fn headers_round_trip() {
        let r = record(b"{\"x\":1}");
        let headers = r.headers();
        assert_eq!(headers[0].0, "playlake.error");
        let pairs: Vec<(&str, &[u8])> = headers
            .iter()
            .map(|(k, v)| (*k, v.as_bytes()))
            .chain([("other", &b"x"[..])])
            .collect();
        let back = DlqRecord::from_headers(pairs, &r.raw).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.reason_code(), "missing_field");
    }

    #[test]
    fn bad_headers_are_errors() {
        let err = DlqRecord::from_headers([(ERROR_HEADER, &b"x"[..])], b"").unwrap_err();
        assert!(matches!(err, DlqHeaderError::Missing(_)), "{err}");
        let err = DlqRecord::from_headers(
            [
                (ERROR_HEADER, &b"x"[..]),
                (SOURCE_TOPIC_HEADER, b"t"),
                (SOURCE_PARTITION_HEADER, b"9999999999"),
                (SOURCE_OFFSET_HEADER, b"1"),
            ],
            b"",
        )
        .unwrap_err();
        assert!(matches!(
            err,
            DlqHeaderError::Invalid {
                header: SOURCE_PARTITION_HEADER,
                ..
            }
        ));
    }

    #[test]
    fn json_row_has_raw_as_string() {
        let r = record(b"not json \xff");
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["raw"], serde_json::json!("not json \u{fffd}"));
        assert_eq!(v["source_partition"], serde_json::json!(3));
        let ok = record(b"plain");
        let back: DlqRecord = serde_json::from_value(serde_json::to_value(&ok).unwrap()).unwrap();
        assert_eq!(back, ok);
        assert_eq!(r.raw_lossy(), "not json \u{fffd}");
    }
}

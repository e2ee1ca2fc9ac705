//! The bytes of one checkpoint object.
//!
//! ```text
//! MAGIC (8 bytes) | header length (u32, big endian) | header (JSON) | state (opaque)
//! ```
//!
//! The JSON header says who wrote what (format version, stage, scope, sequence,
//! writer id, creation time, input positions) and the state's length and SHA-256, so
//! a truncated or altered object is detected as [`CheckpointError::Corrupt`] instead
//! of restoring wrong state. The state stays raw bytes: no base64 inflation.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{CheckpointError, Result};
use crate::{Checkpoint, Position, Sequence};

const MAGIC: &[u8; 8] = b"PLKCKPT\n";
/// Version of the envelope layout; bumped on incompatible changes.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Header {
    format_version: u32,
    stage: String,
    scope: String,
    sequence: u64,
    writer_id: String,
    created_unix_ms: u64,
    positions: Vec<Position>,
    state_len: u64,
    state_sha256: String,
}

pub(crate) fn encode(checkpoint: &Checkpoint) -> Result<Bytes, serde_json::Error> {
    let header = Header {
        format_version: FORMAT_VERSION,
        stage: checkpoint.stage.clone(),
        scope: checkpoint.scope.clone(),
        sequence: checkpoint.sequence.get(),
        writer_id: checkpoint.writer_id.clone(),
        created_unix_ms: checkpoint.created_unix_ms,
        positions: checkpoint.positions.clone(),
        state_len: checkpoint.state.len() as u64,
        state_sha256: sha256_hex(&checkpoint.state),
    };
    let header = serde_json::to_vec(&header)?;
    let mut out = BytesMut::with_capacity(MAGIC.len() + 4 + header.len() + checkpoint.state.len());
    out.put_slice(MAGIC);
    // A header beyond 4 GiB cannot come from positions of a real stage.
    out.put_u32(u32::try_from(header.len()).unwrap_or(u32::MAX));
    out.put_slice(&header);
    out.put_slice(&checkpoint.state);
    Ok(out.freeze())
}

/// Decodes `bytes` read from `path`, checking it belongs to `stage`/`scope`/`sequence`.
pub(crate) fn decode(
    path: &str,
    bytes: Bytes,
    stage: &str,
    scope: &str,
    sequence: Sequence,
) -> Result<Checkpoint> {
    let corrupt = |reason: String| CheckpointError::Corrupt {
        path: path.to_string(),
        reason,
    };
    if bytes.len() < MAGIC.len() + 4 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(corrupt("not a playlake checkpoint (bad magic)".into()));
    }
    let mut len_bytes = [0u8; 4];
    len_bytes.copy_from_slice(&bytes[MAGIC.len()..MAGIC.len() + 4]);
    let header_len = u32::from_be_bytes(len_bytes) as usize;
    let header_start = MAGIC.len() + 4;
    let state_start = header_start
        .checked_add(header_len)
        .filter(|end| *end <= bytes.len())
        .ok_or_else(|| corrupt("header runs past the end of the object".into()))?;
    let header: Header = serde_json::from_slice(&bytes[header_start..state_start])
        .map_err(|e| corrupt(format!("unreadable header: {e}")))?;
    if header.format_version != FORMAT_VERSION {
        return Err(corrupt(format!(
            "format version {} is not supported (this build reads {FORMAT_VERSION})",
            header.format_version
        )));
    }
    if header.stage != stage || header.scope != scope || header.sequence != sequence.get() {
        return Err(corrupt(format!(
            "header says {}/{}/{} but the object is stored as {stage}/{scope}/{sequence}",
            header.stage, header.scope, header.sequence
        )));
    }
    let state = bytes.slice(state_start..);
    if state.len() as u64 != header.state_len {
        return Err(corrupt(format!(
            "state is {} bytes, header says {}",
            state.len(),
            header.state_len
        )));
    }
    if sha256_hex(&state) != header.state_sha256 {
        return Err(corrupt("state checksum mismatch".into()));
    }
    Ok(Checkpoint {
        sequence,
        stage: header.stage,
        scope: header.scope,
        writer_id: header.writer_id,
        created_unix_ms: header.created_unix_ms,
        positions: header.positions,
        state,
    })
}

fn sha256_hex(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    let mut hex = String::with_capacity(digest.len() * 2);
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            sequence: Sequence::new(7),
            stage: "process".into(),
            scope: "group-a".into(),
            writer_id: "w1".into(),
            created_unix_ms: 1_700_000_000_000,
            positions: vec![Position::new("playback.events", 3, 42)],
            state: Bytes::from_static(b"\x00state\xff"),
        }
    }

    #[test]
    fn round_trip() {
        let cp = sample();
        let bytes = encode(&cp).unwrap();
        let back = decode("p", bytes, "process", "group-a", Sequence::new(7)).unwrap();
        assert_eq!(back, cp);
    }

    #[test]
    fn damage_is_detected() {
        let bytes = encode(&sample()).unwrap();
        let seq = Sequence::new(7);
        let cases: Vec<Bytes> = vec![
            Bytes::from_static(b"garbage"),
            bytes.slice(..bytes.len() - 1),
            bytes.slice(..20),
            {
                let mut v = bytes.to_vec();
                let last = v.len() - 1;
                v[last] ^= 1;
                Bytes::from(v)
            },
        ];
        for case in cases {
            let err = decode("p", case, "process", "group-a", seq).unwrap_err();
            assert!(matches!(err, CheckpointError::Corrupt { .. }), "{err}");
        }
        let err = decode("p", bytes, "process", "other", seq).unwrap_err();
        assert!(matches!(err, CheckpointError::Corrupt { .. }), "{err}");
    }
}

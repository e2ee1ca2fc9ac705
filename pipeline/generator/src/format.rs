//! Byte-level writers for record values: JSON events, RFC 3339 times, uuids.
//!
//! Values are written straight into a reused `Vec<u8>` with hand-rolled integer
//! formatting (no `format!`, no serde), because the generator must sustain well over a
//! million events per second. Everything written is ASCII. Positions are kept in whole
//! milliseconds of media time and written as `seconds.mmm`, so every number parses back
//! to exactly the value a consumer would compute from it.

use playlake_schemas::EventType;

use crate::bad::BadReason;

/// How a player writes `event_time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeStyle {
    /// Integer epoch milliseconds.
    EpochMs,
    /// RFC 3339 in UTC with a `Z` suffix.
    Utc,
    /// RFC 3339 with a fixed UTC offset in minutes (e.g. +09:00 = 540).
    Offset(i32),
}

/// How one player instance (uuid) writes its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Style {
    pub time: TimeStyle,
    /// Sends an `event_id` (else the processor derives one).
    pub event_id: bool,
    /// Writes `"user_id":null` for anonymous viewers (else omits the field).
    pub null_user: bool,
    /// Omits `event_type` on heartbeats (it is the default).
    pub omit_heartbeat_type: bool,
}

/// One playback event, before it is written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventFields<'a> {
    pub uuid: &'a [u8; 36],
    pub stream_id: &'a str,
    pub user: Option<u64>,
    pub event_type: EventType,
    pub time_ms: i64,
    pub pos_start_ms: u64,
    pub pos_end_ms: u64,
    pub event_seq: u64,
    pub style: Style,
}

/// Appends `n` in decimal.
pub(crate) fn push_u64(buf: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

/// Appends `n` in decimal, zero-padded to `width` digits (for n below 10^width).
fn push_padded(buf: &mut Vec<u8>, n: u64, width: u32) {
    let mut div = 10u64.pow(width.saturating_sub(1));
    while div > 0 {
        buf.push(b'0' + ((n / div) % 10) as u8);
        div /= 10;
    }
}

/// Appends a signed integer.
fn push_i64(buf: &mut Vec<u8>, n: i64) {
    if n < 0 {
        buf.push(b'-');
    }
    push_u64(buf, n.unsigned_abs());
}

/// Appends milliseconds as `seconds.mmm`.
fn push_seconds(buf: &mut Vec<u8>, ms: u64) {
    push_u64(buf, ms / 1000);
    buf.push(b'.');
    push_padded(buf, ms % 1000, 3);
}

/// Civil date (year, month, day) of a day count since 1970-01-01 (H. Hinnant's
/// algorithm, exact for the whole i64 day range the config allows).
fn civil_from_days(days: i64) -> (i64, u64, u64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097) as u64;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe as i64 + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Local calendar fields of `ms` shifted by `offset_min`.
struct Civil {
    year: u64,
    month: u64,
    day: u64,
    hour: u64,
    minute: u64,
    second: u64,
    milli: u64,
}

fn civil(ms: i64, offset_min: i32) -> Civil {
    let local = ms + i64::from(offset_min) * 60_000;
    let days = local.div_euclid(86_400_000);
    let in_day = local.rem_euclid(86_400_000) as u64;
    let (year, month, day) = civil_from_days(days);
    Civil {
        year: year.clamp(0, 9999) as u64,
        month,
        day,
        hour: in_day / 3_600_000,
        minute: in_day / 60_000 % 60,
        second: in_day / 1000 % 60,
        milli: in_day % 1000,
    }
}

/// Appends `ms` as RFC 3339 with milliseconds: `YYYY-MM-DDTHH:MM:SS.mmm` then `Z`
/// (offset 0 and `utc_z`) or `+HH:MM` / `-HH:MM`.
pub(crate) fn push_rfc3339(buf: &mut Vec<u8>, ms: i64, offset_min: i32, utc_z: bool) {
    let c = civil(ms, offset_min);
    push_padded(buf, c.year, 4);
    buf.push(b'-');
    push_padded(buf, c.month, 2);
    buf.push(b'-');
    push_padded(buf, c.day, 2);
    buf.push(b'T');
    push_padded(buf, c.hour, 2);
    buf.push(b':');
    push_padded(buf, c.minute, 2);
    buf.push(b':');
    push_padded(buf, c.second, 2);
    buf.push(b'.');
    push_padded(buf, c.milli, 3);
    if utc_z && offset_min == 0 {
        buf.push(b'Z');
    } else {
        buf.push(if offset_min < 0 { b'-' } else { b'+' });
        let abs = u64::from(offset_min.unsigned_abs());
        push_padded(buf, abs / 60, 2);
        buf.push(b':');
        push_padded(buf, abs % 60, 2);
    }
}

/// A not-RFC-3339 date as some players write it: `DD/MM/YYYY HH:MM:SS`.
fn push_local_date(buf: &mut Vec<u8>, ms: i64) {
    let c = civil(ms, 0);
    push_padded(buf, c.day, 2);
    buf.push(b'/');
    push_padded(buf, c.month, 2);
    buf.push(b'/');
    push_padded(buf, c.year, 4);
    buf.push(b' ');
    push_padded(buf, c.hour, 2);
    buf.push(b':');
    push_padded(buf, c.minute, 2);
    buf.push(b':');
    push_padded(buf, c.second, 2);
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A version-4-looking uuid whose bits come from `a` (a bijection of a counter, so
/// distinct counters give distinct uuids) and `b` (filler).
pub(crate) fn uuid_from(a: u64, b: u64) -> [u8; 36] {
    // 32 hex digits; digit 12 is the version `4`, digit 16 the variant `8..b`. The 16
    // digits of `a` take positions 13-15 and 17-29; `b` fills the rest.
    let mut digits = [0u8; 32];
    for (i, d) in digits.iter_mut().enumerate().take(12) {
        *d = ((b >> (4 * i)) & 0xf) as u8;
    }
    digits[12] = 4;
    digits[16] = 8 | ((b >> 48) & 0x3) as u8;
    let a_positions = (13..16).chain(17..30);
    for (k, pos) in a_positions.enumerate() {
        digits[pos] = ((a >> (4 * k)) & 0xf) as u8;
    }
    digits[30] = ((b >> 52) & 0xf) as u8;
    digits[31] = ((b >> 56) & 0xf) as u8;
    let mut out = [b'-'; 36];
    let mut j = 0;
    for (i, d) in digits.iter().enumerate() {
        if matches!(i, 8 | 12 | 16 | 20) {
            j += 1;
        }
        out[j] = HEX[usize::from(*d)];
        j += 1;
    }
    out
}

/// Writes `"name":` (after a comma unless first).
fn key(buf: &mut Vec<u8>, name: &str, first: &mut bool) {
    if !*first {
        buf.push(b',');
    }
    *first = false;
    buf.push(b'"');
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(b"\":");
}

fn string(buf: &mut Vec<u8>, s: &[u8]) {
    buf.push(b'"');
    buf.extend_from_slice(s);
    buf.push(b'"');
}

/// Writes one record value: a valid event when `bad` is `None`, else the same event
/// broken in the way `bad` names (every other field stays valid, so the processor's
/// first complaint is exactly that one).
pub(crate) fn write_event(buf: &mut Vec<u8>, ev: &EventFields<'_>, bad: Option<BadReason>) {
    let start_len = buf.len();
    if bad == Some(BadReason::NotObject) {
        buf.push(b'[');
    }
    buf.push(b'{');
    let mut first = true;
    match bad {
        Some(BadReason::MissingUuid) => {}
        Some(BadReason::UuidTooLong) => {
            key(buf, "uuid", &mut first);
            buf.push(b'"');
            for _ in 0..4 {
                buf.extend_from_slice(ev.uuid);
            }
            buf.push(b'"');
        }
        _ => {
            key(buf, "uuid", &mut first);
            string(buf, ev.uuid);
        }
    }
    key(buf, "stream_id", &mut first);
    string(buf, ev.stream_id.as_bytes());
    if bad == Some(BadReason::InvalidUtf8) {
        key(buf, "user_id", &mut first);
        buf.extend_from_slice(b"\"user-\xff\xfe\"");
    } else {
        match ev.user {
            Some(user) => {
                key(buf, "user_id", &mut first);
                buf.extend_from_slice(b"\"user-");
                push_padded(buf, user, 7);
                buf.push(b'"');
            }
            None if ev.style.null_user => {
                key(buf, "user_id", &mut first);
                buf.extend_from_slice(b"null");
            }
            None => {}
        }
    }
    let mut event_type = ev.event_type;
    let (mut pos_start, mut pos_end) = (ev.pos_start_ms, ev.pos_end_ms);
    if bad == Some(BadReason::PositionOrder) {
        event_type = EventType::Heartbeat;
        pos_end = pos_start.min(pos_end);
        pos_start = ev.pos_start_ms.max(ev.pos_end_ms) + 1_500;
    }
    match bad {
        Some(BadReason::UnknownEventType) => {
            key(buf, "event_type", &mut first);
            string(buf, unknown_type_name(ev.event_seq));
        }
        _ if event_type == EventType::Heartbeat
            && ev.style.omit_heartbeat_type
            && bad != Some(BadReason::PositionOrder) => {}
        _ => {
            key(buf, "event_type", &mut first);
            string(buf, event_type.as_str().as_bytes());
        }
    }
    write_time(buf, ev, bad, &mut first);
    key(buf, "position_start", &mut first);
    push_seconds(buf, pos_start);
    key(buf, "position_end", &mut first);
    if bad == Some(BadReason::NegativePosition) {
        buf.push(b'-');
        push_seconds(buf, pos_end + 500);
    } else {
        push_seconds(buf, pos_end);
    }
    if ev.style.event_id {
        key(buf, "event_id", &mut first);
        buf.extend_from_slice(b"\"ev-");
        push_u64(buf, ev.event_seq);
        buf.push(b'"');
    }
    buf.push(b'}');
    match bad {
        Some(BadReason::NotObject) => buf.push(b']'),
        Some(BadReason::NotJson) => {
            // A proper prefix of an object is never a JSON document.
            let cut = start_len + (buf.len() - start_len) / 2;
            buf.truncate(cut);
        }
        _ => {}
    }
}

fn write_time(buf: &mut Vec<u8>, ev: &EventFields<'_>, bad: Option<BadReason>, first: &mut bool) {
    let ms = ev.time_ms;
    match bad {
        Some(BadReason::MissingEventTime) => return,
        Some(BadReason::FloatEventTime) => {
            key(buf, "event_time", first);
            push_i64(buf, ms.div_euclid(1000));
            buf.push(b'.');
            push_padded(buf, ms.rem_euclid(1000) as u64, 3);
            buf.extend_from_slice(b"e3");
            return;
        }
        Some(BadReason::EventTimeTooOld) => {
            // The same time of day on 1999-01-01: a player with a reset clock.
            key(buf, "event_time", first);
            push_i64(buf, 915_148_800_000 + ms.rem_euclid(86_400_000));
            return;
        }
        Some(BadReason::InvalidTimestamp) => {
            key(buf, "event_time", first);
            buf.push(b'"');
            push_local_date(buf, ms);
            buf.push(b'"');
            return;
        }
        _ => {}
    }
    key(buf, "event_time", first);
    match ev.style.time {
        TimeStyle::EpochMs => push_i64(buf, ms),
        TimeStyle::Utc => {
            buf.push(b'"');
            push_rfc3339(buf, ms, 0, true);
            buf.push(b'"');
        }
        TimeStyle::Offset(off) => {
            buf.push(b'"');
            push_rfc3339(buf, ms, off, false);
            buf.push(b'"');
        }
    }
}

fn unknown_type_name(n: u64) -> &'static [u8] {
    const NAMES: [&[u8]; 4] = [b"play", b"buffering", b"Heartbeat", b"resume"];
    NAMES[(n % 4) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;
    use playlake_schemas::TimestampMs;

    #[test]
    fn integers_and_seconds() {
        let mut b = Vec::new();
        push_u64(&mut b, 0);
        b.push(b' ');
        push_u64(&mut b, u64::MAX);
        b.push(b' ');
        push_seconds(&mut b, 12_005);
        b.push(b' ');
        push_i64(&mut b, -42);
        assert_eq!(b, b"0 18446744073709551615 12.005 -42");
    }

    #[test]
    fn rfc3339_matches_chrono_for_many_instants_and_offsets() {
        let mut ms = 946_684_800_000i64;
        let mut buf = Vec::new();
        while ms < 4_102_444_800_000 {
            for (off, z) in [
                (0, true),
                (0, false),
                (540, false),
                (-420, false),
                (330, false),
            ] {
                buf.clear();
                push_rfc3339(&mut buf, ms, off, z);
                let text = std::str::from_utf8(&buf).unwrap();
                let parsed = TimestampMs::parse_rfc3339(text).unwrap();
                assert_eq!(parsed.as_millis(), ms, "{text}");
            }
            ms += 7_777_777_777; // ~90 days, odd offsets into the day
        }
        buf.clear();
        push_rfc3339(&mut buf, 1_748_736_000_250, 540, false);
        assert_eq!(buf, b"2025-06-01T09:00:00.250+09:00");
    }

    #[test]
    fn uuids_look_right_and_are_distinct() {
        let u = uuid_from(0x0123_4567_89ab_cdef, u64::MAX);
        let s = std::str::from_utf8(&u).unwrap();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"));
        assert_eq!(s.matches('-').count(), 4);
        assert_ne!(uuid_from(1, 5), uuid_from(2, 5));
    }
}

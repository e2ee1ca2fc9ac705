//! The fast path of [`super::parse_playback_event`]: a single-pass scanner for the flat
//! shape that (nearly) every record has.
//!
//! It only ever *accepts*: [`parse_fast`] returns the event when it is certain that the
//! reference path (`parse_reference_str` in `event.rs`: serde_json + chrono) would
//! return exactly that event, and `None` in every other case (any error, any escape in
//! a known field or a key, a duplicate known field, a leap second, an unusual timestamp
//! form, nesting deeper than [`MAX_DEPTH`], ...). On `None` the caller runs the
//! reference path, which decides and words the rejection. So errors are the
//! reference's by construction, and the fast path could only differ by accepting
//! something the reference rejects, or with other values: `event_diff_tests.rs` checks
//! it does neither.
//!
//! What it does differently from the reference, for speed:
//!
//! * one pass over the bytes, no serde machinery; known keys are compared in place,
//!   strings are scanned eight bytes at a time and known string fields are borrowed
//!   between their quotes (then copied once into the event);
//! * unknown fields are validated with serde_json's grammar (the reference rejects a
//!   record whose ignored field is malformed JSON) and skipped without recursion;
//! * RFC 3339 times of the form `YYYY-MM-DD(T|t| )HH:MM:SS[.frac](Z|z|+HH:MM|-HH:MM)`
//!   are converted in place with integer arithmetic: the subset of what chrono's
//!   `parse_from_rfc3339` accepts with every field in range (seconds 00..=59), same
//!   millisecond (fraction digits truncated);
//! * a position with at most 15 digits and no sign or exponent is parsed while scanned
//!   as `digits / 10^fraction_digits`, exactly the correctly rounded value
//!   `str::parse::<f64>` gives (both operands are exact doubles and IEEE division
//!   rounds correctly); other numbers go through `str::parse::<f64>` as in the
//!   reference.

use crate::event_id::{derive_event_id_from, js_text_of_short_decimal, Position};
use crate::time::{TimestampMs, MAX_FUTURE_SKEW_MS, MIN_EVENT_TIME_MS};

use super::{EventType, PlaybackEvent, MAX_EVENT_ID_BYTES, MAX_STREAM_ID_BYTES, MAX_UUID_BYTES};

/// Deepest nesting of an ignored field's value the scanner follows (deeper: reference).
const MAX_DEPTH: u32 = 127;

/// An event the scanner accepted, its strings still borrowed from the record.
struct Fast<'a> {
    uuid: &'a str,
    stream_id: &'a str,
    /// `None`: derive it.
    event_id: Option<&'a str>,
    user_id: Option<&'a str>,
    event_type: EventType,
    event_time: i64,
    position_start: Position<'a>,
    position_end: Position<'a>,
}

/// The event `text` holds, when the scanner is sure of it (see the module docs); `None`
/// means "ask the reference path".
pub(super) fn parse_fast(text: &str, now_ms: i64) -> Option<PlaybackEvent> {
    let mut event = PlaybackEvent::default();
    parse_fast_into(text, now_ms, &mut event).then_some(event)
}

/// [`parse_fast`] into `out`, reusing its strings' buffers; `false` (and `out`
/// untouched) means "ask the reference path".
pub(super) fn parse_fast_into(text: &str, now_ms: i64, out: &mut PlaybackEvent) -> bool {
    let Some(fast) = scan(text, now_ms) else {
        return false;
    };
    match fast.event_id {
        Some(given) => given.clone_into(&mut out.event_id),
        None => derive_event_id_from(
            &mut out.event_id,
            fast.uuid,
            fast.event_time,
            fast.event_type,
            fast.position_start,
            fast.position_end,
        ),
    }
    fast.uuid.clone_into(&mut out.uuid);
    fast.stream_id.clone_into(&mut out.stream_id);
    match (fast.user_id, &mut out.user_id) {
        (Some(given), Some(held)) => given.clone_into(held),
        (given, held) => *held = given.map(str::to_owned),
    }
    out.event_type = fast.event_type;
    out.event_time = TimestampMs(fast.event_time);
    out.position_start = fast.position_start.value;
    out.position_end = fast.position_end.value;
    true
}

/// The scan and every check of the fast path, without copying a string.
fn scan(text: &str, now_ms: i64) -> Option<Fast<'_>> {
    let fields = Scanner::new(text).object()?;

    let uuid = id(fields.uuid?, MAX_UUID_BYTES)?;
    let stream_id = id(fields.stream_id?, MAX_STREAM_ID_BYTES)?;
    let event_id = match fields.event_id {
        Some(given) => Some(id(given, MAX_EVENT_ID_BYTES)?),
        None => None,
    };
    let event_type = match fields.event_type {
        Some(name) => event_type(name)?,
        None => EventType::Heartbeat,
    };
    let event_time = fields.event_time?;
    if event_time < MIN_EVENT_TIME_MS || event_time > now_ms.saturating_add(MAX_FUTURE_SKEW_MS) {
        return None;
    }
    let (position_start, position_end) =
        match (fields.position_start, fields.position_end, event_type) {
            (start, Some(end), _) => (start.unwrap_or(end), end),
            (Some(start), None, EventType::Start) => (start, start),
            (None, None, EventType::Start) => {
                let zero = Position {
                    value: 0.0,
                    js: Some("0"),
                };
                (zero, zero)
            }
            (_, None, _) => return None,
        };
    if event_type != EventType::Seek && position_end.value < position_start.value {
        return None;
    }
    Some(Fast {
        uuid,
        stream_id,
        event_id,
        user_id: fields.user_id,
        event_type,
        event_time,
        position_start,
        position_end,
    })
}

/// An id of 1..=max bytes.
fn id(value: &str, max: usize) -> Option<&str> {
    (!value.is_empty() && value.len() <= max).then_some(value)
}

fn event_type(name: &str) -> Option<EventType> {
    match name {
        "heartbeat" => Some(EventType::Heartbeat),
        "start" => Some(EventType::Start),
        "pause" => Some(EventType::Pause),
        "seek" => Some(EventType::Seek),
        "stop" => Some(EventType::Stop),
        _ => None,
    }
}

/// The known fields, already interpreted; `None` = absent or `null`.
#[derive(Default)]
struct Fields<'a> {
    event_id: Option<&'a str>,
    uuid: Option<&'a str>,
    stream_id: Option<&'a str>,
    user_id: Option<&'a str>,
    event_type: Option<&'a str>,
    /// Epoch milliseconds.
    event_time: Option<i64>,
    position_start: Option<Position<'a>>,
    position_end: Option<Position<'a>>,
}

/// Bits of the known fields seen so far (a second occurrence is a duplicate).
const SEEN_EVENT_ID: u8 = 1;
const SEEN_UUID: u8 = 1 << 1;
const SEEN_STREAM_ID: u8 = 1 << 2;
const SEEN_USER_ID: u8 = 1 << 3;
const SEEN_EVENT_TYPE: u8 = 1 << 4;
const SEEN_EVENT_TIME: u8 = 1 << 5;
const SEEN_POSITION_START: u8 = 1 << 6;
const SEEN_POSITION_END: u8 = 1 << 7;

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Scanner {
            text,
            bytes: text.as_bytes(),
            pos: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// Skips JSON whitespace (exactly serde_json's set) and returns the next byte.
    fn skip_ws(&mut self) -> Option<u8> {
        while let Some(b) = self.peek() {
            if !matches!(b, b' ' | b'\n' | b'\t' | b'\r') {
                return Some(b);
            }
            self.pos += 1;
        }
        None
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.skip_ws()? == byte).then(|| self.pos += 1)
    }

    /// The whole record: one object with nothing but whitespace after it.
    fn object(&mut self) -> Option<Fields<'a>> {
        self.eat(b'{')?;
        let mut fields = Fields::default();
        let mut seen = 0u8;
        if self.skip_ws()? == b'}' {
            self.pos += 1;
        } else {
            loop {
                self.eat(b'"')?;
                let bit = self.key()?;
                self.eat(b':')?;
                self.skip_ws()?;
                if seen & bit != 0 {
                    return None;
                }
                seen |= bit;
                match bit {
                    SEEN_EVENT_ID => fields.event_id = self.string_or_null()?,
                    SEEN_UUID => fields.uuid = self.string_or_null()?,
                    SEEN_STREAM_ID => fields.stream_id = self.string_or_null()?,
                    SEEN_USER_ID => fields.user_id = self.string_or_null()?,
                    SEEN_EVENT_TYPE => fields.event_type = self.string_or_null()?,
                    SEEN_EVENT_TIME => fields.event_time = Some(self.event_time()?),
                    SEEN_POSITION_START => fields.position_start = self.position()?,
                    SEEN_POSITION_END => fields.position_end = self.position()?,
                    _ => self.skip_value()?,
                }
                match self.skip_ws()? {
                    b',' => self.pos += 1,
                    b'}' => {
                        self.pos += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        // Trailing whitespace only.
        match self.skip_ws() {
            None => Some(fields),
            Some(_) => None,
        }
    }

    /// A member's key (its opening quote consumed), through its closing quote: the
    /// `SEEN_` bit of the known field it names, 0 for any other key. `None` for a key
    /// with an escape (the reference matches those after unescaping).
    fn key(&mut self) -> Option<u8> {
        let rest = self.bytes.get(self.pos..)?;
        let known: Option<(&[u8], u8)> = match rest.first()? {
            b'u' if rest.starts_with(b"uuid\"") => Some((b"uuid\"", SEEN_UUID)),
            b'u' if rest.starts_with(b"user_id\"") => Some((b"user_id\"", SEEN_USER_ID)),
            b's' if rest.starts_with(b"stream_id\"") => Some((b"stream_id\"", SEEN_STREAM_ID)),
            b'e' if rest.starts_with(b"event_time\"") => Some((b"event_time\"", SEEN_EVENT_TIME)),
            b'e' if rest.starts_with(b"event_type\"") => Some((b"event_type\"", SEEN_EVENT_TYPE)),
            b'e' if rest.starts_with(b"event_id\"") => Some((b"event_id\"", SEEN_EVENT_ID)),
            b'p' if rest.starts_with(b"position_start\"") => {
                Some((b"position_start\"", SEEN_POSITION_START))
            }
            b'p' if rest.starts_with(b"position_end\"") => {
                Some((b"position_end\"", SEEN_POSITION_END))
            }
            _ => None,
        };
        match known {
            Some((name, bit)) => {
                self.pos += name.len();
                Some(bit)
            }
            // Any other key without escapes is not a known field (it would have
            // matched above, quote included).
            None => self.plain_string().map(|_| 0),
        }
    }

    /// The rest of a string whose opening quote was consumed, when it has no escape
    /// (the text between the quotes is then its value). `None` on an escape, a control
    /// character (invalid JSON) or the end of the input.
    fn plain_string(&mut self) -> Option<&'a str> {
        let start = self.pos;
        let end = string_end(self.bytes, start);
        if self.bytes.get(end) != Some(&b'"') {
            return None;
        }
        let value = self.text.get(start..end)?;
        self.pos = end + 1;
        Some(value)
    }

    /// A known string field (the scanner is at its first byte): its value without
    /// escapes, `None` for `null`; fails on anything else.
    fn string_or_null(&mut self) -> Option<Option<&'a str>> {
        match self.peek()? {
            b'"' => {
                self.pos += 1;
                self.plain_string().map(Some)
            }
            b'n' => self.literal(b"null").map(|()| None),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.pos.checked_add(word.len())?;
        (self.bytes.get(self.pos..end)? == word).then(|| self.pos = end)
    }

    /// `event_time`: an RFC 3339 string of the common form or a JSON integer that fits
    /// i64 (`null`, a fraction or an exponent is an error of the reference's to word).
    fn event_time(&mut self) -> Option<i64> {
        match self.peek()? {
            b'"' => {
                // Parsed in place: the accepted form holds no quote, backslash or
                // control character, so the string ends right after it.
                let rest = self.bytes.get(self.pos + 1..)?;
                let (ms, len) = parse_rfc3339_prefix(rest)?;
                if rest.get(len) != Some(&b'"') {
                    return None;
                }
                self.pos += len + 2;
                Some(ms)
            }
            b'-' | b'0'..=b'9' => self.integer(),
            _ => None,
        }
    }

    /// A JSON integer that fits i64, not followed by a fraction or an exponent.
    fn integer(&mut self) -> Option<i64> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let first = self.peek()?;
        // Accumulated negatively so that i64::MIN parses.
        let mut value: i64 = 0;
        let start = self.pos;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            value = value.checked_mul(10)?.checked_sub(i64::from(d - b'0'))?;
            self.pos += 1;
        }
        let digits = self.pos - start;
        // No digit, or a leading zero (invalid JSON), or a fraction or an exponent.
        if digits == 0 || (first == b'0' && digits > 1) {
            return None;
        }
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        if negative {
            Some(value)
        } else {
            value.checked_neg()
        }
    }

    /// A position: `None` for `null`, else a finite number >= 0 (`-0` becomes `0`),
    /// with its JavaScript text when that is a prefix of its JSON text (a derived
    /// event id then copies it instead of formatting the number).
    fn position(&mut self) -> Option<Option<Position<'a>>> {
        match self.peek()? {
            b'n' => self.literal(b"null").map(|()| None),
            b'-' | b'0'..=b'9' => {
                let start = self.pos;
                if let Some(value) = self.short_decimal() {
                    let js = self
                        .text
                        .get(start..self.pos)
                        .and_then(|text| js_text_of_short_decimal(text, value));
                    return Some(Some(Position { value, js }));
                }
                self.pos = start;
                let value = self.number()?.parse::<f64>().ok()?;
                if !value.is_finite() || value < 0.0 {
                    return None;
                }
                Some(Some(Position {
                    value: value + 0.0,
                    js: None,
                }))
            }
            _ => None,
        }
    }

    /// A number `digits[.digits]` (no sign, no exponent) of at most 15 digits, parsed
    /// while scanned: the integer of all its digits (< 10^15 < 2^53, exact) divided
    /// by 10^k (exact), one correctly rounded IEEE division, hence exactly what a
    /// correctly rounding parser (`str::parse::<f64>`) returns. `None` for any other
    /// number (the scanner may then have moved).
    fn short_decimal(&mut self) -> Option<f64> {
        let first = self.peek()?;
        let mut mantissa: u64 = 0;
        let mut digits = 0usize;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            mantissa = mantissa * 10 + u64::from(d - b'0');
            digits += 1;
            self.pos += 1;
            if digits > 15 {
                return None;
            }
        }
        // No digit (a sign), or a leading zero (invalid JSON).
        if digits == 0 || (first == b'0' && digits > 1) {
            return None;
        }
        let mut fraction_digits = 0usize;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            while let Some(d @ b'0'..=b'9') = self.peek() {
                mantissa = mantissa * 10 + u64::from(d - b'0');
                digits += 1;
                fraction_digits += 1;
                self.pos += 1;
                if digits > 15 {
                    return None;
                }
            }
            if fraction_digits == 0 {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            return None;
        }
        // 2^53 > 10^15 > mantissa: the conversion is exact.
        Some(mantissa as f64 / POW10.get(fraction_digits)?)
    }

    /// A JSON number (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`), as text.
    fn number(&mut self) -> Option<&'a str> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.one_or_more_digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.one_or_more_digits()?;
        }
        self.text.get(start..self.pos)
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }

    fn one_or_more_digits(&mut self) -> Option<()> {
        let start = self.pos;
        self.digits();
        (self.pos > start).then_some(())
    }

    /// The rest of a string whose opening quote was consumed, any escapes validated
    /// as serde_json validates a string it skips (`\uXXXX` needs four hex digits, any
    /// code unit).
    fn skip_string(&mut self) -> Option<()> {
        loop {
            self.pos = string_end(self.bytes, self.pos);
            let b = self.peek()?;
            self.pos += 1;
            match b {
                b'"' => return Some(()),
                b'\\' => match self.peek()? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.pos += 1,
                    b'u' => {
                        let hex = self.bytes.get(self.pos + 1..self.pos + 5)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        self.pos += 5;
                    }
                    _ => return None,
                },
                0..=0x1f => return None,
                _ => {}
            }
        }
    }

    /// `"key"` then `:` inside an ignored object (the opening quote not yet consumed).
    fn skip_key(&mut self) -> Option<()> {
        self.eat(b'"')?;
        self.skip_string()?;
        self.eat(b':')
    }

    /// Any JSON value (the scanner is at its first byte), validated and skipped without
    /// recursion: open containers are bits of `stack` (1 = object).
    fn skip_value(&mut self) -> Option<()> {
        let mut stack: u128 = 0;
        let mut depth: u32 = 0;
        loop {
            // A value starts here.
            match self.skip_ws()? {
                open @ (b'{' | b'[') => {
                    self.pos += 1;
                    let close = if open == b'{' { b'}' } else { b']' };
                    if self.skip_ws()? == close {
                        self.pos += 1;
                    } else {
                        if depth >= MAX_DEPTH {
                            return None;
                        }
                        depth += 1;
                        stack = (stack << 1) | u128::from(open == b'{');
                        if open == b'{' {
                            self.skip_key()?;
                        }
                        continue;
                    }
                }
                b'"' => {
                    self.pos += 1;
                    self.skip_string()?;
                }
                b'-' | b'0'..=b'9' => {
                    self.number()?;
                }
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                _ => return None,
            }
            // A value ended: close containers until one continues (or none is open).
            loop {
                if depth == 0 {
                    return Some(());
                }
                let in_object = stack & 1 == 1;
                match self.skip_ws()? {
                    b',' => {
                        self.pos += 1;
                        if in_object {
                            self.skip_key()?;
                        }
                        break;
                    }
                    b'}' if in_object => {}
                    b']' if !in_object => {}
                    _ => return None,
                }
                self.pos += 1;
                stack >>= 1;
                depth -= 1;
            }
        }
    }
}

/// Exact powers of ten as doubles (up to 10^22 they are exact).
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// The index of the first `"`, `\\` or control character (< 0x20) at or after
/// `from`, or the length: sixteen bytes at a time with SSE2 (part of every x86_64
/// CPU), the rest as [`string_end_words`] does. A uuid is 36 bytes: three steps
/// instead of five (the scanner's string scans were 3% of the processor bench).
#[cfg(target_arch = "x86_64")]
fn string_end(bytes: &[u8], from: usize) -> usize {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    let mut at = from;
    if let Some(rest) = bytes.get(from..) {
        for chunk in rest.chunks_exact(16) {
            // SAFETY: SSE2 is part of the x86_64 baseline, so these instructions
            // exist on every CPU this runs on; the load reads `chunk`'s 16 bytes
            // (no alignment needed).
            let mask = unsafe {
                let v = _mm_loadu_si128(chunk.as_ptr().cast());
                // A control character is left unchanged by the unsigned minimum
                // with 0x1f.
                let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
                let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
                let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
                _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control)) as u32
            };
            if mask != 0 {
                return at + mask.trailing_zeros() as usize;
            }
            at += 16;
        }
    }
    string_end_words(bytes, at)
}

/// [`string_end`] elsewhere: [`string_end_words`].
#[cfg(not(target_arch = "x86_64"))]
fn string_end(bytes: &[u8], from: usize) -> usize {
    string_end_words(bytes, from)
}

/// [`string_end`] eight bytes at a time, as serde_json does (the lowest flagged
/// byte of a word is exact; a borrow can only flag bytes after it).
fn string_end_words(bytes: &[u8], from: usize) -> usize {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES << 7;
    let mut at = from;
    if let Some(rest) = bytes.get(from..) {
        for chunk in rest.chunks_exact(8) {
            let Ok(word) = <[u8; 8]>::try_from(chunk) else {
                break;
            };
            let w = u64::from_le_bytes(word);
            let control = w.wrapping_sub(ONES * 0x20) & !w;
            let q = w ^ (ONES * u64::from(b'"'));
            let quote = q.wrapping_sub(ONES) & !q;
            let s = w ^ (ONES * u64::from(b'\\'));
            let backslash = s.wrapping_sub(ONES) & !s;
            let hits = (control | quote | backslash) & HIGH;
            if hits != 0 {
                return at + (hits.trailing_zeros() / 8) as usize;
            }
            at += 8;
        }
    }
    while let Some(&b) = bytes.get(at) {
        if b == b'"' || b == b'\\' || b < 0x20 {
            break;
        }
        at += 1;
    }
    at
}

/// Two ASCII digits as a number.
#[inline]
fn two_digits(b: &[u8], at: usize) -> Option<i64> {
    let hi = *b.get(at)?;
    let lo = *b.get(at + 1)?;
    if hi.is_ascii_digit() && lo.is_ascii_digit() {
        Some(i64::from(hi - b'0') * 10 + i64::from(lo - b'0'))
    } else {
        None
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Epoch milliseconds of `YYYY-MM-DD(T|t| )HH:MM:SS[.digits](Z|z|+HH:MM|-HH:MM)`, the
/// subset of what chrono's `DateTime::parse_from_rfc3339` accepts for which the result
/// is computed here with the same value: every field in range (seconds 00..=59, offset
/// hours 00..=23), fraction digits beyond the millisecond truncated. `None` for
/// anything else (chrono decides: a leap second, `−` U+2212 as minus sign, an error).
#[cfg(test)]
pub(super) fn parse_rfc3339_ms(b: &[u8]) -> Option<i64> {
    match parse_rfc3339_prefix(b)? {
        (ms, len) if len == b.len() => Some(ms),
        _ => None,
    }
}

/// [`parse_rfc3339_ms`] of the longest prefix of `b` of that form, and its length.
fn parse_rfc3339_prefix(b: &[u8]) -> Option<(i64, usize)> {
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let year = two_digits(b, 0)? * 100 + two_digits(b, 2)?;
    let month = two_digits(b, 5)?;
    let day = two_digits(b, 8)?;
    let hour = two_digits(b, 11)?;
    let minute = two_digits(b, 14)?;
    let second = two_digits(b, 17)?;
    if !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut at = 19;
    let mut millis = 0;
    if b[at] == b'.' {
        at += 1;
        let start = at;
        while let Some(d @ b'0'..=b'9') = b.get(at).copied() {
            if at - start < 3 {
                millis = millis * 10 + i64::from(d - b'0');
            }
            at += 1;
        }
        match at - start {
            0 => return None,
            1 => millis *= 100,
            2 => millis *= 10,
            _ => {}
        }
    }
    let offset_seconds = match *b.get(at)? {
        b'Z' | b'z' => {
            at += 1;
            0
        }
        sign @ (b'+' | b'-') => {
            if b.get(at + 3) != Some(&b':') {
                return None;
            }
            let hours = two_digits(b, at + 1)?;
            let minutes = two_digits(b, at + 4)?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            at += 6;
            let seconds = hours * 3600 + minutes * 60;
            if sign == b'-' {
                -seconds
            } else {
                seconds
            }
        }
        _ => return None,
    };
    let local_seconds =
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    Some(((local_seconds - offset_seconds) * 1000 + millis, at))
}

#[cfg(test)]
mod tests {
    use super::{string_end, string_end_words};

    /// The first `"`, `\` or control character at or after `from`, byte by byte.
    fn reference(bytes: &[u8], from: usize) -> usize {
        bytes
            .iter()
            .enumerate()
            .skip(from)
            .find(|&(_, &b)| b == b'"' || b == b'\\' || b < 0x20)
            .map_or(bytes.len(), |(i, _)| i)
    }

    /// Every byte value as the stop candidate, at every position of strings of every
    /// length up to three SSE2 steps and a tail, from every start: both scans agree
    /// with the byte-by-byte definition (0x1f stops, 0x20 and 0x7f and 0x80+ do not).
    #[test]
    fn string_scans_stop_where_a_byte_by_byte_scan_stops() {
        for len in 0..52 {
            for stop_at in 0..=len {
                for b in 0..=255u8 {
                    let mut bytes: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
                    if stop_at < len {
                        bytes[stop_at] = b;
                    }
                    for from in [0, 1, 7, 15, 16, 17].into_iter().filter(|&f| f <= len) {
                        let want = reference(&bytes, from);
                        assert_eq!(string_end(&bytes, from), want, "{bytes:?} from {from}");
                        assert_eq!(string_end_words(&bytes, from), want);
                    }
                }
            }
        }
        assert_eq!(string_end(b"abc", 9), 9, "a start past the end stays put");
    }
}

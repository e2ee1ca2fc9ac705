//! One event waiting in a session buffer ([`crate::session`]), in one cache line.
//!
//! A key's unfrozen events wait in its buffer for a minute or more of event time, long
//! after they left the cache, and each is read back once, when it is frozen: the
//! buffer is most of the session operator's memory traffic. As a `((time, event_id),
//! {type, user_id, positions})` pair of [`crate::inline_str::InlineStr`]s an event took
//! 112 bytes, two lines. A [`Buffered`] takes 64: the event id and the user id share
//! one inline buffer, and an event id of one of the two forms producers send most,
//! the derived id (32 lowercase hex digits, see `playlake_schemas::event_id`) and a
//! lowercase UUID, is held as its 16 bytes. Both forms keep string order on those
//! bytes (a hex digit sorts as its value; a UUID's dashes stand at the same places in
//! every UUID), so two ids of one form compare without being decoded; other pairs
//! compare as text. Ids that do not fit go to the heap, with the same behaviour.

use std::cmp::Ordering;

use playlake_schemas::{EventType, PlaybackEvent};

/// Bytes of text held inline: the event id's (16 in a packed form) and the user id's.
const TEXT_BYTES: usize = 36;
/// [`Inline::id`]: the event id is 32 lowercase hex digits, held as 16 bytes.
const ID_HEX: u8 = 0x80;
/// [`Inline::id`]: the event id is a lowercase UUID (8-4-4-4-12 hex digits), held as
/// 16 bytes.
const ID_UUID: u8 = 0x81;
/// [`Inline::user`]: no user id.
const NO_USER: u8 = 0xFF;
/// Where a UUID's dashes stand.
const UUID_DASHES: [usize; 4] = [8, 13, 18, 23];
/// Bytes of a packed event id.
const PACKED: usize = 16;

/// Room for an event id decoded from its packed form (a UUID's 36 characters).
pub(crate) type IdScratch = [u8; 36];

#[derive(Debug, Clone, Copy)]
struct Inline {
    event_type: EventType,
    /// The event id's length in `bytes` (at most [`TEXT_BYTES`]), or [`ID_HEX`] or
    /// [`ID_UUID`] for a packed id (its [`PACKED`] bytes).
    id: u8,
    /// The user id's length (after the event id's bytes), or [`NO_USER`].
    user: u8,
    bytes: [u8; TEXT_BYTES],
}

impl Inline {
    /// Whether the event id is held packed ([`ID_HEX`] or [`ID_UUID`]).
    fn is_packed(&self) -> bool {
        self.id == ID_HEX || self.id == ID_UUID
    }

    /// Bytes of `bytes` the event id takes (the user id's start after them).
    fn id_bytes(&self) -> usize {
        if self.is_packed() {
            PACKED
        } else {
            usize::from(self.id)
        }
    }
}

/// The texts of an event whose ids do not fit inline.
#[derive(Debug, Clone)]
struct Spilled {
    event_type: EventType,
    event_id: Box<str>,
    user_id: Option<Box<str>>,
}

#[derive(Debug, Clone)]
enum Texts {
    Inline(Inline),
    Spilled(Box<Spilled>),
}

/// What a buffered event contributes to its session, with its place in the key's
/// order `(event_time, event_id)` (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct Buffered {
    /// Event time, epoch ms.
    pub(crate) t: i64,
    pub(crate) position_start: f64,
    pub(crate) position_end: f64,
    texts: Texts,
}

/// Packs 32 lowercase hex digits two to a byte into `out`; false (`out` then holds
/// garbage) if any byte is not one.
///
/// Eight digits at a time in a `u64` (this runs for every buffered event): byte `x`
/// (below 0x80) is a digit when `x + (0x80 - lo)` has its top bit set for `lo = '0'`
/// and not for `lo = ':'` (one past `'9'`), likewise for `'a'..='f'`; its value is
/// its low nibble, plus 9 for a letter (bit 6 set).
fn pack_hex(digits: &[u8; 32], out: &mut [u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const TOP: u64 = ONES * 0x80;
    let mut valid = true;
    for (chunk, dest) in digits.chunks_exact(8).zip(out.chunks_exact_mut(4)) {
        let Ok(bytes) = <[u8; 8]>::try_from(chunk) else {
            return false;
        };
        let x = u64::from_le_bytes(bytes);
        let at_least = |lo: u64| x.wrapping_add(ONES * (0x80 - lo));
        let digit = at_least(0x30) & !at_least(0x3a);
        let letter = at_least(0x61) & !at_least(0x67);
        valid &= x & TOP == 0 && (digit | letter) & TOP == TOP;
        let v = (x & (ONES * 0x0f)) + ((x >> 6) & ONES) * 9;
        // Byte 2j of `w`: digit 2j in the high nibble, digit 2j + 1 in the low one.
        let w = ((v << 4) | (v >> 8)) & 0x00ff_00ff_00ff_00ff;
        let w = (w | (w >> 8)) & 0x0000_ffff_0000_ffff;
        let w = (w | (w >> 16)) as u32;
        dest.copy_from_slice(&w.to_le_bytes());
    }
    valid
}

/// The packed form of `id` ([`ID_HEX`] or [`ID_UUID`]) into `out`, if it has one.
fn pack(id: &str, out: &mut [u8]) -> Option<u8> {
    let b = id.as_bytes();
    match b.len() {
        32 => {
            let digits: &[u8; 32] = b.try_into().ok()?;
            pack_hex(digits, out).then_some(ID_HEX)
        }
        36 if UUID_DASHES.iter().all(|&i| b.get(i) == Some(&b'-')) => {
            let mut digits = [0u8; 32];
            let parts = [(0, 8), (9, 13), (14, 18), (19, 23), (24, 36)];
            let mut at = 0;
            for (start, end) in parts {
                let part = b.get(start..end)?;
                digits.get_mut(at..at + part.len())?.copy_from_slice(part);
                at += part.len();
            }
            pack_hex(&digits, out).then_some(ID_UUID)
        }
        _ => None,
    }
}

const HEX: [u8; 16] = *b"0123456789abcdef";

/// Writes the text of a packed id of form `form` into `scratch`; returns its length.
fn unpack(form: u8, packed: &[u8], scratch: &mut IdScratch) -> usize {
    let mut at = 0;
    for &byte in packed.iter().take(PACKED) {
        for digit in [byte >> 4, byte & 0x0f] {
            if form == ID_UUID && UUID_DASHES.contains(&at) {
                if let Some(d) = scratch.get_mut(at) {
                    *d = b'-';
                }
                at += 1;
            }
            if let (Some(d), Some(&c)) = (scratch.get_mut(at), HEX.get(usize::from(digit))) {
                *d = c;
            }
            at += 1;
        }
    }
    at
}

impl Buffered {
    pub(crate) fn new(
        t: i64,
        event_id: &str,
        event_type: EventType,
        user_id: Option<&str>,
        position_start: f64,
        position_end: f64,
    ) -> Self {
        let texts = Self::inline(event_id, event_type, user_id).unwrap_or_else(|| {
            Texts::Spilled(Box::new(Spilled {
                event_type,
                event_id: event_id.into(),
                user_id: user_id.map(Into::into),
            }))
        });
        Buffered {
            t,
            position_start,
            position_end,
            texts,
        }
    }

    /// The buffered form of `event`.
    pub(crate) fn of(event: &PlaybackEvent) -> Self {
        Self::new(
            event.event_time_ms(),
            &event.event_id,
            event.event_type,
            event.user_id.as_deref(),
            event.position_start,
            event.position_end,
        )
    }

    /// The inline texts, when they fit.
    fn inline(event_id: &str, event_type: EventType, user_id: Option<&str>) -> Option<Texts> {
        let mut inline = Inline {
            event_type,
            id: 0,
            user: NO_USER,
            bytes: [0; TEXT_BYTES],
        };
        let id_len = match pack(event_id, &mut inline.bytes) {
            Some(form) => {
                inline.id = form;
                PACKED
            }
            None => {
                let len = event_id.len();
                inline
                    .bytes
                    .get_mut(..len)?
                    .copy_from_slice(event_id.as_bytes());
                inline.id = u8::try_from(len).ok()?;
                len
            }
        };
        if let Some(user) = user_id {
            let end = id_len.checked_add(user.len())?;
            inline
                .bytes
                .get_mut(id_len..end)?
                .copy_from_slice(user.as_bytes());
            // Below NO_USER: the inline bytes are fewer.
            inline.user = u8::try_from(user.len()).ok()?;
        }
        Some(Texts::Inline(inline))
    }

    pub(crate) fn event_type(&self) -> EventType {
        match &self.texts {
            Texts::Inline(i) => i.event_type,
            Texts::Spilled(s) => s.event_type,
        }
    }

    pub(crate) fn is_stop(&self) -> bool {
        self.event_type() == EventType::Stop
    }

    /// The event id, decoded into `scratch` when packed.
    pub(crate) fn event_id<'a>(&'a self, scratch: &'a mut IdScratch) -> &'a str {
        match &self.texts {
            Texts::Inline(i) if i.is_packed() => {
                let len = unpack(i.id, &i.bytes, scratch);
                std::str::from_utf8(scratch.get(..len).unwrap_or_default()).unwrap_or_default()
            }
            Texts::Inline(i) => {
                // Copied whole from a `&str`: valid UTF-8.
                std::str::from_utf8(i.bytes.get(..i.id_bytes()).unwrap_or_default())
                    .unwrap_or_default()
            }
            Texts::Spilled(s) => &s.event_id,
        }
    }

    pub(crate) fn user_id(&self) -> Option<&str> {
        match &self.texts {
            Texts::Inline(i) if i.user == NO_USER => None,
            Texts::Inline(i) => {
                let start = i.id_bytes();
                let user = i.bytes.get(start..start + usize::from(i.user))?;
                // Copied whole from a `&str`: valid UTF-8.
                std::str::from_utf8(user).ok()
            }
            Texts::Spilled(s) => s.user_id.as_deref(),
        }
    }

    /// Order by `(event_time, event_id)`.
    #[inline]
    pub(crate) fn cmp_order(&self, other: &Self) -> Ordering {
        self.t.cmp(&other.t).then_with(|| self.cmp_id(other))
    }

    fn cmp_id(&self, other: &Self) -> Ordering {
        if let (Texts::Inline(a), Texts::Inline(b)) = (&self.texts, &other.texts) {
            if a.id == b.id && a.is_packed() {
                return a.bytes.get(..PACKED).cmp(&b.bytes.get(..PACKED));
            }
        }
        let (mut x, mut y) = ([0; 36], [0; 36]);
        self.event_id(&mut x).cmp(other.event_id(&mut y))
    }
}

/// The same event (whatever the representation).
impl PartialEq for Buffered {
    fn eq(&self, other: &Self) -> bool {
        self.t == other.t
            && self.position_start == other.position_start
            && self.position_end == other.position_end
            && self.event_type() == other.event_type()
            && self.cmp_id(other) == Ordering::Equal
            && self.user_id() == other.user_id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffered(t: i64, id: &str, user: Option<&str>) -> Buffered {
        Buffered::new(t, id, EventType::Heartbeat, user, 1.5, 2.5)
    }

    #[test]
    fn an_event_takes_one_cache_line() {
        assert_eq!(std::mem::size_of::<Buffered>(), 64);
    }

    /// Every form (packed hex, packed UUID, plain inline, spilled) gives its texts
    /// back and orders like the strings, against every other form.
    #[test]
    fn ids_keep_their_text_and_string_order_in_every_form() {
        let long_user = "u".repeat(40);
        let ids = [
            "66b0108bf4509d0e1c5e8eb0cfc4cd02",
            "66b0108bf4509d0e1c5e8eb0cfc4cd03",
            "00000000000000000000000000000000",
            "ffffffffffffffffffffffffffffffff",
            "66B0108BF4509D0E1C5E8EB0CFC4CD02", // upper case: plain
            "66b0108bf4509d0e1c5e8eb0cfc4cd0",  // 31 digits: plain
            "66b0108bf4509d0e1c5e8eb0cfc4cd0g", // not hex: plain
            "8f14e45f-ceea-467a-9a4b-0c2d5e1f3a77",
            "8f14e45f-ceea-467a-9a4b-0c2d5e1f3a78",
            "8f14e45f-ceea-467a-9a4b-0c2d5e1f3a7",
            "8f14e45f-ceea-467a-9a4b-0c2d5e1f3a7-", // dash misplaced: plain
            "8f14e45fceea-467a-9a4b-0c2d5e1f3a77-x",
            "",
            "1",
            "é-héhé",
            "66b0108bf4509d0e1c5e8eb0cfc4cd02-and-then-some-more-text",
        ];
        let users = [
            None,
            Some("user-0012449"),
            Some(""),
            Some(long_user.as_str()),
        ];
        let mut all = Vec::new();
        for id in ids {
            for user in users {
                let b = buffered(7, id, user);
                let mut scratch = [0; 36];
                assert_eq!(b.event_id(&mut scratch), id);
                assert_eq!(b.user_id(), user);
                assert_eq!(b.event_type(), EventType::Heartbeat);
                all.push((id, user, b));
            }
        }
        for (id_a, user_a, a) in &all {
            for (id_b, user_b, b) in &all {
                assert_eq!(a.cmp_order(b), id_a.cmp(id_b), "{id_a:?} vs {id_b:?}");
                assert_eq!(a == b, id_a == id_b && user_a == user_b);
            }
        }
        // Time first.
        assert_eq!(
            buffered(6, "ffffffffffffffffffffffffffffffff", None).cmp_order(&buffered(
                7,
                "00000000000000000000000000000000",
                None
            )),
            Ordering::Less
        );
    }

    /// The eight-at-a-time check and packing agree with a byte-by-byte reference for
    /// every byte value at every position.
    #[test]
    fn hex_packing_agrees_with_a_digit_by_digit_reference() {
        let reference = |digits: &[u8; 32]| -> Option<[u8; 16]> {
            let value = |b: u8| match b {
                b'0'..=b'9' => Some(b - b'0'),
                b'a'..=b'f' => Some(b - b'a' + 10),
                _ => None,
            };
            let mut out = [0u8; 16];
            for (i, pair) in digits.chunks(2).enumerate() {
                out[i] = value(pair[0])? << 4 | value(pair[1])?;
            }
            Some(out)
        };
        let base = *b"0123456789abcdef66b0108bf4509d0e";
        for at in 0..32 {
            for byte in 0..=255u8 {
                let mut digits = base;
                digits[at] = byte;
                let mut out = [0u8; 16];
                let ok = pack_hex(&digits, &mut out);
                assert_eq!(
                    ok.then_some(out),
                    reference(&digits),
                    "byte {byte:#x} at {at}"
                );
            }
        }
    }

    #[test]
    fn packed_ids_are_held_inline_with_their_user() {
        let b = buffered(1, "66b0108bf4509d0e1c5e8eb0cfc4cd02", Some(&"u".repeat(20)));
        assert!(matches!(b.texts, Texts::Inline(Inline { id: ID_HEX, .. })));
        let b = buffered(1, "8f14e45f-ceea-467a-9a4b-0c2d5e1f3a77", Some("user-1"));
        assert!(matches!(b.texts, Texts::Inline(Inline { id: ID_UUID, .. })));
        let b = buffered(1, "x".repeat(30).as_str(), Some("user-1")); // 36 bytes: fits
        assert!(matches!(b.texts, Texts::Inline(Inline { id: 30, .. })));
        let b = buffered(1, "x".repeat(31).as_str(), Some("user-1"));
        assert!(matches!(b.texts, Texts::Spilled(_)));
    }
}

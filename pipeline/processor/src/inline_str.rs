//! Short strings held inline: the ids the per-event state keeps (event ids, uuids,
//! user and stream ids) without a heap allocation each.
//!
//! Per event the session buffer keeps the event's `event_id` and `user_id`, and the
//! resume tables keep four ids per `(user_id, stream_id)`. As `String`s that is an
//! allocation for every one of them, a free when the entry goes, and a pointer to
//! follow (a cache miss on a large table) for every comparison. Ids are short (a UUID
//! is 36 bytes), so they are held in the entry itself; a longer one (valid input
//! allows it) goes to the heap, with the same behaviour.
//!
//! Ordering and equality are those of the string (bytewise comparison of
//! UTF-8 is string order), and the serialized form is the plain string, so state
//! checkpointed with `String` fields restores into `InlineStr` fields and back.

use std::cmp::Ordering;
use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

/// Strings up to this many bytes are held inline (a UUID's 36 fit).
const INLINE_CAPACITY: usize = 38;

/// A string held inline when short (see the module docs).
#[derive(Clone)]
pub struct InlineStr(Repr);

/// Private, so that nothing but [`InlineStr::set`] writes the bytes: they are always
/// a whole `&str`'s, which is what lets [`InlineStr::as_str`] skip the UTF-8 check.
#[derive(Clone)]
enum Repr {
    /// `bytes[..len]` is the string's UTF-8 (always copied from a `&str`).
    Inline {
        /// Length in bytes.
        len: u8,
        /// The bytes (those after `len` are meaningless).
        bytes: [u8; INLINE_CAPACITY],
    },
    /// A string longer than [`INLINE_CAPACITY`].
    Heap(Box<str>),
}

impl InlineStr {
    /// The empty string.
    pub const EMPTY: InlineStr = InlineStr(Repr::Inline {
        len: 0,
        bytes: [0; INLINE_CAPACITY],
    });

    /// A copy of `s`.
    pub fn new(s: &str) -> Self {
        let mut out = Self::EMPTY;
        out.set(s);
        out
    }

    /// Replaces the value with a copy of `s`, without allocating when it fits inline.
    pub fn set(&mut self, s: &str) {
        if s.len() > INLINE_CAPACITY {
            self.0 = Repr::Heap(s.into());
            return;
        }
        if let Repr::Heap(_) = self.0 {
            *self = Self::EMPTY;
        }
        // In place: no temporary array, no drop check of the old value.
        if let Repr::Inline { len, bytes } = &mut self.0 {
            if let (Some(dest), Ok(n)) = (bytes.get_mut(..s.len()), u8::try_from(s.len())) {
                dest.copy_from_slice(s.as_bytes());
                *len = n;
            }
        }
    }

    /// Whether the string is held inline (not on the heap).
    pub fn is_inline(&self) -> bool {
        matches!(self.0, Repr::Inline { .. })
    }

    /// The string's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => bytes.get(..*len as usize).unwrap_or_default(),
            Repr::Heap(s) => s.as_bytes(),
        }
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // SAFETY: the inline bytes up to `len` are only ever written by `set`, as a
            // whole copy of a `&str` (valid UTF-8) with `len` its length (or, when
            // `len` were out of range, `as_bytes` gives the empty slice). The
            // representation is private, so nothing else writes them. Checking them
            // again (std's `from_utf8`) on every use cost ~1.5% of the processor bench.
            Repr::Inline { .. } => unsafe { std::str::from_utf8_unchecked(self.as_bytes()) },
            Repr::Heap(s) => s,
        }
    }
}

impl Default for InlineStr {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl Deref for InlineStr {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for InlineStr {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl From<&str> for InlineStr {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<InlineStr> for String {
    fn from(s: InlineStr) -> Self {
        match s.0 {
            Repr::Heap(s) => s.into(),
            Repr::Inline { .. } => s.as_str().to_owned(),
        }
    }
}

impl PartialEq for InlineStr {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for InlineStr {}

impl PartialEq<&str> for InlineStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialOrd for InlineStr {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for InlineStr {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl fmt::Debug for InlineStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for InlineStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for InlineStr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for InlineStr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = InlineStr;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<InlineStr, E> {
                Ok(InlineStr::new(v))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_strings_behave_like_strings() {
        let uuid = "8f14e45f-ceea-467a-9a4b-0c2d5e1f3a77";
        let long = "é".repeat(30); // 60 bytes: the heap form
        let short_accents = "é".repeat(10); // 20 bytes, inline
        let samples = ["", "a", "b", "ab", uuid, &long, &short_accents, "zz"];
        for a in samples {
            let ia = InlineStr::new(a);
            assert_eq!(ia.as_str(), a);
            assert_eq!(String::from(ia.clone()), a);
            assert_eq!(format!("{ia:?}"), format!("{a:?}"));
            for b in samples {
                let ib = InlineStr::new(b);
                assert_eq!(ia.cmp(&ib), a.cmp(b), "{a:?} vs {b:?}");
                assert_eq!(ia == ib, a == b);
            }
        }
        assert!(InlineStr::new(uuid).is_inline());
        assert!(!InlineStr::new(&long).is_inline());
        // Setting a short value over a long one (and back) keeps the value exact.
        let mut s = InlineStr::new(&long);
        s.set("x");
        assert_eq!(s, "x");
        s.set(&long);
        assert_eq!(s.as_str(), long);
        // A shorter inline value over a longer one leaves nothing of the old.
        let mut s = InlineStr::new(uuid);
        s.set("ab");
        assert_eq!(s, "ab");
        assert_eq!(s.cmp(&InlineStr::new("ab")), Ordering::Equal);
    }

    #[test]
    fn serializes_as_the_plain_string() {
        let long = "x".repeat(100);
        for v in ["", "user-1", long.as_str()] {
            let json = serde_json::to_string(&InlineStr::new(v)).unwrap_or_default();
            assert_eq!(json, serde_json::to_string(v).unwrap_or_default());
            let back: InlineStr = serde_json::from_str(&json).unwrap_or_default();
            assert_eq!(back, v);
            let as_string: String = serde_json::from_str(&json).unwrap_or_default();
            assert_eq!(as_string, v);
        }
    }
}

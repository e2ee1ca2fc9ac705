//! The derived `event_id` of a playback event that arrives without one.
//!
//! Dedup (SPEC section 3) counts events with the same `(uuid, event_id)` once, so a
//! producer that omits `event_id` gets one computed from the event's content, and a
//! producer in another language can compute the very same id itself. The recipe:
//!
//! 1. Apply the defaults first (`event_type` = `heartbeat`, `position_start` =
//!    `position_end`, a `start` without positions gets 0 for both) and convert
//!    `event_time` to integer epoch milliseconds (RFC 3339 fractions below a millisecond
//!    are truncated).
//! 2. Build the UTF-8 string
//!    `uuid 0x1F event_time_ms 0x1F event_type 0x1F position_start 0x1F position_end`,
//!    i.e. the five parts joined by the ASCII unit separator (byte `0x1F`), where
//!    `event_time_ms` is a base-10 integer (`-` sign if negative, no leading zeros),
//!    `event_type` is the lowercase name, and each position is formatted exactly as
//!    JavaScript's `String(x)` / `JSON.stringify(x)` formats a number: shortest
//!    round-trip digits, no trailing `.0` (`5`, `12.5`, `0.1`), plain notation for
//!    1e-6 <= x < 1e21 and otherwise `1e+21` / `1e-7` style.
//! 3. `event_id` = lowercase hex of the first 16 bytes of SHA-256 of that string
//!    (32 hex characters).
//!
//! Example: uuid `u-1`, event_time 1748736000000, heartbeat, 10 -> 15 gives
//! `66b0108bf4509d0e1c5e8eb0cfc4cd02` (python:
//! `hashlib.sha256("u-1\x1f1748736000000\x1fheartbeat\x1f10\x1f15".encode()).hexdigest()[:32]`).

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::event::EventType;

/// Separator between the hashed parts: ASCII unit separator.
const SEPARATOR: char = '\u{1f}';

/// Computes the derived `event_id` (see the module docs for the exact recipe).
pub fn derive_event_id(
    uuid: &str,
    event_time_ms: i64,
    event_type: EventType,
    position_start: f64,
    position_end: f64,
) -> String {
    // One buffer, numbers written straight into it (this runs for every event that
    // arrives without an id, so it avoids the temporary strings of `format!`).
    let mut text = String::with_capacity(uuid.len() + 64);
    text.push_str(uuid);
    text.push(SEPARATOR);
    // Writing to a String cannot fail.
    let _ = write!(text, "{event_time_ms}");
    text.push(SEPARATOR);
    text.push_str(event_type.as_str());
    text.push(SEPARATOR);
    write_number_js(&mut text, position_start);
    text.push(SEPARATOR);
    write_number_js(&mut text, position_end);
    let digest = Sha256::digest(text.as_bytes());
    let mut hex = String::with_capacity(32);
    for byte in digest.iter().take(16) {
        hex.push(HEX[usize::from(byte >> 4)]);
        hex.push(HEX[usize::from(byte & 0x0f)]);
    }
    hex
}

const HEX: [char; 16] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'a', 'b', 'c', 'd', 'e', 'f',
];

/// Formats a finite double as ECMAScript's `Number::toString` does (what
/// `JSON.stringify` writes): shortest round-trip digits, `-0` as `0`.
///
/// Non-finite values (never produced by the parser) are written `NaN`, `Infinity`,
/// `-Infinity` as in JavaScript.
pub fn format_number_js(x: f64) -> String {
    let mut out = String::new();
    write_number_js(&mut out, x);
    out
}

/// [`format_number_js`], appended to `out`.
fn write_number_js(out: &mut String, x: f64) {
    if x.is_nan() {
        out.push_str("NaN");
        return;
    }
    if x.is_infinite() {
        out.push_str(if x > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    if x == 0.0 {
        out.push('0');
        return;
    }
    // Writing to a String cannot fail (the `let _` below).
    // Fast path for whole numbers (most positions): JavaScript prints them plainly,
    // and below 2^53 the conversion to i64 is exact.
    if x.fract() == 0.0 && x.abs() < 9_007_199_254_740_992.0 {
        let _ = write!(out, "{}", x as i64);
        return;
    }
    // In JavaScript's plain-notation range, Rust's `Display` prints the same shortest
    // round-trip digits without an exponent.
    if (1e-6..1e21).contains(&x.abs()) {
        let _ = write!(out, "{x}");
        return;
    }
    out.push_str(&format_number_general(x));
}

/// The general case of [`format_number_js`] (finite, non-zero), from the shortest
/// round-trip digits.
fn format_number_general(x: f64) -> String {
    let sign = if x < 0.0 { "-" } else { "" };
    // Rust's `{:e}` prints the shortest round-trip digits as `d.ddde<exp>`.
    let sci = format!("{:e}", x.abs());
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let exponent: i64 = exponent.parse().unwrap_or(0);
    let k = digits.len() as i64;
    // The decimal point sits after `n` digits: value = 0.digits * 10^n.
    let n = exponent + 1;
    let body = if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        let (int, frac) = digits.split_at(n as usize);
        format!("{int}.{frac}")
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat((-n) as usize))
    } else {
        let exp_sign = if n >= 1 { '+' } else { '-' };
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        format!("{first}{frac}e{exp_sign}{}", (n - 1).abs())
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_paths_agree_with_the_general_algorithm() {
        // A fixed xorshift sequence over many magnitudes, positive and negative.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mantissa = (state >> 11) as f64 / (1u64 << 53) as f64;
            let exponent = (state % 40) as i32 - 10;
            let mut x = mantissa * 10f64.powi(exponent);
            if state.is_multiple_of(3) {
                x = x.round();
            }
            if state.is_multiple_of(5) {
                x = -x;
            }
            if x == 0.0 {
                continue;
            }
            assert_eq!(
                format_number_js(x),
                format_number_general(x),
                "formatting {x:?}"
            );
        }
    }

    #[test]
    fn formats_like_javascript() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "0"),
            (5.0, "5"),
            (12.5, "12.5"),
            (0.1, "0.1"),
            (0.1 + 0.2, "0.30000000000000004"),
            (100.0, "100"),
            (123_456_789_012.0, "123456789012"),
            (1e21, "1e+21"),
            (1.5e22, "1.5e+22"),
            (1e20, "100000000000000000000"),
            (0.000001, "0.000001"),
            (1e-7, "1e-7"),
            (1.25e-7, "1.25e-7"),
            (3600.123, "3600.123"),
            (-2.5, "-2.5"),
            (-7.0, "-7"),
            (9_007_199_254_740_991.0, "9007199254740991"),
            (9_007_199_254_740_992.0, "9007199254740992"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
        ];
        for (x, want) in cases {
            assert_eq!(format_number_js(*x), *want, "formatting {x:?}");
        }
    }

    #[test]
    fn fixed_vector() {
        // Reproduced independently with Python's hashlib (see the module docs).
        let id = derive_event_id("u-1", 1_748_736_000_000, EventType::Heartbeat, 10.0, 15.0);
        assert_eq!(id, "66b0108bf4509d0e1c5e8eb0cfc4cd02");
        assert_eq!(id.len(), 32);
        let id2 = derive_event_id("u-1", 1_748_736_000_000, EventType::Heartbeat, 10.0, 15.5);
        assert_ne!(id, id2);
        let id3 = derive_event_id("u-1", 1_748_736_000_000, EventType::Seek, 12.5, 0.1);
        assert_eq!(id3, "7215a61a20939b3a9630ab91a5016ed6");
    }
}

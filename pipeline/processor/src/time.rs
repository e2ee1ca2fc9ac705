//! Event-time arithmetic shared by every operator: watermark values, epoch-aligned
//! windows, calendar days in the configured time zone, and an order-independent sum of
//! watched seconds.
//!
//! All instants are epoch milliseconds (`i64`). A watermark of [`Watermark::MIN`]
//! means "nothing seen yet" (minus infinity) and [`Watermark::MAX`] is the
//! +infinity that drain mode finalizes with; arithmetic saturates so neither overflows.

use std::cell::Cell;

use chrono::{NaiveDate, TimeZone};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::config::Settings;

/// An event-time watermark in epoch ms: no event with `event_time < W` is expected
/// any more (within the out-of-orderness bound).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Watermark(pub i64);

impl Watermark {
    /// Minus infinity: nothing seen yet.
    pub const MIN: Watermark = Watermark(i64::MIN);
    /// Plus infinity: everything is final (drain mode).
    pub const MAX: Watermark = Watermark(i64::MAX);

    /// The value in epoch ms.
    pub fn millis(self) -> i64 {
        self.0
    }
}

/// Start of the epoch-aligned window of length `window_ms` that contains `t`.
pub fn window_start(t: i64, window_ms: i64) -> i64 {
    t.div_euclid(window_ms) * window_ms
}

/// The smallest window boundary `>= t`.
pub fn ceil_to_window(t: i64, window_ms: i64) -> i64 {
    let start = window_start(t, window_ms);
    if start == t {
        t
    } else {
        start.saturating_add(window_ms)
    }
}

/// Calendar days of the configured time zone: which day an instant falls on, and when
/// a day ends (the first instant of the next local day, in UTC ms).
///
/// DST days are 23 or 25 hours long and some zones skip midnight altogether; day
/// bounds are therefore found by searching instants, never by adding 24 h.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calendar {
    tz: Tz,
}

impl Calendar {
    /// The calendar of `tz`.
    pub fn new(tz: Tz) -> Self {
        Self { tz }
    }

    /// The calendar of the settings' time zone.
    pub fn of(settings: &Settings) -> Self {
        Self::new(settings.time_zone())
    }

    /// The local date of instant `t` (epoch ms).
    pub fn day_of(&self, t: i64) -> NaiveDate {
        self.tz.timestamp_millis_opt(t).single().map_or_else(
            // Out of chrono's range (hand-built events only): clamp to the extremes.
            || {
                if t < 0 {
                    NaiveDate::MIN
                } else {
                    NaiveDate::MAX
                }
            },
            |dt| dt.date_naive(),
        )
    }

    /// First instant (epoch ms) whose local date is `day` or later.
    pub fn day_start(&self, day: NaiveDate) -> i64 {
        let Some(midnight) = day.and_hms_opt(0, 0, 0) else {
            return i64::MIN;
        };
        // Local midnight is within a day of UTC midnight in every zone; search that span
        // for the first instant whose local date reaches `day`.
        let utc_midnight = midnight.and_utc().timestamp_millis();
        let mut lo = utc_midnight.saturating_sub(36 * 3_600_000);
        let mut hi = utc_midnight.saturating_add(36 * 3_600_000);
        // Invariant: day_of(lo) < day <= day_of(hi).
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.day_of(mid) >= day {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        hi
    }

    /// End of `day` (exclusive): the first instant of the next local day.
    pub fn day_end(&self, day: NaiveDate) -> i64 {
        match day.succ_opt() {
            Some(next) => self.day_start(next),
            None => i64::MAX,
        }
    }
}

/// One local day: its date and its bounds `[start, end)` in epoch ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaySpan {
    /// The local date.
    pub day: NaiveDate,
    /// First instant of the day.
    pub start: i64,
    /// First instant of the next day.
    pub end: i64,
}

/// A one-entry cache of the last [`DaySpan`] looked up, so that the per-event day
/// lookup is two comparisons (finding a day's bounds searches instants). Not part of
/// checkpointed state: operators hold it with `#[serde(skip)]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayCache(Cell<Option<DaySpan>>);

impl Calendar {
    /// The local day containing `t`, through `cache`.
    pub fn locate(&self, t: i64, cache: &DayCache) -> DaySpan {
        if let Some(span) = cache.0.get() {
            if span.start <= t && t < span.end {
                return span;
            }
        }
        let day = self.day_of(t);
        let span = DaySpan {
            day,
            start: self.day_start(day),
            end: self.day_end(day),
        };
        if span.start <= t && t < span.end {
            cache.0.set(Some(span));
        }
        span
    }
}

/// Sub-second resolution of [`WatchedSum`]: 2^-64 s, far below an `f64`'s precision
/// for any realistic duration, so a single term converts back to the very same `f64`.
const FIXED_SCALE: f64 = 18_446_744_073_709_551_616.0;

/// The range of terms [`WatchedSum::of_seconds`] converts without rounding: from
/// 2^-12 s (below, a term has bits under 2^-64 s) to 2^62 s (whole seconds fit i64).
const FAST_MIN_SECONDS: f64 = 1.0 / 4096.0;
const FAST_MAX_SECONDS: f64 = 4_611_686_018_427_387_904.0;

/// A sum of watched seconds that does not depend on the order of its terms.
///
/// Floating-point addition is not associative, so summing the same events in another
/// arrival order, or per partition and then merged, could differ in the last bit and a
/// replay would not reproduce a row exactly. Each term is converted once to a fixed-point
/// integer of 2^-64 s and summed in an `i128` (exact, associative; saturates beyond
/// ~9e18 s); the total is converted back to `f64` once. The reference implementation
/// uses the same type, so streaming and batch agree bit for bit.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct WatchedSum(i128);

impl WatchedSum {
    /// The sum of nothing.
    pub const ZERO: WatchedSum = WatchedSum(0);

    /// One term (negative or NaN terms count as 0, as `max(0, end - start)` does).
    pub fn of_seconds(seconds: f64) -> Self {
        if seconds.is_nan() || seconds <= 0.0 {
            return Self::ZERO;
        }
        // Every term of at least 2^-12 s (its last mantissa bit at least 2^-64 s) is a
        // whole number of 2^-64 s: its whole seconds and the rest, both exact, make
        // the fixed-point value without the rounding and the float-to-`i128`
        // conversion, two library calls per event (the same value, see the test).
        if (FAST_MIN_SECONDS..FAST_MAX_SECONDS).contains(&seconds) {
            let whole = seconds as i64;
            let rest = seconds - whole as f64;
            return WatchedSum((i128::from(whole) << 64) | i128::from((rest * FIXED_SCALE) as u64));
        }
        // `as` saturates for out-of-range floats.
        WatchedSum((seconds * FIXED_SCALE).round() as i128)
    }

    /// The total in seconds.
    pub fn seconds(self) -> f64 {
        self.0 as f64 / FIXED_SCALE
    }
}

impl std::ops::Add for WatchedSum {
    type Output = WatchedSum;

    fn add(self, other: WatchedSum) -> WatchedSum {
        WatchedSum(self.0.saturating_add(other.0))
    }
}

impl std::ops::AddAssign for WatchedSum {
    fn add_assign(&mut self, other: WatchedSum) {
        *self = *self + other;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The split conversion gives the very value of the rounding one, over random
    /// terms of every magnitude and at the edges of its range.
    #[test]
    fn watched_terms_convert_exactly_as_rounded() {
        let rounded = |s: f64| WatchedSum((s * FIXED_SCALE).round() as i128);
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut terms = vec![
            FAST_MIN_SECONDS,
            FAST_MIN_SECONDS * 0.75,
            FAST_MAX_SECONDS,
            FAST_MAX_SECONDS * 0.999,
            0.5,
            1.0,
            5.0,
            4.999999999999999,
            1e-9,
            86_400.0,
        ];
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // A random mantissa at a random magnitude from 2^-40 to 2^70 s (and
            // many terms of 0-100 s with millisecond digits).
            let mantissa = 1.0 + (state >> 12) as f64 / 4_503_599_627_370_496.0;
            let exponent = (state % 111) as i32 - 40;
            terms.push(mantissa * 2f64.powi(exponent));
            terms.push((state % 100_000) as f64 / 1000.0);
        }
        for term in terms {
            assert_eq!(WatchedSum::of_seconds(term), rounded(term), "{term:e}");
        }
    }

    fn ms(text: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn windows_are_epoch_aligned_half_open() {
        assert_eq!(window_start(29_999, 30_000), 0);
        assert_eq!(window_start(30_000, 30_000), 30_000);
        assert_eq!(window_start(-1, 30_000), -30_000);
        assert_eq!(ceil_to_window(30_000, 30_000), 30_000);
        assert_eq!(ceil_to_window(30_001, 30_000), 60_000);
    }

    #[test]
    fn utc_days() {
        let cal = Calendar::new(Tz::UTC);
        let d = NaiveDate::from_ymd_opt(2025, 6, 1).unwrap();
        assert_eq!(cal.day_start(d), ms("2025-06-01T00:00:00Z"));
        assert_eq!(cal.day_end(d), ms("2025-06-02T00:00:00Z"));
        assert_eq!(cal.day_of(ms("2025-06-01T23:59:59.999Z")), d);
        assert_eq!(
            cal.day_of(ms("2025-06-02T00:00:00Z")),
            d.succ_opt().unwrap()
        );
    }

    #[test]
    fn dst_days_are_23_and_25_hours() {
        let cal = Calendar::new(chrono_tz::Europe::Paris);
        let spring = NaiveDate::from_ymd_opt(2025, 3, 30).unwrap();
        assert_eq!(cal.day_start(spring), ms("2025-03-30T00:00:00+01:00"));
        assert_eq!(cal.day_end(spring) - cal.day_start(spring), 23 * 3_600_000);
        let autumn = NaiveDate::from_ymd_opt(2025, 10, 26).unwrap();
        assert_eq!(cal.day_end(autumn) - cal.day_start(autumn), 25 * 3_600_000);
        assert_eq!(cal.day_of(ms("2025-10-26T23:30:00+01:00")), autumn);
    }

    #[test]
    fn zone_that_skips_midnight() {
        // Santiago moved clocks from 00:00 to 01:00 on 2024-09-08.
        let cal = Calendar::new(chrono_tz::America::Santiago);
        let day = NaiveDate::from_ymd_opt(2024, 9, 8).unwrap();
        assert_eq!(cal.day_start(day), ms("2024-09-08T01:00:00-03:00"));
        assert_eq!(cal.day_end(day), ms("2024-09-09T00:00:00-03:00"));
    }

    #[test]
    fn watched_sum_is_order_independent() {
        let terms = [0.1, 0.2, 0.3, 1e-9, 12345.678, 5.0];
        let fwd = terms
            .iter()
            .fold(WatchedSum::ZERO, |s, t| s + WatchedSum::of_seconds(*t));
        let back = terms
            .iter()
            .rev()
            .fold(WatchedSum::ZERO, |s, t| s + WatchedSum::of_seconds(*t));
        assert_eq!(fwd, back);
        assert!((fwd.seconds() - 12351.278000001).abs() < 1e-9);
        assert_eq!(WatchedSum::of_seconds(0.1).seconds(), 0.1);
        assert_eq!(WatchedSum::of_seconds(-3.0), WatchedSum::ZERO);
        assert_eq!(WatchedSum::of_seconds(2.5).seconds(), 2.5);
    }
}

//! Test-only generator of playback event records, shaped like the traffic of
//! `pipeline/generator` (same field order and styles: 36-character uuids, `live-NNN` /
//! `vod-NNNNN` streams, epoch-ms or RFC 3339 times in UTC or with an offset, positions
//! written as `seconds.mmm`, an `event_id` on half the records), written by hand here
//! because the generator crate depends on this one. Deterministic (xorshift).

use crate::event::EventType;

/// 2025-06-01T00:00:00Z, the clock the generated records are valid against.
pub(crate) const NOW_MS: i64 = 1_748_736_000_000;

/// A small deterministic PRNG (xorshift64*).
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias does not matter here).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// `ms` as RFC 3339 with milliseconds at `offset_min` (`Z` when `z` and offset 0).
pub(crate) fn rfc3339(ms: i64, offset_min: i64, z: bool) -> String {
    let local = ms + offset_min * 60_000;
    let (y, mo, d) = civil_from_days(local.div_euclid(86_400_000));
    let t = local.rem_euclid(86_400_000);
    let mut s = format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}",
        t / 3_600_000,
        t / 60_000 % 60,
        t / 1000 % 60,
        t % 1000
    );
    if z && offset_min == 0 {
        s.push('Z');
    } else {
        let sign = if offset_min < 0 { '-' } else { '+' };
        let a = offset_min.abs();
        s.push_str(&format!("{sign}{:02}:{:02}", a / 60, a % 60));
    }
    s
}

/// One valid record as `pipeline/generator` would write it.
pub(crate) fn realistic_event(rng: &mut Rng) -> String {
    let mut uuid = String::with_capacity(36);
    for i in 0..32 {
        if matches!(i, 8 | 12 | 16 | 20) {
            uuid.push('-');
        }
        uuid.push(char::from(b"0123456789abcdef"[rng.below(16) as usize]));
    }
    let stream = if rng.chance(50) {
        format!("live-{:03}", rng.below(100))
    } else {
        format!("vod-{:05}", rng.below(10_000))
    };
    let mut s = format!(r#"{{"uuid":"{uuid}","stream_id":"{stream}""#);
    match rng.below(3) {
        0 => s.push_str(&format!(
            r#","user_id":"user-{:07}""#,
            rng.below(10_000_000)
        )),
        1 => s.push_str(r#","user_id":null"#),
        _ => {}
    }
    let event_type = EventType::ALL[rng.below(5) as usize];
    if event_type != EventType::Heartbeat || rng.chance(70) {
        s.push_str(&format!(r#","event_type":"{event_type}""#));
    }
    let time = NOW_MS - rng.below(3 * 86_400_000) as i64;
    match rng.below(10) {
        0..=3 => s.push_str(&format!(r#","event_time":{time}"#)),
        4..=6 => s.push_str(&format!(r#","event_time":"{}""#, rfc3339(time, 0, true))),
        _ => {
            let offset = [540, -300, 330, 60, -420][rng.below(5) as usize];
            s.push_str(&format!(
                r#","event_time":"{}""#,
                rfc3339(time, offset, false)
            ));
        }
    }
    let start = rng.below(7_200_000);
    let end = if event_type == EventType::Seek {
        rng.below(7_200_000)
    } else {
        start + rng.below(30_000)
    };
    s.push_str(&format!(
        r#","position_start":{}.{:03},"position_end":{}.{:03}"#,
        start / 1000,
        start % 1000,
        end / 1000,
        end % 1000
    ));
    if rng.chance(50) {
        s.push_str(&format!(r#","event_id":"ev-{}""#, rng.next_u64() >> 20));
    }
    s.push('}');
    s
}

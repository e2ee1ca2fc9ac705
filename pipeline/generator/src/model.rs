//! The simulated audience: viewer slots, their sessions, and the streams they watch.
//!
//! A [`Population`] holds a fixed number of viewer slots. Each slot is one person at a
//! time running a small state machine driven by the generator's event-time schedule:
//!
//! ```text
//! Start -> Heartbeat (every interval, position advancing) -> ... -> Stop | silence
//!             |-> Pause -> paused heartbeats (position still) -> Heartbeat
//!             |-> Seek (VOD: jump) -> Heartbeat
//! after a session: come back later (same uuid on the same stream, or a new uuid on
//! another stream), or leave (a new person, new uuid, takes the slot)
//! ```
//!
//! Live streams have a position that follows the clock (seconds since the live began)
//! and draw most viewers to a few popular streams; VOD titles have a length, start at
//! 0 or resume where the viewer left, and see pauses and seeks. Some persons share a
//! signed-in user with the neighbouring slot: one user on several devices, each device
//! its own uuid. [`Population::step`] advances one slot at one instant and says what it
//! emitted and when it next acts; it never allocates.

use playlake_schemas::EventType;

use crate::config::GeneratorConfig;
use crate::format::{uuid_from, Style, TimeStyle};
use crate::rng::{splitmix64, Rng};

const MINUTE_MS: u64 = 60_000;
/// Probability that a playing VOD viewer seeks during one heartbeat interval.
const SEEK_PER_BEAT: f64 = 0.02;
/// Probability that a playing VOD viewer pauses during one heartbeat interval.
const PAUSE_PER_BEAT: f64 = 0.012;
/// Share of sessions that end with a `stop` event (the rest just go silent).
const STOP_FRACTION: f64 = 0.7;
/// Share of finished sessions after which the same person comes back.
const RETURN_FRACTION: f64 = 0.45;
/// Share of returns that reuse the uuid (same player instance, same stream).
const SAME_UUID_FRACTION: f64 = 0.5;
/// Share of new persons who are the same user as the neighbouring slot's person.
const SHARED_USER_FRACTION: f64 = 0.08;
/// Mean number of heartbeats in a session.
const MEAN_SESSION_BEATS: f64 = 120.0;

/// One live stream or VOD title.
#[derive(Debug, Clone)]
pub(crate) struct StreamInfo {
    pub id: String,
    /// `Some(start)` for a live stream: position = seconds since `start`.
    pub live_start_ms: Option<i64>,
    /// VOD length (unused for live).
    pub vod_len_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Start,
    Heartbeat,
    Pause { paused_beats: u32 },
    PausedBeat { left: u32 },
    Seek { target_ms: u64 },
    Stop,
}

#[derive(Debug, Clone)]
struct Slot {
    user: Option<u64>,
    uuid: [u8; 36],
    /// No event of this uuid was emitted yet.
    uuid_fresh: bool,
    event_seq: u64,
    style: Style,
    stream: u32,
    pos_ms: u64,
    last_ms: i64,
    beats_left: u32,
    action: Action,
}

/// An event emitted by a slot, with the identity it belongs to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Emitted {
    pub uuid: [u8; 36],
    pub uuid_first: bool,
    pub stream: u32,
    pub user: Option<u64>,
    pub event_type: EventType,
    pub pos_start_ms: u64,
    pub pos_end_ms: u64,
    pub event_seq: u64,
    pub style: Style,
}

/// The viewer slots and the streams.
#[derive(Debug)]
pub(crate) struct Population {
    pub streams: Vec<StreamInfo>,
    slots: Vec<Slot>,
    live: u64,
    vod: u64,
    live_fraction: f64,
    user_fraction: f64,
    interval_ms: u64,
    next_person: u64,
    next_uuid: u64,
    uuid_salt: u64,
}

impl Population {
    /// Builds the streams and slots; returns the population and each slot's first
    /// action time.
    pub(crate) fn new(cfg: &GeneratorConfig, rng: &mut Rng) -> (Self, Vec<i64>) {
        let start = cfg.start_time_ms;
        let mut streams = Vec::with_capacity((cfg.live_streams + cfg.vod_streams) as usize);
        for i in 0..cfg.live_streams {
            let ago = rng.between(10 * MINUTE_MS, 360 * MINUTE_MS) as i64;
            streams.push(StreamInfo {
                id: format!("live-{i:03}"),
                live_start_ms: Some(start - ago),
                vod_len_ms: 0,
            });
        }
        for i in 0..cfg.vod_streams {
            streams.push(StreamInfo {
                id: format!("vod-{i:05}"),
                live_start_ms: None,
                vod_len_ms: rng.between(3 * MINUTE_MS, 120 * MINUTE_MS),
            });
        }
        let mut pop = Population {
            streams,
            slots: Vec::with_capacity(cfg.viewers as usize),
            live: cfg.live_streams.into(),
            vod: cfg.vod_streams.into(),
            live_fraction: cfg.live_fraction,
            user_fraction: cfg.user_fraction,
            interval_ms: cfg.heartbeat_interval_ms,
            next_person: 0,
            next_uuid: 0,
            uuid_salt: rng.next_u64(),
        };
        let arrival_spread = (cfg.duration_ms / 4).clamp(1, 2 * MINUTE_MS);
        let mut first = Vec::with_capacity(cfg.viewers as usize);
        for i in 0..cfg.viewers as usize {
            let slot = pop.new_slot(rng, i);
            pop.slots.push(slot);
            // Half the audience is already mid-session when the slice begins.
            if rng.chance(0.5) {
                let t = start + rng.below(cfg.heartbeat_interval_ms) as i64;
                let s = &mut pop.slots[i];
                s.action = Action::Heartbeat;
                s.last_ms = t - cfg.heartbeat_interval_ms as i64;
                s.beats_left = session_beats(rng);
                let info = &pop.streams[s.stream as usize];
                s.pos_ms = match info.live_start_ms {
                    Some(live) => (s.last_ms - live).max(0) as u64,
                    None => rng.below(info.vod_len_ms / 2),
                };
                first.push(t);
            } else {
                first.push(start + rng.below(arrival_spread) as i64);
            }
        }
        (pop, first)
    }

    /// Number of persons created so far (user ids are below this).
    pub(crate) fn persons(&self) -> u64 {
        self.next_person
    }

    /// A new person in slot `i` (which may not exist yet), about to start a session.
    fn new_slot(&mut self, rng: &mut Rng, i: usize) -> Slot {
        let person = self.next_person;
        self.next_person += 1;
        let neighbour = i
            .checked_sub(1)
            .and_then(|j| self.slots.get(j))
            .and_then(|s| s.user);
        let user = match neighbour {
            Some(user) if rng.chance(SHARED_USER_FRACTION) => Some(user),
            _ if rng.chance(self.user_fraction) => Some(person),
            _ => None,
        };
        let mut slot = Slot {
            user,
            uuid: [0; 36],
            uuid_fresh: true,
            event_seq: 0,
            style: random_style(rng),
            stream: 0,
            pos_ms: 0,
            last_ms: 0,
            beats_left: 0,
            action: Action::Start,
        };
        self.new_session_identity(rng, &mut slot);
        slot
    }

    /// A new player instance: fresh uuid and style, a stream, a starting position.
    fn new_session_identity(&mut self, rng: &mut Rng, slot: &mut Slot) {
        let a = splitmix64(self.next_uuid ^ self.uuid_salt);
        self.next_uuid += 1;
        slot.uuid = uuid_from(a, splitmix64(a));
        slot.uuid_fresh = true;
        slot.event_seq = 0;
        slot.style = random_style(rng);
        slot.stream = self.pick_stream(rng);
        let info = &self.streams[slot.stream as usize];
        slot.pos_ms = if info.live_start_ms.is_none() && rng.chance(0.2) {
            rng.below(info.vod_len_ms / 2)
        } else {
            0
        };
    }

    fn pick_stream(&self, rng: &mut Rng) -> u32 {
        let live = self.live > 0 && (self.vod == 0 || rng.chance(self.live_fraction));
        // Skewed popularity: index = n * u^2 favours the first streams.
        let u = rng.unit();
        let (base, n) = if live {
            (0, self.live)
        } else {
            (self.live, self.vod)
        };
        let idx = ((n as f64 * u * u) as u64).min(n.saturating_sub(1));
        (base + idx) as u32
    }

    /// Advances slot `i` at event time `t`: the event it emits (if any) and when it
    /// acts next.
    pub(crate) fn step(&mut self, rng: &mut Rng, i: usize, t: i64) -> (Option<Emitted>, i64) {
        let interval = self.interval_ms;
        let Some(slot) = self.slots.get_mut(i) else {
            return (None, i64::MAX);
        };
        let info = &self.streams[slot.stream as usize];
        let action = slot.action;
        let (event_type, from, to) = match action {
            Action::Start => {
                if let Some(live) = info.live_start_ms {
                    slot.pos_ms = (t - live).max(0) as u64;
                }
                slot.last_ms = t;
                slot.beats_left = session_beats(rng);
                (EventType::Start, slot.pos_ms, slot.pos_ms)
            }
            Action::Heartbeat => {
                let from = slot.pos_ms;
                let mut adv = advance(slot, info, t);
                if info.live_start_ms.is_none() && adv > 0 && rng.chance(0.05) {
                    adv -= rng.below(adv.min(400)); // buffering
                }
                slot.pos_ms += adv;
                (EventType::Heartbeat, from, slot.pos_ms)
            }
            Action::Pause { .. } | Action::Stop => {
                let from = slot.pos_ms;
                slot.pos_ms += advance(slot, info, t);
                let kind = if action == Action::Stop {
                    EventType::Stop
                } else {
                    EventType::Pause
                };
                (kind, from, slot.pos_ms)
            }
            Action::PausedBeat { .. } => {
                slot.last_ms = t;
                (EventType::Heartbeat, slot.pos_ms, slot.pos_ms)
            }
            Action::Seek { target_ms } => {
                let from = slot.pos_ms + advance(slot, info, t);
                slot.pos_ms = target_ms;
                (EventType::Seek, from, target_ms)
            }
        };
        let emitted = Emitted {
            uuid: slot.uuid,
            uuid_first: slot.uuid_fresh,
            stream: slot.stream,
            user: slot.user,
            event_type,
            pos_start_ms: from,
            pos_end_ms: to,
            event_seq: slot.event_seq,
            style: slot.style,
        };
        slot.uuid_fresh = false;
        slot.event_seq += 1;
        let next = match action {
            Action::Start | Action::Heartbeat => self.plan_playing(rng, i, t),
            Action::Pause { paused_beats } => {
                slot.action = Action::PausedBeat { left: paused_beats };
                t + interval as i64
            }
            Action::PausedBeat { left } => {
                slot.action = if left <= 1 {
                    Action::Heartbeat
                } else {
                    Action::PausedBeat { left: left - 1 }
                };
                t + interval as i64
            }
            Action::Seek { .. } => {
                slot.action = Action::Heartbeat;
                t + interval as i64
            }
            Action::Stop => self.end_session(rng, i, t),
        };
        (Some(emitted), next)
    }

    /// After a playing event at `t`: the next action and its time.
    fn plan_playing(&mut self, rng: &mut Rng, i: usize, t: i64) -> i64 {
        let interval = self.interval_ms;
        let Some(slot) = self.slots.get_mut(i) else {
            return i64::MAX;
        };
        let info = &self.streams[slot.stream as usize];
        let mid = |rng: &mut Rng| t + rng.between(1, interval - 1) as i64;
        slot.beats_left = slot.beats_left.saturating_sub(1);
        let vod = info.live_start_ms.is_none();
        if vod {
            let remaining = info.vod_len_ms.saturating_sub(slot.pos_ms);
            if remaining <= interval {
                // The title ends before the next heartbeat: stop when it does.
                slot.action = Action::Stop;
                return t + remaining.max(1) as i64;
            }
        }
        if slot.beats_left == 0 {
            if rng.chance(STOP_FRACTION) {
                slot.action = Action::Stop;
                return mid(rng);
            }
            return self.end_session(rng, i, t); // just goes silent
        }
        if vod && rng.chance(SEEK_PER_BEAT) {
            let target_ms = rng.below(info.vod_len_ms * 9 / 10);
            slot.action = Action::Seek { target_ms };
            return mid(rng);
        }
        if vod && rng.chance(PAUSE_PER_BEAT) {
            slot.action = Action::Pause {
                paused_beats: rng.between(1, 8) as u32,
            };
            return mid(rng);
        }
        slot.action = Action::Heartbeat;
        t + interval as i64
    }

    /// The session of slot `i` ended at `t`: plan the slot's next session.
    fn end_session(&mut self, rng: &mut Rng, i: usize, t: i64) -> i64 {
        if i >= self.slots.len() {
            return i64::MAX;
        }
        let gap = if rng.chance(RETURN_FRACTION) {
            // Comes back after more than a session gap (30 s).
            if !rng.chance(SAME_UUID_FRACTION) {
                let mut slot = self.slots[i].clone();
                self.new_session_identity(rng, &mut slot);
                self.slots[i] = slot;
            }
            rng.between(31_000, 8 * MINUTE_MS)
        } else {
            // Leaves; someone new takes the slot a little later.
            let slot = self.new_slot(rng, i);
            self.slots[i] = slot;
            rng.between(1_000, MINUTE_MS)
        };
        self.slots[i].action = Action::Start;
        t + gap as i64
    }
}

/// Media time played since the last report, capped at the end of a VOD title.
fn advance(slot: &mut Slot, info: &StreamInfo, t: i64) -> u64 {
    let elapsed = (t - slot.last_ms).max(0) as u64;
    slot.last_ms = t;
    match info.live_start_ms {
        Some(_) => elapsed,
        None => elapsed.min(info.vod_len_ms.saturating_sub(slot.pos_ms)),
    }
}

/// Heartbeats in a session: 2 plus an exponential with the configured mean.
fn session_beats(rng: &mut Rng) -> u32 {
    let u = 1.0 - rng.unit(); // (0, 1]
    let extra = -u.ln() * MEAN_SESSION_BEATS;
    2 + extra.min(5_000.0) as u32
}

fn random_style(rng: &mut Rng) -> Style {
    const OFFSETS: [i32; 5] = [540, -300, 330, 60, -420];
    let time = match rng.below(10) {
        0..=3 => TimeStyle::EpochMs,
        4..=6 => TimeStyle::Utc,
        _ => TimeStyle::Offset(OFFSETS[rng.below(OFFSETS.len() as u64) as usize]),
    };
    Style {
        time,
        event_id: rng.chance(0.5),
        null_user: rng.chance(0.5),
        omit_heartbeat_type: rng.chance(0.3),
    }
}

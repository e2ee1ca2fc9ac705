//! The merge level on its own: identity of partials, finality over every source,
//! idleness, replays of final keys.

use chrono::NaiveDate;
use playlake_processor::{
    DailyPartial, MergeOperator, PartialOutcome, PartialRecord, Settings, SourceWatermark,
    ViewerPartial, WatchedSum, Watermark,
};

const T: i64 = 1_748_736_000_000;

fn viewers(source: i32, uuids: &[&str]) -> PartialRecord {
    PartialRecord::Viewers(ViewerPartial {
        source_partition: source,
        stream_id: "s".into(),
        window_start: T,
        uuids: uuids.iter().map(|u| u.to_string()).collect(),
        source_watermark: Watermark(T + 30_000),
    })
}

fn announce(partition: i32, watermark: i64, idle: bool) -> PartialRecord {
    PartialRecord::Watermark(SourceWatermark {
        partition,
        watermark: Watermark(watermark),
        idle,
    })
}

#[test]
fn replayed_partial_replaces_and_final_waits_for_every_source() {
    let mut m = MergeOperator::new(&Settings::default(), 0..2, 0);
    assert_eq!(m.apply(viewers(0, &["a", "b"]), 0), PartialOutcome::Applied);
    assert_eq!(m.apply(viewers(0, &["a", "b"]), 0), PartialOutcome::Applied);
    assert_eq!(m.apply(viewers(1, &["b", "c"]), 0), PartialOutcome::Applied);
    m.apply(announce(0, T + 30_000, false), 0);
    assert!(m.take_finished().0.is_empty(), "source 1 has not passed");
    m.apply(announce(1, T + 30_000, false), 0);
    let (rows, _) = m.take_finished();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].viewers, 3,
        "a, b, c: the replay replaced, the union dedups"
    );
    // A replay of a final key is recognized and dropped.
    assert_eq!(
        m.apply(viewers(0, &["a", "b"]), 0),
        PartialOutcome::AlreadyFinal
    );
    assert!(m.take_finished().0.is_empty());
}

#[test]
fn idle_source_stops_holding_back_and_json_round_trips() {
    let mut m = MergeOperator::new(&Settings::default(), 0..3, 0);
    m.apply(viewers(0, &["a"]), 0);
    m.apply(announce(0, T + 40_000, false), 0);
    m.apply(announce(1, T + 50_000, false), 0);
    let json = serde_json::to_string(&m).unwrap();
    let mut m: MergeOperator = serde_json::from_str(&json).unwrap();
    assert!(m.take_finished().0.is_empty(), "source 2 never announced");
    m.apply(announce(2, i64::MIN, true), 0);
    assert_eq!(m.watermark(), Watermark(T + 40_000));
    assert_eq!(m.take_finished().0.len(), 1);
}

#[test]
fn daily_rows_merge_sets_and_sums_and_take_peaks_from_windows() {
    let settings = Settings::default();
    let mut m = MergeOperator::new(&settings, 0..2, 0);
    let day = NaiveDate::from_ymd_opt(2025, 6, 1).unwrap();
    let daily = |source: i32, uuids: &[&str], users: &[&str], secs: f64| {
        PartialRecord::Daily(DailyPartial {
            source_partition: source,
            stream_id: "s".into(),
            day,
            uuids: uuids.iter().map(|u| u.to_string()).collect(),
            user_ids: users.iter().map(|u| u.to_string()).collect(),
            watched: WatchedSum::of_seconds(secs),
            source_watermark: Watermark(T + 86_400_000),
        })
    };
    m.apply(viewers(0, &["a", "b"]), 0);
    m.apply(viewers(1, &["c"]), 0);
    m.apply(daily(0, &["a", "b"], &["alice"], 10.5), 0);
    m.apply(daily(1, &["c"], &["alice", "bob"], 0.25), 0);
    m.apply(announce(0, T + 86_400_000, false), 0);
    m.apply(announce(1, T + 86_399_999, false), 0);
    let (windows, days) = m.take_finished();
    assert_eq!(windows.len(), 1);
    assert!(days.is_empty(), "the day ends at T + 24 h");
    m.apply(announce(1, T + 86_400_000, false), 0);
    let (_, days) = m.take_finished();
    assert_eq!(days.len(), 1);
    let d = &days[0];
    assert_eq!((d.views, d.unique_users, d.peak_viewers), (3, 2, 3));
    assert_eq!(d.watched_seconds, 10.75);
}

/// A source partition that goes idle still holds open windows (its own watermark
/// has not passed them). The merge stops waiting for it, so the partition must hand
/// over what it has seen first, or those windows would be final without it.
#[test]
fn an_idle_partition_hands_over_its_open_partials_before_the_merge_moves_on() {
    use playlake_processor::PartitionProcessor;
    let settings = Settings::default();
    let heartbeat = |id: &str, uuid: &str, t: i64| playlake_schemas::PlaybackEvent {
        event_id: id.to_owned(),
        uuid: uuid.to_owned(),
        stream_id: "s".to_owned(),
        user_id: None,
        event_type: playlake_schemas::EventType::Heartbeat,
        event_time: playlake_schemas::TimestampMs(t),
        position_start: 0.0,
        position_end: 5.0,
    };
    let mut busy = PartitionProcessor::new(&settings, 0, 0);
    let mut quiet = PartitionProcessor::new(&settings, 1, 0);
    let mut m = MergeOperator::new(&settings, 0..2, 0);
    // The quiet partition sees one viewer at T + 1 s, then nothing more.
    quiet.process(&heartbeat("q1", "b", T + 1_000), 0);
    let idle_at = settings.idle_timeout_ms() + 1;
    assert_eq!(
        quiet.idle_partials(1),
        (Vec::new(), Vec::new()),
        "an active partition hands over nothing early"
    );
    // The busy one moves on by ten minutes.
    for i in 0..120 {
        busy.process(&heartbeat(&format!("a{i}"), "a", T + i * 5_000), idle_at);
    }
    for record in busy.take_output().viewer_partials {
        m.apply(PartialRecord::Viewers(record), idle_at);
    }
    m.apply(
        PartialRecord::Watermark(busy.announcement(idle_at)),
        idle_at,
    );
    assert!(
        m.take_finished().0.is_empty(),
        "the quiet partition holds it back"
    );

    let (open, _) = quiet.idle_partials(idle_at);
    assert_eq!(open.len(), 1, "the open window, handed over as it stands");
    assert_eq!(open[0].uuids, vec!["b".to_string()]);
    assert_eq!(
        quiet.idle_partials(idle_at),
        (Vec::new(), Vec::new()),
        "once"
    );
    for partial in open {
        m.apply(PartialRecord::Viewers(partial), idle_at);
    }
    let idle = quiet.announcement(idle_at);
    assert!(idle.idle);
    m.apply(PartialRecord::Watermark(idle), idle_at);
    let (rows, _) = m.take_finished();
    let first = rows
        .iter()
        .find(|r| r.window_start.0 == T)
        .expect("the first window is final");
    assert_eq!(
        first.viewers, 2,
        "a from the busy partition, b from the idle one"
    );

    // A restored partition cannot know whether its open partials went out.
    let json = serde_json::to_string(&quiet).unwrap();
    let mut restored: PartitionProcessor = serde_json::from_str(&json).unwrap();
    restored.restored(0);
    assert_eq!(restored.idle_partials(idle_at).0.len(), 1);
}

/// `ResumeMerge::apply_all` looks a group's keys up ahead and must change nothing
/// else: the same resume points and the same count of changes as applying the
/// candidates one by one, with keys repeated inside and across groups, older and
/// newer candidates mixed, and more candidates than one group.
#[test]
fn resume_candidates_applied_together_equal_applied_one_by_one() {
    use playlake_processor::{InlineStr, ResumeCandidate, ResumeMerge};
    let candidates: Vec<ResumeCandidate> = (0..500u32)
        .map(|i| {
            // 37 keys; event times go up and down so some candidates lose.
            let key = i % 37;
            ResumeCandidate {
                user_id: InlineStr::new(&format!("user-{key}")),
                stream_id: InlineStr::new(&format!("s{}", key % 3)),
                event_time: T + i64::from((i * 7919) % 1000),
                event_id: InlineStr::new(&format!("e{i}")),
                position_end: f64::from(i),
                uuid: InlineStr::new(&format!("u{}", i % 5)),
            }
        })
        .collect();
    let mut one = ResumeMerge::default();
    let mut changed_one = 0;
    let mut together = ResumeMerge::default();
    let mut changed_together = 0;
    for round in candidates.chunks(120) {
        changed_one += round.iter().filter(|c| one.apply((*c).clone())).count();
        changed_together += together.apply_all(&mut round.to_vec());
        assert_eq!(together.take_changed(), one.take_changed());
    }
    assert!(changed_one > 37, "some candidates replace others");
    assert!(changed_one < candidates.len(), "some candidates lose");
    assert_eq!(changed_together, changed_one);
    assert_eq!(together, one);
    assert_eq!(together.len(), 37);
}

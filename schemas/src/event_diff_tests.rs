//! Differential tests: [`super::parse_playback_event`] (the fast scanner of
//! `event_scan.rs`, falling back to the reference path) must give exactly what
//! [`super::parse_reference`] (serde_json + chrono, the parser before the fast path)
//! gives: the same event, positions bit for bit, or the same error variant with the
//! same message. Inputs: every input of `event_tests.rs` (its `parse` helper checks
//! through [`check`]), the sample files of `schemas/tests/samples/`, the bad-input
//! corpus of `tests/bad-input/`, generator-shaped records and their byte mutations,
//! and proptest-generated records with valid, borderline and broken values.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::sample::select;

use super::corpus::{realistic_event, rfc3339, Rng, NOW_MS};
use super::scan::{parse_fast, parse_rfc3339_ms};
use super::*;

/// Same event, with positions compared bit for bit (`==` holds for `0.0` and `-0.0`).
fn same_event(a: &PlaybackEvent, b: &PlaybackEvent) -> bool {
    a == b
        && a.position_start.to_bits() == b.position_start.to_bits()
        && a.position_end.to_bits() == b.position_end.to_bits()
}

thread_local! {
    /// The event [`check`] parses into, reused from one check to the next.
    static SCRATCH: std::cell::RefCell<PlaybackEvent> = std::cell::RefCell::default();
}

/// Parses `bytes` with both paths, panics if they differ, returns the result.
pub(super) fn check(bytes: &[u8], now_ms: i64) -> Result<PlaybackEvent, InvalidEvent> {
    let fast = parse_playback_event(bytes, now_ms);
    let reference = parse_reference(bytes, now_ms);
    let show = || String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
    // Parsing into a reused event (holding whatever the previous check left in it)
    // gives the same event or the same error.
    SCRATCH.with_borrow_mut(|scratch| {
        let before = scratch.clone();
        let into = parse_playback_event_into(bytes, now_ms, scratch);
        match (&into, &fast) {
            (Ok(()), Ok(event)) => assert!(
                same_event(scratch, event),
                "parsing into a reused event differs for {}:\n into {scratch:?}\n  new {event:?}",
                show()
            ),
            (Err(a), Err(b)) => {
                assert_eq!(a.to_string(), b.to_string(), "for {}", show());
                assert!(same_event(scratch, &before), "an error changed the event");
            }
            _ => panic!("into {into:?} but new {fast:?} for {}", show()),
        }
    });
    match (&fast, &reference) {
        (Ok(a), Ok(b)) => assert!(
            same_event(a, b),
            "events differ for {}:\n fast {a:?}\n  ref {b:?}",
            show()
        ),
        (Err(a), Err(b)) => {
            assert_eq!(
                format!("{a:?}"),
                format!("{b:?}"),
                "errors differ for {}",
                show()
            );
            assert_eq!(
                a.to_string(),
                b.to_string(),
                "messages differ for {}",
                show()
            );
        }
        _ => panic!(
            "results differ for {}:\n fast {fast:?}\n  ref {reference:?}",
            show()
        ),
    }
    fast
}

/// Whether the fast path alone decides `text` (it must then agree with the reference).
fn fast_accepts(text: &str, now_ms: i64) -> bool {
    match parse_fast(text, now_ms) {
        Some(event) => {
            let reference = parse_reference(text.as_bytes(), now_ms);
            assert!(
                reference.as_ref().is_ok_and(|r| same_event(r, &event)),
                "fast path accepted {text} as {event:?}, reference gives {reference:?}"
            );
            true
        }
        None => false,
    }
}

fn check_at_several_clocks(bytes: &[u8]) {
    for now in [NOW_MS, NOW_MS - 40 * 86_400_000, i64::MAX, i64::MIN, 0] {
        let _ = check(bytes, now);
    }
}

#[test]
fn generator_shaped_records_take_the_fast_path() {
    let mut rng = Rng::new(1);
    for _ in 0..20_000 {
        let record = realistic_event(&mut rng);
        assert!(fast_accepts(&record, NOW_MS), "fast path declined {record}");
        check(record.as_bytes(), NOW_MS).expect("generated records are valid");
    }
}

#[test]
fn fast_path_takes_the_shapes_it_claims() {
    let base = r#""uuid":"u","stream_id":"s","event_time":1748735000000"#;
    let accepted = [
        format!("{{{base},\"position_end\":1}}"),
        format!(" \r\n\t{{ {base} , \"position_end\" : 1.5 }} \n"),
        format!("{{{base},\"event_type\":\"start\"}}"),
        format!("{{{base},\"position_end\":-0,\"user_id\":null,\"event_id\":null}}"),
        format!("{{{base},\"position_end\":1e3,\"position_start\":0.000001}}"),
        format!("{{{base},\"position_end\":12345678901234567890.5}}"),
        format!("{{{base},\"position_end\":1,\"x\":{{\"a\\n\\u00e9\":[1,-2.5e-3,true,false,null,\"\\\"\",{{}},[]]}}}}"),
        format!("{{{base},\"position_end\":1,\"uuid2\":\"é😀\"}}"),
        r#"{"uuid":"u","stream_id":"s","event_time":"2025-05-31T23:00:00.123456789+09:30","position_end":1}"#.to_owned(),
        r#"{"uuid":"u","stream_id":"s","event_time":"2025-05-31 23:00:00z","position_end":1}"#.to_owned(),
        r#"{"uuid":"u","stream_id":"s","event_time":"2024-02-29t23:59:59.9-23:59","position_end":1}"#.to_owned(),
    ];
    for text in &accepted {
        assert!(fast_accepts(text, NOW_MS), "fast path declined {text}");
    }
    // Left to the reference (it decides and words these).
    let declined = [
        format!("{{{base},\"uuid\":\"v\",\"position_end\":1}}"),
        format!("{{{base},\"position_end\":1,\"stream\\u005fid\":\"t\"}}"),
        r#"{"uuid":"u\u0031","stream_id":"s","event_time":1748735000000,"position_end":1}"#
            .to_owned(),
        r#"{"uuid":"u","stream_id":"s","event_time":"2016-12-31T23:59:60Z","position_end":1}"#
            .to_owned(),
        r#"{"uuid":"u","stream_id":"s","event_time":"2025-05-31T23:00:00−05:00","position_end":1}"#
            .to_owned(),
        format!("{{{base},\"position_end\":1}}x"),
        format!("{{{base},\"position_end\":1,\"x\":{{\"a\":[1}}]}}"),
        format!("{{{base},\"position_end\":1,\"x\":[{{\"a\":1]}}]}}"),
        format!("{{{base},\"position_end\":1,\"x\":[1,]}}"),
        format!("{{{base},\"position_end\":1,\"x\":{{\"a\" 1}}}}"),
        format!("{{{base},\"position_end\":1,\"x\":{{\"a\":1,}}}}"),
        format!("{{{base},\"position_end\":1,}}"),
        format!("\u{a0}{{{base},\"position_end\":1}}"),
        format!(
            "{{{base},\"position_end\":1,\"deep\":{}{}}}",
            "[".repeat(200),
            "]".repeat(200)
        ),
    ];
    for text in &declined {
        assert!(!fast_accepts(text, NOW_MS), "fast path took {text}");
        let _ = check(text.as_bytes(), NOW_MS);
    }
}

#[test]
fn mutated_generator_records_agree() {
    const BYTES: &[u8] = b"\"\\{}[],:. 0-9eE+nultrfsa\x00\x1f\x7f\xc3\xa9\xff";
    let mut rng = Rng::new(2);
    for _ in 0..60_000 {
        let mut record = realistic_event(&mut rng).into_bytes();
        for _ in 0..=rng.below(3) {
            let at = rng.below(record.len() as u64 + 1) as usize;
            let byte = BYTES[rng.below(BYTES.len() as u64) as usize];
            match rng.below(4) {
                0 if at < record.len() => {
                    record.remove(at);
                }
                1 => record.insert(at, byte),
                2 if at < record.len() => record[at] = byte,
                _ => record.truncate(at),
            }
        }
        let _ = check(&record, NOW_MS);
    }
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Expands `{{repeat:N:TEXT}}` and `{{now_ms:+N}}` as `pipeline/playlake/tests/bad_input.rs`
/// does.
fn expand_template(template: &str, now: i64) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").expect("closed directive") + start;
        let directive = &rest[start + 2..end];
        if let Some(spec) = directive.strip_prefix("repeat:") {
            let (n, what) = spec.split_once(':').expect("repeat:N:TEXT");
            out.push_str(&what.repeat(n.parse().expect("count")));
        } else if let Some(delta) = directive.strip_prefix("now_ms:") {
            let delta: i64 = delta.trim_start_matches('+').parse().expect("delta");
            out.push_str(&(now + delta).to_string());
        } else {
            panic!("unknown directive {directive}");
        }
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

#[test]
fn sample_files_agree() {
    let mut files = Vec::new();
    files_under(&manifest_dir().join("tests/samples"), &mut files);
    assert!(files.len() > 50, "samples found: {}", files.len());
    for file in files {
        let bytes = std::fs::read(&file).expect("readable sample");
        check_at_several_clocks(&bytes);
    }
}

#[test]
fn bad_input_corpus_agrees() {
    let dir = manifest_dir().join("../tests/bad-input");
    let mut files = Vec::new();
    files_under(&dir, &mut files);
    if files.is_empty() {
        eprintln!("no bad-input corpus at {}: skipped", dir.display());
        return;
    }
    let mut fast = 0;
    for file in &files {
        let raw = std::fs::read(file).expect("readable corpus file");
        let name = file.to_string_lossy();
        let bytes = if name.ends_with(".tmpl") {
            let template = String::from_utf8(raw).expect("templates are UTF-8");
            expand_template(&template, NOW_MS).into_bytes()
        } else {
            raw
        };
        check_at_several_clocks(&bytes);
        if std::str::from_utf8(&bytes).is_ok_and(|t| fast_accepts(t, NOW_MS)) {
            fast += 1;
        }
    }
    assert!(
        files.len() > 100 && fast > 5,
        "{} files, {fast} on the fast path",
        files.len()
    );
}

#[test]
fn rfc3339_agrees_with_chrono_exhaustively_on_fields() {
    // Every field value at and around its limits, with several fractions and offsets.
    let mut checked = 0;
    for year in [
        "0000", "1969", "1970", "1999", "2000", "2023", "2024", "2100", "2400", "9999",
    ] {
        for month in 0..=13 {
            for day in [0, 1, 28, 29, 30, 31, 32] {
                for (h, m, s) in [
                    (0, 0, 0),
                    (23, 59, 59),
                    (24, 0, 0),
                    (12, 60, 0),
                    (12, 0, 60),
                    (7, 8, 9),
                ] {
                    for frac in ["", ".", ".5", ".12", ".123", ".1234", ".999999999999", ".x"] {
                        for off in [
                            "Z", "z", "+00:00", "-00:00", "+23:59", "-23:59", "+24:00", "+05:60",
                            "+0530", "-05:3", "", "Zx",
                        ] {
                            for sep in ["T", "t", " ", "_"] {
                                let text = format!("{year}-{month:02}-{day:02}{sep}{h:02}:{m:02}:{s:02}{frac}{off}");
                                let chrono = TimestampMs::parse_rfc3339(&text)
                                    .ok()
                                    .map(|t| t.as_millis());
                                if let Some(ms) = parse_rfc3339_ms(text.as_bytes()) {
                                    assert_eq!(Some(ms), chrono, "{text}");
                                    checked += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 10_000, "{checked}");
}

#[test]
fn rfc3339_agrees_with_chrono_on_generated_instants() {
    let mut rng = Rng::new(3);
    for _ in 0..200_000 {
        // 1900..2200, any millisecond, any whole-minute offset.
        let ms = rng.below(9_467_280_000_000) as i64 - 2_208_988_800_000;
        let offset = rng.below(2 * 1440 - 1) as i64 - 1439;
        let text = rfc3339(ms, offset, rng.chance(50));
        assert_eq!(parse_rfc3339_ms(text.as_bytes()), Some(ms), "{text}");
        assert_eq!(
            TimestampMs::parse_rfc3339(&text)
                .map(|t| t.as_millis())
                .ok(),
            Some(ms)
        );
    }
}

// ---- proptest: records built from valid, borderline and broken pieces ----

fn quoted(s: &str) -> String {
    format!("\"{s}\"")
}

/// Raw JSON text of a string-ish field value.
fn string_value() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-z0-9-]{1,40}".prop_map(|s| quoted(&s)),
        2 => "[a-zé€😀 /]{0,70}".prop_map(|s| quoted(&s)),
        1 => (125usize..=131).prop_map(|n| quoted(&"a".repeat(n))),
        1 => (253usize..=259).prop_map(|n| quoted(&"b".repeat(n))),
        1 => (40usize..=45).prop_map(|n| quoted(&"é".repeat(n * 3 / 2))),
        2 => select(vec![
            r#""""#, r#""\"""#, r#""a\\b""#, r#""\u00e9""#, r#""\ud800""#, r#""\ud83d\ude00""#,
            r#""\x""#, "\"\u{1}\"", r#""\/""#, r#""a\u0000b""#, r#""\u12""#,
        ]).prop_map(str::to_owned),
        1 => select(vec!["null", "7", "-1.5", "true", "false", "[]", "{}", "[\"a\"]", "{\"a\":1}"])
            .prop_map(str::to_owned),
    ]
}

fn event_type_value() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => select(vec!["start", "heartbeat", "pause", "seek", "stop"]).prop_map(quoted),
        1 => select(vec!["Stop", "play", "", "st\\u006fp", "seek ", "null"]).prop_map(quoted),
        1 => select(vec!["null", "1", "true", "[\"stop\"]"]).prop_map(str::to_owned),
    ]
}

fn event_time_value() -> impl Strategy<Value = String> {
    let integer = prop_oneof![
        4 => (NOW_MS - 5 * 86_400_000..NOW_MS + 2 * 86_400_000).prop_map(|t| t.to_string()),
        1 => (-3i64..=3).prop_map(|d| (MIN_EVENT_TIME_MS + d).to_string()),
        1 => (-3i64..=3).prop_map(|d| (NOW_MS + MAX_FUTURE_SKEW_MS + d).to_string()),
        1 => any::<i64>().prop_map(|t| t.to_string()),
        1 => select(vec![
            "-0", "0", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
            "-9223372036854775809", "99999999999999999999999", "1748735000000.0", "1.7e12",
            "1748735000000e0", "1748735000000E+0", "01748735000000", "-", "1748735000000.",
        ]).prop_map(str::to_owned),
    ];
    let date = (
        prop_oneof![
            6 => Just("2025".to_owned()),
            2 => Just("2024".to_owned()),
            1 => select(vec!["1999", "2000", "0000", "9999", "1970", "2026"]).prop_map(str::to_owned),
            1 => "[0-9]{4}",
        ],
        prop_oneof![8 => 1u32..=6, 1 => 0u32..=13],
        prop_oneof![8 => 1u32..=28, 1 => 0u32..=32],
        select(vec!["T", "T", "T", "t", " ", "x"]),
        0u32..=24,
        0u32..=60,
        prop_oneof![8 => 0u32..=59, 1 => Just(60u32), 1 => 0u32..=99],
        prop_oneof![
            3 => Just(String::new()),
            4 => "[0-9]{1,12}".prop_map(|d| format!(".{d}")),
            1 => select(vec![".", ".x", ",5"]).prop_map(str::to_owned),
        ],
        prop_oneof![
            4 => select(vec!["Z", "z"]).prop_map(str::to_owned),
            4 => (select(vec!["+", "-"]), 0u32..=25, 0u32..=61)
                .prop_map(|(s, h, m)| format!("{s}{h:02}:{m:02}")),
            1 => select(vec!["", "+0530", "−05:00", "+05", "Z ", "+05:30x", "UTC", "+5:30"])
                .prop_map(str::to_owned),
        ],
    )
        .prop_map(|(y, mo, d, sep, h, mi, s, frac, off)| {
            format!("\"{y}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}{frac}{off}\"")
        });
    prop_oneof![
        4 => integer,
        5 => date,
        1 => select(vec![
            "null", "true", "[1]", "{}", "\"\"", "\"yesterday\"", "\"2025-06-01\"",
            "\"2025-06-01T00:00:00\\u002e5Z\"", "\"2025-05-31T12:00:00\\u005a\"",
        ]).prop_map(str::to_owned),
    ]
}

fn position_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0u64..10_000_000, 0u32..1000).prop_map(|(s, ms)| format!("{s}.{ms:03}")),
        2 => (0u64..100_000).prop_map(|s| s.to_string()),
        2 => ("[1-9][0-9]{0,20}", "[0-9]{1,20}").prop_map(|(i, f)| format!("{i}.{f}")),
        2 => "0\\.[0-9]{1,20}",
        1 => any::<f64>().prop_map(|x| format!("{x:?}")),
        1 => any::<f64>().prop_map(|x| format!("{x:e}")),
        1 => ((1u32..99_999), -330i32..330).prop_map(|(m, e)| format!("{m}e{e}")),
        1 => select(vec![
            "-0", "-0.0", "-0e5", "-1", "-0.001", "1e400", "-1e400", "1E+2", "1e-400",
            "00", "01", "1.", ".5", "+1", "-", "0x10", "NaN", "Infinity",
            "179769313486231570000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000.0",
            "null", "\"1\"", "true", "[1]", "{}",
        ]).prop_map(str::to_owned),
    ]
}

/// A key inside an unknown field's object (raw, between the quotes; sometimes broken).
fn unknown_key() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[a-z_]{0,6}",
        1 => select(vec!["a\\\"b", "\\u0041", "\\x", "\\ud800", "\u{1}", "\""]).prop_map(str::to_owned),
    ]
}

/// Any JSON value for an unknown field (sometimes malformed).
fn unknown_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        select(vec![
            "null",
            "true",
            "false",
            "0",
            "-1.5e-7",
            "12345678901234567890",
            "\"x\"",
            "\"a\\\"b\\\\c\\u00e9\\n\"",
            "\"é😀\"",
            "1e400",
            "[]",
            "{}",
            // Broken leaves (the reference rejects the whole record).
            "nul",
            "tru",
            "01",
            "1.",
            "\"\\x\"",
            "\"\\u12\"",
            "\"a",
            "'a'",
            "NaN",
        ])
        .prop_map(str::to_owned),
        "[a-z]{0,8}".prop_map(|s| quoted(&s)),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            8 => prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            // Mismatched or unclosed brackets.
            1 => (inner.clone(), select(vec!["[{}}", "{\"k\":{}]", "[{}", "{\"k\":{}"]))
                .prop_map(|(v, shape)| shape.replace("{}", &v)),
            8 => prop::collection::vec((unknown_key(), inner), 0..4).prop_map(|v| {
                let members: Vec<String> =
                    v.into_iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                format!("{{{}}}", members.join(","))
            }),
        ]
    })
}

/// `(key, raw value)` members of a record, in some order, with optional repeats.
fn members() -> impl Strategy<Value = Vec<(String, String)>> {
    let known = (
        prop::option::weighted(0.97, string_value()),
        prop::option::weighted(0.97, string_value()),
        prop::option::weighted(0.97, event_time_value()),
        prop::option::of(position_value()),
        prop::option::weighted(0.9, position_value()),
        prop::option::of(event_type_value()),
        prop::option::of(string_value()),
        prop::option::of(string_value()),
    );
    let extras = prop::collection::vec(
        (
            prop_oneof![
                select(vec![
                    "extra",
                    "device",
                    "uuid",
                    "position_end",
                    "stream\\u005fid",
                    "UUID",
                    ""
                ])
                .prop_map(str::to_owned),
                "[a-z]{1,10}",
            ],
            unknown_value(),
        ),
        0..3,
    );
    (known, extras, any::<bool>())
        .prop_map(
            |((uuid, stream, time, start, end, kind, user, id), extras, extras_first)| {
                let mut out = Vec::new();
                let known = [
                    ("uuid", uuid),
                    ("stream_id", stream),
                    ("event_time", time),
                    ("position_start", start),
                    ("position_end", end),
                    ("event_type", kind),
                    ("user_id", user),
                    ("event_id", id),
                ];
                let extras = extras.into_iter();
                if extras_first {
                    out.extend(extras.clone());
                }
                out.extend(
                    known
                        .into_iter()
                        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v))),
                );
                if !extras_first {
                    out.extend(extras);
                }
                out
            },
        )
        .prop_shuffle()
}

/// A whole record: members joined with random JSON (or not) whitespace, then maybe one
/// byte-level mutation.
fn record() -> impl Strategy<Value = Vec<u8>> {
    let ws = select(vec![
        "", "", "", "", " ", "\n", "\t", "\r\n  ", "\u{a0}", "\u{b}",
    ]);
    (
        members(),
        prop::collection::vec(ws, 8),
        prop::option::weighted(0.25, (any::<prop::sample::Index>(), 0u8..4, any::<u8>())),
    )
        .prop_map(|(members, ws, mutation)| assemble(&members, &ws, mutation))
}

// Records that are mostly valid, in every form the rules allow: escaped and
// non-ASCII strings, ids at their length limits, times as integers or RFC 3339 with any
// offset, case of `T`/`Z`, separator and number of fraction digits, positions written
// as decimals, integers, exponents or long digit strings, optional fields absent or
// null, ignored fields holding any valid JSON.

fn valid_id(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-z0-9-]{1,40}".prop_map(|s| quoted(&s)),
        2 => "[a-zé€😀 /:=%.]{1,40}".prop_map(|s| quoted(&s)),
        1 => Just(quoted(&"x".repeat(max))),
        1 => Just(quoted(&"é".repeat(max / 2))),
        1 => select(vec![r#""a\"b""#, r#""\u00e9x""#, r#""\ud83d\ude00""#, r#""a\\b\/c\n""#])
            .prop_map(str::to_owned),
    ]
}

fn valid_time() -> impl Strategy<Value = String> {
    let window = NOW_MS - 5 * 86_400_000..=NOW_MS + MAX_FUTURE_SKEW_MS;
    prop_oneof![
        2 => window.clone().prop_map(|t| t.to_string()),
        1 => Just(MIN_EVENT_TIME_MS.to_string()),
        5 => (
            window,
            prop_oneof![Just(0i64), -1439i64..=1439],
            any::<bool>(),
            select(vec!["T", "T", "t", " "]),
            select(vec!["Z", "Z", "z"]),
            0usize..=4,
            "[0-9]{0,9}",
        )
            .prop_map(|(ms, offset, z, sep, zulu, keep, extra)| {
                let text = rfc3339(ms, offset, z);
                let (date_time, rest) = text.split_at(19);
                let (frac, zone) = rest.split_at(4);
                // Fewer fraction digits (truncation: the instant moves back, never out
                // of the window's top), or more.
                let frac = match keep {
                    0 => String::new(),
                    4 => format!("{frac}{extra}"),
                    n => frac[..n + 1].to_owned(),
                };
                let zone = if zone == "Z" { zulu } else { zone };
                format!("\"{}{sep}{}{frac}{zone}\"", &date_time[..10], &date_time[11..])
            }),
    ]
}

/// A position value and one way of writing it.
fn position_text() -> impl Strategy<Value = (f64, String)> {
    let value = prop_oneof![
        4 => (0u64..10_000_000).prop_map(|ms| ms as f64 / 1000.0),
        2 => (0u64..100_000).prop_map(|s| s as f64),
        1 => 0.0f64..1e7,
        1 => 0.0f64..1e-3,
        1 => 0.0f64..1e300,
        1 => Just(0.0),
    ];
    (value, 0u8..5).prop_map(|(x, style)| {
        let text = match style {
            0 => format!("{x}"),
            1 => format!("{x:e}"),
            2 => format!("{x:?}"),
            3 => format!("{x:.3}"),
            _ => format!("{x:E}"),
        };
        let parsed = text.parse().unwrap_or(x);
        (parsed, text)
    })
}

fn valid_json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        select(vec![
            "null",
            "true",
            "false",
            "0",
            "-1.5e-7",
            "12345678901234567890",
            "1e400",
            r#""a\"b\\c\u00e9\n\ud800""#,
            "\"é😀\"",
            "[]",
            "{}",
        ])
        .prop_map(str::to_owned),
        "[a-z]{0,8}".prop_map(|s| quoted(&s)),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(" , "))),
            prop::collection::vec(("[a-z_]{0,6}", inner), 0..4).prop_map(|v| {
                let members: Vec<String> = v
                    .into_iter()
                    .map(|(k, v)| format!("\"{k}\" :\n{v}"))
                    .collect();
                format!("{{{}}}", members.join(","))
            }),
        ]
    })
}

fn valid_members() -> impl Strategy<Value = Vec<(String, String)>> {
    (
        (
            valid_id(MAX_UUID_BYTES),
            valid_id(MAX_STREAM_ID_BYTES),
            valid_time(),
        ),
        (position_text(), position_text(), 0u8..4),
        (
            prop::option::of(select(vec![
                "start",
                "heartbeat",
                "pause",
                "seek",
                "stop",
                "null",
            ])),
            prop::option::of(prop_oneof![Just("null".to_owned()), valid_id(64)]),
            prop::option::of(valid_id(MAX_EVENT_ID_BYTES)),
        ),
        prop::collection::vec(("[a-z_]{1,10}", valid_json_value()), 0..3),
    )
        .prop_map(
            |((uuid, stream, time), (a, b, positions), (kind, user, id), extras)| {
                let mut out = vec![
                    ("uuid".to_owned(), uuid),
                    ("stream_id".to_owned(), stream),
                    ("event_time".to_owned(), time),
                ];
                // The smaller first, unless it is a seek (any order then).
                let (start, end) = if a.0 <= b.0 || kind == Some("seek") {
                    (a, b)
                } else {
                    (b, a)
                };
                match positions {
                    0 => out.push(("position_end".to_owned(), end.1)),
                    1 => {}
                    _ => {
                        out.push(("position_start".to_owned(), start.1));
                        out.push(("position_end".to_owned(), end.1));
                    }
                }
                // Without position_end only a start is valid.
                let kind = if positions == 1 { Some("start") } else { kind };
                if let Some(kind) = kind {
                    let value = if kind == "null" {
                        kind.to_owned()
                    } else {
                        quoted(kind)
                    };
                    out.push(("event_type".to_owned(), value));
                }
                out.extend(user.map(|u| ("user_id".to_owned(), u)));
                out.extend(id.map(|i| ("event_id".to_owned(), i)));
                out.extend(extras);
                out
            },
        )
        .prop_shuffle()
}

/// A mostly valid record, JSON whitespace between tokens, 10 % with one byte mutated.
fn valid_record() -> impl Strategy<Value = Vec<u8>> {
    let ws = select(vec!["", "", "", "", " ", "\n", "\t", "\r\n  "]);
    (
        valid_members(),
        prop::collection::vec(ws, 8),
        prop::option::weighted(0.1, (any::<prop::sample::Index>(), 0u8..4, any::<u8>())),
    )
        .prop_map(|(members, ws, mutation)| assemble(&members, &ws, mutation))
}

/// Joins members with the given whitespace, then applies the mutation, if any.
fn assemble(
    members: &[(String, String)],
    ws: &[&str],
    mutation: Option<(prop::sample::Index, u8, u8)>,
) -> Vec<u8> {
    let mut text = format!("{}{{{}", ws[0], ws[1]);
    for (i, (k, v)) in members.iter().enumerate() {
        if i > 0 {
            text.push_str(ws[2]);
            text.push(',');
        }
        text.push_str(&format!("{}\"{k}\"{}:{}{v}{}", ws[3], ws[4], ws[5], ws[6]));
    }
    text.push('}');
    text.push_str(ws[7]);
    let mut bytes = text.into_bytes();
    if let Some((index, kind, byte)) = mutation {
        let at = index.index(bytes.len() + 1);
        match kind {
            0 if at < bytes.len() => {
                bytes.remove(at);
            }
            1 => bytes.insert(at, byte),
            2 if at < bytes.len() => bytes[at] = byte,
            _ => bytes.truncate(at),
        }
    }
    bytes
}

/// Cases per property: `PROPTEST_CASES` when set (for a long run), else 6000.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(6000)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn the_utf8_check_agrees_with_std(
        text in "[a-z\"{}:,0-9]{0,80}",
        junk in prop::collection::vec(any::<u8>(), 0..4),
        at in 0usize..81,
    ) {
        // Valid text with a few arbitrary bytes spliced in (valid or not).
        let mut bytes = text.into_bytes();
        let at = at.min(bytes.len());
        bytes.splice(at..at, junk);
        let want = std::str::from_utf8(&bytes).map_err(|e| e.valid_up_to());
        let got = super::utf8(&bytes).map_err(|e| match e {
            InvalidEvent::InvalidUtf8 { valid_up_to } => valid_up_to,
            other => panic!("{other:?}"),
        });
        prop_assert_eq!(got, want);
    }

    #[test]
    fn generated_records_agree(bytes in record()) {
        check_at_several_clocks(&bytes);
    }

    #[test]
    fn mostly_valid_records_agree(bytes in valid_record()) {
        check_at_several_clocks(&bytes);
    }

    #[test]
    fn long_mantissas_agree_with_str_parse(digits in "[1-9][0-9]{13,17}", point in 1usize..18) {
        // Around the 15-digit limit of the exact fast conversion (2^53 has 16 digits).
        let point = point.min(digits.len());
        let text = if point == digits.len() {
            digits.clone()
        } else {
            format!("{}.{}", &digits[..point], &digits[point..])
        };
        let json = format!(r#"{{"uuid":"u","stream_id":"s","event_time":1748735000000,"position_end":{text}}}"#);
        let event = check(json.as_bytes(), NOW_MS).expect("valid");
        prop_assert_eq!(event.position_end.to_bits(), text.parse::<f64>().expect("number").to_bits());
    }

    #[test]
    fn decimal_positions_agree_with_str_parse(int in "0|[1-9][0-9]{0,16}", frac in prop::option::of("[0-9]{1,16}")) {
        let text = match &frac {
            Some(f) => format!("{int}.{f}"),
            None => int.clone(),
        };
        let json = format!(r#"{{"uuid":"u","stream_id":"s","event_time":1748735000000,"position_start":{text},"position_end":{text}}}"#);
        let event = check(json.as_bytes(), NOW_MS).expect("valid");
        prop_assert_eq!(event.position_end.to_bits(), text.parse::<f64>().expect("number").to_bits());
    }
}

#[test]
fn mostly_valid_records_mostly_take_the_fast_path() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let strategy = valid_record();
    let mut runner = TestRunner::deterministic();
    let (mut valid, mut fast) = (0, 0);
    const N: usize = 3000;
    for _ in 0..N {
        let bytes = strategy.new_tree(&mut runner).expect("a value").current();
        if check(&bytes, NOW_MS).is_ok() {
            valid += 1;
            if std::str::from_utf8(&bytes).is_ok_and(|t| fast_accepts(t, NOW_MS)) {
                fast += 1;
            }
        }
    }
    println!("{N} records: {valid} valid, {fast} of them decided by the fast path");
    assert!(
        valid > N / 2 && fast > valid * 3 / 4,
        "{valid} valid, {fast} fast"
    );
}

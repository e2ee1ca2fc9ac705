//! Drift test: the JSON Schema files of `schemas/json/` and the Rust types and parser
//! must agree.
//!
//! * `samples/playback_event/valid/*.json`: accepted by the schema and the parser.
//! * `samples/playback_event/invalid/<reason_code>__*.json`: rejected by the schema
//!   (a file that is not JSON at all counts as rejected: a validator never sees it)
//!   and by the parser with exactly that reason code.
//! * `samples/playback_event/invalid_semantic/<reason_code>__*.json`: rules JSON
//!   Schema cannot express (byte lengths, position order, time relative to now,
//!   duplicate keys, integral floats): the schema accepts them, the parser rejects
//!   them with that reason code.
//! * Serialized output rows of every type validate against their schema files, and
//!   the output schemas are strict enough to reject a drifted row.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use jsonschema::Validator;
use playlake_schemas::json_schema;
use playlake_schemas::{
    parse_playback_event, ChangeEvent, ChangeEventName, DailyStat, DlqRecord, EndedBy,
    InvalidEvent, ResumePoint, Session, TimestampMs, ViewerWindow,
};
use serde_json::{json, Value};

/// The processor clock the samples are written against: 2025-06-01T00:00:00Z.
const NOW_MS: i64 = 1_748_736_000_000;

fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("json")
}

fn validator(file: &str) -> Validator {
    let text = fs::read_to_string(schema_dir().join(file)).expect("schema file readable");
    let schema: Value = serde_json::from_str(&text).expect("schema file is JSON");
    jsonschema::draft202012::meta::validate(&schema)
        .unwrap_or_else(|e| panic!("{file} is not a valid draft 2020-12 schema: {e}"));
    assert_eq!(
        schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
        "{file}"
    );
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{file} does not compile: {e}"))
}

/// `(file name, bytes)` of every sample in a folder, sorted.
fn samples(folder: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/samples/playback_event")
        .join(folder);
    let mut out: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("dir entry").path();
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            (name, fs::read(&path).expect("sample readable"))
        })
        .filter(|(name, _)| name.ends_with(".json"))
        .collect();
    out.sort();
    out
}

/// The reason code a sample's file name announces (`<code>__<what>.json`).
fn expected_code(name: &str) -> &str {
    let code = name.split_once("__").map(|(code, _)| code).unwrap_or("");
    assert!(
        InvalidEvent::REASON_CODES.contains(&code),
        "sample {name} must be named <reason_code>__<what>.json with a known code"
    );
    code
}

fn schema_accepts(validator: &Validator, bytes: &[u8]) -> Result<(), String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| e.to_string())
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

#[test]
fn valid_samples_pass_schema_and_parser() {
    let v = validator("playback_event.schema.json");
    let samples = samples("valid");
    assert!(samples.len() >= 25, "only {} valid samples", samples.len());
    for (name, bytes) in &samples {
        if let Err(e) = schema_accepts(&v, bytes) {
            panic!("schema rejects valid sample {name}: {e}");
        }
        let event = parse_playback_event(bytes, NOW_MS)
            .unwrap_or_else(|e| panic!("parser rejects valid sample {name}: {e}"));
        // The normalised event is itself a valid input record and parses back equal.
        let out = serde_json::to_vec(&event).expect("serializes");
        if let Err(e) = schema_accepts(&v, &out) {
            panic!("schema rejects the serialized form of {name}: {e}");
        }
        assert_eq!(
            parse_playback_event(&out, NOW_MS).ok().as_ref(),
            Some(&event),
            "{name}"
        );
    }
}

#[test]
fn invalid_samples_fail_schema_and_parser_with_their_reason() {
    let v = validator("playback_event.schema.json");
    let samples = samples("invalid");
    assert!(
        samples.len() >= 40,
        "only {} invalid samples",
        samples.len()
    );
    for (name, bytes) in &samples {
        let code = expected_code(name);
        assert!(
            schema_accepts(&v, bytes).is_err(),
            "schema accepts invalid sample {name}"
        );
        match parse_playback_event(bytes, NOW_MS) {
            Ok(event) => panic!("parser accepts invalid sample {name}: {event:?}"),
            Err(e) => assert_eq!(e.reason_code(), code, "{name}: {e}"),
        }
    }
}

#[test]
fn semantic_samples_pass_schema_but_fail_parser() {
    let v = validator("playback_event.schema.json");
    let samples = samples("invalid_semantic");
    assert!(
        samples.len() >= 12,
        "only {} semantic samples",
        samples.len()
    );
    for (name, bytes) in &samples {
        let code = expected_code(name);
        if let Err(e) = schema_accepts(&v, bytes) {
            panic!("schema rejects {name}, so it belongs in invalid/: {e}");
        }
        match parse_playback_event(bytes, NOW_MS) {
            Ok(event) => panic!("parser accepts invalid sample {name}: {event:?}"),
            Err(e) => assert_eq!(e.reason_code(), code, "{name}: {e}"),
        }
    }
}

#[test]
fn every_reason_code_has_a_sample() {
    let names: Vec<String> = ["invalid", "invalid_semantic"]
        .into_iter()
        .flat_map(samples)
        .map(|(name, _)| name)
        .collect();
    for code in InvalidEvent::REASON_CODES {
        assert!(
            names.iter().any(|n| n.starts_with(&format!("{code}__"))),
            "no sample for reason {code}"
        );
    }
}

fn assert_row_valid<T: serde::Serialize>(file: &str, row: &T) -> Value {
    let value = serde_json::to_value(row).expect("row serializes");
    let v = validator(file);
    let errors: Vec<String> = v.iter_errors(&value).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{file} rejects {value}: {errors:?}");
    value
}

fn assert_row_invalid(file: &str, value: &Value) {
    assert!(
        !validator(file).is_valid(value),
        "{file} accepts drifted row {value}"
    );
}

fn t(ms: i64) -> TimestampMs {
    TimestampMs(ms)
}

#[test]
fn output_rows_match_their_schemas() {
    for (user_id, ended_by, start_ordinal) in [
        (None, EndedBy::Gap, 0),
        (Some("alice".to_owned()), EndedBy::Stop, 2),
    ] {
        let session = Session {
            uuid: "u1".into(),
            stream_id: "s1".into(),
            user_id,
            session_start: t(NOW_MS),
            session_end: t(NOW_MS + 61_250),
            position_start: 0.0,
            position_end: 61.25,
            watched_seconds: 55.0,
            event_count: 14,
            seek_count: 1,
            ended_by,
            start_ordinal,
        };
        let mut value = assert_row_valid("session.schema.json", &session);
        assert_eq!(
            serde_json::from_value::<Session>(value.clone()).ok(),
            Some(session)
        );
        value["extra"] = json!(1);
        assert_row_invalid("session.schema.json", &value);
    }

    let window = ViewerWindow {
        stream_id: "s1".into(),
        window_start: t(NOW_MS),
        window_end: t(NOW_MS + 30_000),
        viewers: 12,
    };
    let mut value = assert_row_valid("viewer_window.schema.json", &window);
    value["window_start"] = json!("2025-06-01T00:00:00Z"); // not the ms form rows use
    assert_row_invalid("viewer_window.schema.json", &value);

    let daily = DailyStat {
        dt: NaiveDate::from_ymd_opt(2025, 6, 1).expect("date"),
        stream_id: "s1".into(),
        views: 120,
        unique_users: 80,
        watched_seconds: 36_000.5,
        peak_viewers: 40,
    };
    let mut value = assert_row_valid("daily_stat.schema.json", &daily);
    value
        .as_object_mut()
        .expect("object")
        .remove("peak_viewers");
    assert_row_invalid("daily_stat.schema.json", &value);

    let resume = ResumePoint {
        user_id: "alice".into(),
        stream_id: "s1".into(),
        position_end: 61.25,
        event_time: t(NOW_MS + 61_250),
        uuid: "u1".into(),
    };
    let mut value = assert_row_valid("resume_point.schema.json", &resume);
    value["user_id"] = Value::Null;
    assert_row_invalid("resume_point.schema.json", &value);

    for (name, snapshot) in [
        (ChangeEventName::Modify, false),
        (ChangeEventName::Insert, true),
    ] {
        let change = ChangeEvent {
            table: "playback".into(),
            event_id: "c0ffee".into(),
            event_name: name,
            sequence_number: (!snapshot).then(|| "4421584500000000017450439091".to_owned()),
            shard_id: (!snapshot).then(|| "shardId-00000001".to_owned()),
            approximate_creation_time: t(NOW_MS),
            keys: json!({"stream_id": "s1", "uuid": "u1"}),
            new_image: Some(
                json!({"stream_id": "s1", "uuid": "u1", "position": 12.5, "big": "123456789012345678901234567890"}),
            ),
            old_image: (!snapshot).then(|| json!({"stream_id": "s1", "uuid": "u1"})),
            ttl_expired: false,
            snapshot,
        };
        let mut value = assert_row_valid("change_event.schema.json", &change);
        value["event_name"] = json!("UPDATE");
        assert_row_invalid("change_event.schema.json", &value);
    }

    let dlq = DlqRecord {
        source_topic: "playback.events".into(),
        source_partition: 2,
        source_offset: 1_234,
        reason: "not_json: record is not valid JSON: EOF while parsing".into(),
        raw: b"{\"uuid\":\xff".to_vec(),
    };
    let mut value = assert_row_valid("dlq_record.schema.json", &dlq);
    value["source_partition"] = json!(-1);
    assert_row_invalid("dlq_record.schema.json", &value);
}

#[test]
fn embedded_schemas_are_the_files() {
    let mut names: Vec<String> = fs::read_dir(schema_dir())
        .expect("json dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut embedded: Vec<String> = json_schema::ALL
        .iter()
        .map(|(n, _)| (*n).to_owned())
        .collect();
    embedded.sort();
    assert_eq!(names, embedded);
    for (name, text) in json_schema::ALL {
        assert_eq!(
            fs::read_to_string(schema_dir().join(name)).ok().as_deref(),
            Some(text)
        );
        let schema: Value = serde_json::from_str(text).expect("JSON");
        assert!(
            schema["description"].as_str().is_some_and(|d| d.len() > 40),
            "{name}"
        );
        for (field, spec) in schema["properties"].as_object().expect("properties") {
            assert!(
                spec["description"].as_str().is_some_and(|d| !d.is_empty()),
                "{name}: field {field} has no description"
            );
        }
    }
}

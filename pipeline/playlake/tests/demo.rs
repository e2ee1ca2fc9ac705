//! `playlake demo` as a newcomer runs it: no server, a local lake, results equal to a
//! batch recomputation of the same generated events, checked by DuckDB, and safe to
//! run twice.

use std::collections::BTreeMap;
use std::process::Command;

use playlake_generator::{Generator, GeneratorConfig, RecordKind};
use playlake_processor::{reference, ProcessorConfig};
use playlake_schemas::parse_playback_event;
use playlake_tests::stack::Stack;

const EVENTS: u64 = 6_000;
const VIEWERS: u32 = 120;
const SEED: u64 = 7;

fn demo(lake: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_playlake"))
        .args([
            "demo",
            "--events",
            &EVENTS.to_string(),
            "--viewers",
            &VIEWERS.to_string(),
            "--seed",
            &SEED.to_string(),
            "--lake",
            lake,
        ])
        .env_remove("PLAYLAKE_CONFIG")
        .env("NO_COLOR", "1")
        .output()
        .expect("run playlake demo");
    assert!(
        out.status.success(),
        "demo failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The figure printed after a label such as `sessions`.
fn figure(report: &str, label: &str) -> u64 {
    report
        .lines()
        .find_map(|line| {
            let rest = line.trim_start().strip_prefix(label)?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no {label} in:\n{report}"))
}

#[test]
fn demo_results_equal_the_batch_reference_and_rerunning_is_safe() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = format!("file://{}", dir.path().display());
    let report = demo(&lake);

    // Recompute from the same generated events with the batch reference.
    let config = GeneratorConfig {
        viewers: VIEWERS,
        max_events: Some(EVENTS),
        duration_ms: 24 * 3_600_000,
        seed: SEED,
        ..GeneratorConfig::default()
    };
    let now_ms = config.settled_now_ms();
    let records: Vec<_> = Generator::new(config).expect("generator").collect();
    let events: Vec<_> = records
        .iter()
        .filter(|r| !matches!(r.kind, RecordKind::Bad(_)))
        .map(|r| parse_playback_event(&r.value, now_ms).expect("valid record"))
        .collect();
    let bad = records.len() - events.len();
    let settings = ProcessorConfig::default().validate().expect("settings");
    let expected = reference::compute(&events, &settings);

    assert_eq!(
        figure(&report, "records in"),
        records.len() as u64,
        "{report}"
    );
    assert_eq!(figure(&report, "to the DLQ"), bad as u64, "{report}");
    assert_eq!(figure(&report, "late (per op.)"), 0, "{report}");
    assert_eq!(
        figure(&report, "sessions"),
        expected.sessions.len() as u64,
        "{report}"
    );
    assert_eq!(
        figure(&report, "viewer windows"),
        expected.viewers.len() as u64,
        "{report}"
    );
    assert_eq!(
        figure(&report, "daily stats"),
        expected.daily.len() as u64,
        "{report}"
    );

    // Running it again replaces the demo's own lake: the same figures.
    let again = demo(&lake);
    assert_eq!(figure(&again, "sessions"), figure(&report, "sessions"));
    assert_eq!(figure(&again, "lake"), figure(&report, "lake"), "{again}");

    // An independent reader finds every result once.
    let Some(stack) = Stack::from_env() else {
        return;
    };
    let counts = stack.run_python(
        r#"
import sys, duckdb
root = sys.argv[1]
for table in ["sessions", "viewers", "daily", "errors"]:
    n = duckdb.sql(f"select count(*) from read_parquet('{root}/{table}/**/*.parquet', hive_partitioning=true)").fetchall()[0][0]
    print(table, n)
"#,
        &[&dir.path().display().to_string()],
    );
    let counts: BTreeMap<&str, u64> = counts
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(table, n)| (table, n.parse().expect("count")))
        .collect();
    assert_eq!(
        counts["sessions"],
        expected.sessions.len() as u64,
        "{counts:?}"
    );
    assert_eq!(
        counts["viewers"],
        expected.viewers.len() as u64,
        "{counts:?}"
    );
    assert_eq!(counts["daily"], expected.daily.len() as u64, "{counts:?}");
    assert_eq!(counts["errors"], bad as u64, "{counts:?}");
}

//! The binary as a user meets it: help, version, config precedence and the errors
//! bad configuration gets.

use std::process::{Command, Output};

fn playlake(args: &[&str], envs: &[(&str, &str)], dir: &std::path::Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_playlake"));
    cmd.args(args).current_dir(dir);
    // The caller's environment must not leak settings into the test.
    for (key, _) in std::env::vars() {
        if key.starts_with("PLAYLAKE_") {
            cmd.env_remove(key);
        }
    }
    cmd.envs(envs.iter().copied());
    cmd.output().expect("run playlake")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_lists_working_commands_and_common_flags() {
    let dir = tempfile::tempdir().unwrap();
    let out = playlake(&["--help"], &[], dir.path());
    assert!(out.status.success());
    let help = text(&out.stdout);
    for needle in [
        "config",
        "topics",
        "check-events",
        "--brokers",
        "PLAYLAKE_BROKERS",
        "--lake",
        "--kafka-option",
        "--metrics-addr",
    ] {
        assert!(help.contains(needle), "help lacks {needle}:\n{help}");
    }
}

#[test]
fn version_prints_the_crate_version() {
    let dir = tempfile::tempdir().unwrap();
    let out = playlake(&["--version"], &[], dir.path());
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).trim(),
        format!("playlake {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn flag_beats_env_beats_file_beats_default() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("playlake.toml"),
        "brokers = \"file:1\"\ntopic_prefix = \"fromfile\"\nlake = \"s3://from-file/p\"\n",
    )
    .unwrap();
    let out = playlake(
        &["config", "--brokers", "flag:3"],
        &[
            ("PLAYLAKE_BROKERS", "env:2"),
            ("PLAYLAKE_TOPIC_PREFIX", "fromenv"),
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(printed.contains("brokers = \"flag:3\""), "{printed}");
    assert!(printed.contains("topic_prefix = \"fromenv\""), "{printed}");
    assert!(printed.contains("lake = \"s3://from-file/p\""), "{printed}");
    assert!(
        printed.contains("metrics_addr = \"127.0.0.1:9464\""),
        "{printed}"
    );
}

#[test]
fn bad_config_fails_with_the_setting_and_a_fix() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), "brokres = \"x:1\"\n").unwrap();
    let out = playlake(&["--config", "bad.toml", "config"], &[], dir.path());
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("brokres") && err.contains("bad.toml"), "{err}");

    let out = playlake(&["config", "--lake", "ftp://nope"], &[], dir.path());
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("lake") && err.contains("s3://bucket/prefix"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    // Traffic settings are checked before anything connects.
    let out = playlake(&["produce", "--start-time", "yesterday"], &[], dir.path());
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("--start-time") && err.contains("RFC 3339"),
        "{err}"
    );
    let out = playlake(
        &["produce", "--live-streams", "0", "--vod-streams", "0"],
        &[],
        dir.path(),
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("stream"), "{err}");
}

#[test]
fn secrets_are_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let out = playlake(
        &["config", "--kafka-option", "sasl.password=s3cr3t-value"],
        &[],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let all = text(&out.stdout) + &text(&out.stderr);
    assert!(!all.contains("s3cr3t-value"), "{all}");
    assert!(all.contains("sasl.password"), "{all}");
}

#[test]
fn check_events_reports_reasons_and_fails_on_invalid_lines() {
    let dir = tempfile::tempdir().unwrap();
    let sample = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/playback-events.jsonl"
    );
    let out = playlake(&["check-events", sample], &[], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    assert!(report.contains("5 valid, 5 invalid"), "{report}");
    assert!(
        report.contains("line 8:") && report.contains("uuid"),
        "{report}"
    );
}

#[test]
fn athena_ddl_covers_every_table_under_the_s3_lake() {
    let dir = tempfile::tempdir().unwrap();
    let out = playlake(
        &[
            "athena-ddl",
            "--lake",
            "s3://my-lake/play",
            "--database",
            "analytics",
        ],
        &[],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ddl = text(&out.stdout);
    for table in ["sessions", "viewers", "daily", "events", "cdc", "errors"] {
        assert!(
            ddl.contains(&format!("`analytics`.`{table}`")),
            "{table} missing:\n{ddl}"
        );
        assert!(
            ddl.contains(&format!("LOCATION 's3://my-lake/play/{table}/'")),
            "{ddl}"
        );
    }
    assert_eq!(ddl.matches("CREATE EXTERNAL TABLE").count(), 6, "{ddl}");
}

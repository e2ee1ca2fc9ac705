//! The end-to-end chaos run (issue 8, item 1) inside the test suite: runs
//! `tests/chaos/chaos.py` (the harness) with the venv's Python against the debug
//! `playlake` binary this build made, and asserts what its independent checker
//! (`tests/chaos/checker.py`) found.
//!
//! The harness starts a Tansu (sqlite storage) and two moto servers of its own, so
//! its broker restart and S3 outage never disturb the shared stack other tests use;
//! from the stack it takes the venv's Python and the Tansu binary. It feeds the whole
//! pipeline (`playlake source dynamodb` with the playback mapping, `playlake
//! produce`, `playlake process`, `playlake sink` to an S3 lake) as separate
//! processes, SIGKILLs each stage at random moments (seeded; the seed is printed,
//! `PLAYLAKE_TEST_SEED` repeats it), stops S3 for 10 s and restarts the broker once,
//! then drains everything and runs the checker. It ends its stdout with the figures:
//! `CHAOS_RESULT {json}` for people and `CHAOS_FIGURES key=value ...` for this test.
//!
//! - [`ci_profile_survives_kills_an_outage_and_a_broker_restart`]: the CI profile
//!   (3 SIGKILLs per stage, 10 s S3 outage, 1 broker restart; about 2 minutes),
//!   with both producers (the DynamoDB source and `playlake produce`) writing to
//!   `<prefix>.events` at once.
//! - [`calm_run_with_interleaved_sources_equals_the_batch_recomputation`]: the same
//!   traffic without any chaos, on demand (`--run-ignored all`): when the CI run
//!   finds mismatches, this tells a pipeline bug that needs no crash from one that
//!   does (it found the consumer's early end-of-partition, fixed in 269afc4).
//!
//! The long profile runs on demand: `tests/chaos/run --profile long`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use playlake_tests::stack::Stack;

/// The repository root (this crate lives in `tests/`).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The debug `playlake` binary of this build: `PLAYLAKE_BIN` when set, else next to
/// this test's own binary (`<target>/debug/deps/chaos-*` -> `<target>/debug/playlake`),
/// which `cargo nextest run --workspace` builds for the `playlake` package's tests.
fn playlake_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("PLAYLAKE_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let debug = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in <target>/<profile>/deps");
    let bin = debug.join("playlake");
    assert!(
        bin.is_file(),
        "no playlake binary at {}: build the workspace (cargo build --workspace) or set PLAYLAKE_BIN",
        bin.display()
    );
    bin
}

/// What the harness reported on its `CHAOS_FIGURES` line (`key=value` words), plus
/// its `CHAOS_RESULT` JSON line for failure messages.
struct Figures {
    values: BTreeMap<String, i64>,
    result: String,
    status: std::process::ExitStatus,
}

impl Figures {
    fn get(&self, key: &str) -> i64 {
        *self.values.get(key).unwrap_or_else(|| {
            panic!(
                "the harness reported no {key}; its result:\n{}",
                self.result
            )
        })
    }

    /// Fails with the run's error or the checker's mismatches unless it passed.
    fn assert_passed(&self) {
        let result = &self.result;
        assert_eq!(
            self.get("failed"),
            0,
            "the chaos run failed (exit {}); see its error in the output above and:\n{result}",
            self.status
        );
        assert!(
            self.get("events") > 10_000,
            "too few events went through:\n{result}"
        );
        assert!(
            self.get("rows_checked") > 10_000,
            "the checker checked too few rows:\n{result}"
        );
        assert_eq!(
            self.get("mismatches"),
            0,
            "the checker found mismatches (details above and in mismatch_examples):\n{result}"
        );
        assert!(
            self.status.success(),
            "the harness exited with {}:\n{result}",
            self.status
        );
    }
}

/// Runs the harness with `args` and returns what it reported.
fn run_harness(stack: &Stack, args: &[&str]) -> Figures {
    let root = repo_root();
    let mut cmd = stack.python();
    cmd.arg(root.join("tests/chaos/chaos.py"))
        .arg("--playlake")
        .arg(playlake_binary())
        .arg("--tansu")
        .arg(&stack.tansu)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Ok(seed) = std::env::var("PLAYLAKE_TEST_SEED") {
        cmd.args(["--seed", &seed]);
    }
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", stack.python.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = |prefix: &str| -> String {
        stdout
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| {
                panic!(
                    "the harness printed no {prefix}line (exit {}); stdout:\n{stdout}",
                    output.status
                )
            })
            .to_owned()
    };
    let values = line("CHAOS_FIGURES ")
        .split_whitespace()
        .filter_map(|word| word.split_once('='))
        .map(|(k, v)| {
            let v = v
                .parse()
                .unwrap_or_else(|e| panic!("CHAOS_FIGURES {k}={v}: not a number ({e})"));
            (k.to_owned(), v)
        })
        .collect();
    Figures {
        values,
        result: line("CHAOS_RESULT "),
        status: output.status,
    }
}

#[test]
fn ci_profile_survives_kills_an_outage_and_a_broker_restart() {
    let Some(stack) = Stack::from_env() else {
        return;
    };
    let figures = run_harness(&stack, &["--profile", "ci"]);
    figures.assert_passed();
    for stage in ["source", "process", "sink"] {
        assert!(
            figures.get(&format!("kills_{stage}")) >= 3,
            "{stage} was not killed 3 times:\n{}",
            figures.result
        );
    }
    assert_eq!(figures.get("broker_restarts"), 1, "{}", figures.result);
    assert!(figures.get("outage_seconds") >= 10, "{}", figures.result);
}

#[test]
#[ignore = "diagnostic, on demand: the CI run's traffic without chaos (2 more minutes of CI for no extra coverage while the CI run passes)"]
fn calm_run_with_interleaved_sources_equals_the_batch_recomputation() {
    let Some(stack) = Stack::from_env() else {
        return;
    };
    run_harness(&stack, &["--profile", "ci", "--calm"]).assert_passed();
}

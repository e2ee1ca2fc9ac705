//! Static checks of the Dockerfile, docker-compose.yml and everything under deploy/
//! (compose stage configs, LocalStack init, Prometheus, Grafana, Kubernetes, IAM).
//!
//! No Docker engine or Kubernetes cluster exists on the test machines, so these files
//! are not run; `tests/static/check_deploy.py` parses and cross-checks them instead
//! (pinned images, mounted and copied files that exist, depends_on, scrape ports
//! against metrics_addr, probes on /healthz and /readyz, IAM without wildcards and
//! matching the AWS calls the code makes) and validates every playlake config with
//! the real binary. Its `--self-test` breaks copies of the files one way at a time and
//! checks that every breakage is reported, so the checks are known to fail.
//!
//! Needs the project venv's Python (PyYAML; `tests/stack/install.sh`) and the
//! `playlake` binary of this build (`cargo nextest run --workspace`, as `tests/run`
//! does, builds it next to this test). Without them the tests print `SKIPPED` and
//! pass, except under `CI=true`, where they fail.

use std::path::{Path, PathBuf};
use std::process::Command;

use playlake_tests::stack::ENV_PYTHON;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repository root")
}

/// The same rule as the stack helpers: `CI=true` (any case) or `CI=1`.
fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Skips (prints why and returns `None`) outside CI; panics under CI.
fn missing<T>(what: &str) -> Option<T> {
    assert!(
        !is_ci(),
        "\n\n*** {what} but CI is set: run the tests through tests/run, which installs \
         the test stack and builds the workspace. ***\n"
    );
    eprintln!("SKIPPED ({what}; use tests/run)");
    None
}

/// The venv's Python: `PLAYLAKE_TEST_PYTHON` (set by tests/run), else `.venv/bin/python`.
fn python() -> Option<PathBuf> {
    let candidate = std::env::var_os(ENV_PYTHON)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    if candidate.exists() {
        Some(candidate)
    } else {
        missing(&format!(
            "the project venv's Python ({}) is missing",
            candidate.display()
        ))
    }
}

/// The `playlake` binary of this build: `PLAYLAKE_BIN`, else next to the test's
/// `deps/` directory (`target/<profile>/playlake`), where cargo puts it when the
/// playlake package is built in the same run.
fn playlake_binary() -> Option<PathBuf> {
    let candidate = match std::env::var_os("PLAYLAKE_BIN").filter(|v| !v.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => {
            let exe = std::env::current_exe().expect("path of the test binary");
            let profile_dir = exe
                .parent()
                .and_then(Path::parent)
                .expect("target/<profile>/deps/<test>");
            profile_dir.join(format!("playlake{}", std::env::consts::EXE_SUFFIX))
        }
    };
    if candidate.is_file() {
        Some(candidate)
    } else {
        missing(&format!(
            "the playlake binary ({}) is not built: `cargo build -p playlake` or set PLAYLAKE_BIN",
            candidate.display()
        ))
    }
}

/// Runs check_deploy.py with `extra` arguments; returns (success, stdout + stderr).
fn run_checker(extra: &[&str]) -> Option<(bool, String)> {
    let python = python()?;
    let playlake = playlake_binary()?;
    let root = repo_root();
    let output = Command::new(&python)
        .arg(root.join("tests/static/check_deploy.py"))
        .arg("--repo")
        .arg(&root)
        .arg("--playlake")
        .arg(&playlake)
        .args(extra)
        .env_remove("PYTHONPATH")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Some((output.status.success(), text))
}

#[test]
fn deploy_files_pass_the_static_checks() {
    let Some((ok, output)) = run_checker(&[]) else {
        return;
    };
    println!("{output}");
    assert!(ok, "tests/static/check_deploy.py found problems:\n{output}");
    assert!(output.contains("checks passed, 0 failed"), "{output}");
}

#[test]
fn static_checks_report_every_deliberate_breakage() {
    let Some((ok, output)) = run_checker(&["--self-test"]) else {
        return;
    };
    println!("{output}");
    assert!(
        ok,
        "a deliberate breakage of the deploy files went unreported:\n{output}"
    );
    assert!(!output.contains("SKIP"), "{output}");
}

//! `playlake run` under real traffic, scraped by a real Prometheus (Debian's
//! `prometheus` binary, started here on a free port with a 1 s scrape interval and
//! a temporary data directory):
//!
//! - every PromQL expression of `deploy/grafana/dashboards/*.json` returns data
//!   from Prometheus's HTTP API, and every metric a dashboard names is in `/metrics`;
//! - a secret passed as `--kafka-option sasl.password=...` appears neither in the
//!   logs (JSON, `--log-format json`) nor in `/metrics`;
//! - SIGTERM drains, commits and exits 0 within the deadline;
//! - `/readyz` answers 503 while a stage is not connected and assigned, while
//!   `/healthz` answers 200.
//!
//! Requires the test stack (Tansu) and `prometheus` on PATH (or
//! `PLAYLAKE_TEST_PROMETHEUS`); `tests/stack/install.sh` installs it.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use playlake_tests::stack::{unique_name, Stack};

const SECRET: &str = "s3cr3t-Pa55w0rd-never-logged";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One HTTP/1.0 GET (the server closes the connection, no chunking): status, body.
fn http_get(addr: &str, target: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {target} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_owned()))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `expr` of every panel target in the two dashboards.
fn dashboard_exprs() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for file in ["pipeline.json", "viewers.json"] {
        let path = repo_root().join("deploy/grafana/dashboards").join(file);
        let text = std::fs::read_to_string(&path).expect("dashboard file");
        let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
        let panels = dashboard["panels"].as_array().expect("panels");
        assert!(!panels.is_empty(), "{file} has no panels");
        for panel in panels {
            let targets = panel["targets"].as_array().expect("targets");
            for target in targets {
                let expr = target["expr"].as_str().expect("expr").to_owned();
                let title = panel["title"].as_str().unwrap_or_default();
                out.push((format!("{file}: {title}"), expr));
            }
        }
    }
    out
}

/// The `playlake_*` metric names an expression uses.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(found) = expr[i..].find("playlake_") {
        let start = i + found;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let preceded =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        if !preceded {
            names.insert(expr[start..end].to_owned());
        }
        i = end;
    }
    names
}

fn prometheus_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PLAYLAKE_TEST_PROMETHEUS").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("prometheus"))
        .find(|candidate| candidate.is_file())
}

/// Kills the child when the test ends, however it ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
}

/// Waits for the child to exit, up to `timeout`.
fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn start_run(
    stack_brokers: &str,
    prefix: &str,
    lake: &str,
    config: &Path,
    metrics_addr: &str,
    log: &Path,
    stdout: &Path,
) -> Reaped {
    let child = Command::new(env!("CARGO_BIN_EXE_playlake"))
        .args([
            "--config",
            &config.display().to_string(),
            "--brokers",
            stack_brokers,
            "--topic-prefix",
            prefix,
            "--lake",
            lake,
            "--metrics-addr",
            metrics_addr,
            "--kafka-option",
            &format!("sasl.password={SECRET}"),
            "--log-format",
            "json",
            "run",
        ])
        .env("RUST_LOG", "info,playlake_kafka=debug")
        .stdout(std::fs::File::create(stdout).expect("stdout file"))
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("start playlake run");
    Reaped(child)
}

#[test]
fn dashboards_query_a_real_prometheus_scraping_playlake_run() {
    let Some(stack) = Stack::from_env() else {
        return;
    };
    let Some(prometheus) = prometheus_binary() else {
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("prometheus is not installed but CI is set; run tests/stack/install.sh");
        }
        eprintln!("SKIPPED (prometheus not installed; run tests/stack/install.sh)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = unique_name("metrics");
    let lake = format!("file://{}", dir.path().join("lake").display());
    let config = dir.path().join("playlake.toml");
    std::fs::write(
        &config,
        "[process]\ncheckpoint_interval_ms = 1000\n\n[sink]\nflush_interval_seconds = 2\n\n[run]\nshutdown_deadline_seconds = 60\n",
    )
    .expect("config");
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let log = dir.path().join("playlake.log");
    let stdout = dir.path().join("playlake.out");
    let mut run = start_run(
        &stack.brokers,
        &prefix,
        &lake,
        &config,
        &metrics_addr,
        &log,
        &stdout,
    );

    // Traffic while it runs: valid events, duplicates and bad records (DLQ).
    let produce = Command::new(env!("CARGO_BIN_EXE_playlake"))
        .args([
            "--brokers",
            &stack.brokers,
            "--topic-prefix",
            &prefix,
            "produce",
            "--events",
            "30000",
            "--viewers",
            "300",
            "--rate-per-second",
            "6000",
            "--bad-record-fraction",
            "0.01",
        ])
        .env_remove("PLAYLAKE_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start playlake produce");

    // Ready once both stages are connected and assigned.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok((200, _)) = http_get(&metrics_addr, "/readyz") {
            break;
        }
        if let Some(status) = run.0.try_wait().expect("try_wait") {
            panic!("playlake run exited early ({status}):\n{}", log_tail(&log));
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never became ready:\n{:?}\n{}",
            http_get(&metrics_addr, "/readyz"),
            log_tail(&log)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let produced = produce.wait_with_output().expect("produce output");
    assert!(
        produced.status.success(),
        "playlake produce failed:\n{}",
        String::from_utf8_lossy(&produced.stderr)
    );

    // A private Prometheus scraping it every second.
    let prom_addr = format!("127.0.0.1:{}", free_port());
    let prom_config = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: playlake\n    static_configs:\n      - targets: ['{metrics_addr}']\n"
        ),
    )
    .expect("prometheus config");
    let prom_log = dir.path().join("prometheus.log");
    let _prom = Reaped(
        Command::new(&prometheus)
            .args([
                &format!("--config.file={}", prom_config.display()),
                &format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()),
                &format!("--web.listen-address={prom_addr}"),
                "--log.level=warn",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&prom_log).expect("prometheus log"))
            .spawn()
            .expect("start prometheus"),
    );

    // Poll until every dashboard expression returns data (rates need two scrapes
    // after the counters moved; files appear after the sink's flush interval).
    let exprs = dashboard_exprs();
    assert!(
        exprs.len() >= 20,
        "the dashboards hold {} queries",
        exprs.len()
    );
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut empty: Vec<String>;
    loop {
        empty = Vec::new();
        for (panel, expr) in &exprs {
            let target = format!("/api/v1/query?query={}", percent_encode(expr));
            let answer = http_get(&prom_addr, &target);
            let ok = match &answer {
                Ok((200, body)) => {
                    let json: serde_json::Value =
                        serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
                    json["status"] == "success"
                        && json["data"]["result"]
                            .as_array()
                            .is_some_and(|r| !r.is_empty())
                }
                // A query Prometheus refuses is a broken dashboard: fail at once.
                Ok((400, body)) => panic!("{panel}: Prometheus refused `{expr}`: {body}"),
                _ => false,
            };
            if !ok {
                empty.push(format!("{panel}: {expr} -> {answer:?}"));
            }
        }
        if empty.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            panic!(
                "dashboard queries still empty after 180 s:\n{}\nplaylake log:\n{}\nprometheus log:\n{}",
                empty.join("\n"),
                log_tail(&log),
                log_tail(&prom_log)
            );
        }
        std::thread::sleep(Duration::from_secs(2));
    }

    // Every metric a dashboard names is exported, and the secret is not.
    let (status, metrics) = http_get(&metrics_addr, "/metrics").expect("scrape");
    assert_eq!(status, 200);
    let exported: BTreeSet<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    for (panel, expr) in &exprs {
        for name in metric_names(expr) {
            assert!(
                exported.contains(name.as_str()),
                "{panel}: metric {name} is not exported by playlake run"
            );
        }
    }
    assert!(
        !metrics.contains(SECRET),
        "the Kafka password is in /metrics"
    );
    for line in metrics.lines().filter(|l| l.contains("stream_id=")) {
        assert!(
            line.starts_with("playlake_stream_concurrent_viewers{"),
            "{line}"
        );
    }
    let per_stream = metrics
        .lines()
        .filter(|l| l.starts_with("playlake_stream_concurrent_viewers{"))
        .count();
    assert!(
        per_stream <= 10,
        "at most metrics_top_streams streams: {per_stream}"
    );

    // SIGTERM: drain, commit, exit 0 within the deadline.
    sigterm(&run.0);
    let status = wait_exit(&mut run.0, Duration::from_secs(60)).unwrap_or_else(|| {
        panic!(
            "playlake run did not exit within 60 s of SIGTERM:\n{}",
            log_tail(&log)
        )
    });
    assert!(
        status.success(),
        "playlake run exited with {status}:\n{}",
        log_tail(&log)
    );
    let reports: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stdout).expect("stdout"))
            .expect("reports JSON");
    assert!(
        reports["process"]["records_in"].as_u64().unwrap_or(0) > 0,
        "{reports}"
    );
    assert!(
        reports["sink"]["files_written"].as_u64().unwrap_or(0) > 0,
        "{reports}"
    );

    let logs = std::fs::read_to_string(&log).expect("log");
    assert!(!logs.contains(SECRET), "the Kafka password is in the log");
    let mut lines = 0;
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let parsed: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("--log-format json wrote a non-JSON line ({e}): {line}"));
        assert!(
            parsed["level"].is_string() && parsed["fields"].is_object(),
            "{line}"
        );
        lines += 1;
    }
    assert!(lines > 0, "no log lines");
}

#[test]
fn readyz_is_not_ready_until_the_stages_are_assigned() {
    let Some(_stack) = Stack::from_env() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    // A broker address nothing listens on: the stages never get partitions.
    let brokers = format!("127.0.0.1:{}", free_port());
    let config = dir.path().join("playlake.toml");
    std::fs::write(&config, "[run]\nshutdown_deadline_seconds = 2\n").expect("config");
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let log = dir.path().join("playlake.log");
    let mut run = start_run(
        &brokers,
        &unique_name("notready"),
        &format!("file://{}", dir.path().join("lake").display()),
        &config,
        &metrics_addr,
        &log,
        &dir.path().join("out"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(&metrics_addr, "/healthz").map(|r| r.0).ok() != Some(200) {
        assert!(
            Instant::now() < deadline,
            "/healthz never answered:\n{}",
            log_tail(&log)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for _ in 0..10 {
        let (status, body) = http_get(&metrics_addr, "/readyz").expect("readyz");
        assert_eq!(status, 503, "{body}");
        assert!(
            body.contains("process: waiting") && body.contains("sink: waiting"),
            "{body}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let (_, metrics) = http_get(&metrics_addr, "/metrics").expect("metrics");
    assert!(
        metrics.contains("playlake_stage_ready{stage=\"process\"} 0"),
        "{metrics}"
    );
    // A stage stuck on an unreachable broker cannot drain: the deadline ends it.
    sigterm(&run.0);
    let status = wait_exit(&mut run.0, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no exit within the 2 s deadline:\n{}", log_tail(&log)));
    assert!(
        !status.success(),
        "an undrained stop must not claim success"
    );
    assert!(!std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains(SECRET));
}

#[test]
fn metric_names_are_found_in_expressions() {
    let names = metric_names(
        "histogram_quantile(0.5, sum by (le) (rate(playlake_a_bucket[5m]))) / playlake_b_total",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["playlake_a_bucket", "playlake_b_total"]
    );
}

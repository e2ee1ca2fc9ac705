//! Secrets never reach logs, metrics or printed config, and the metrics/health server
//! listens on loopback unless told otherwise. No test stack needed (except for the
//! DynamoDB source, which must create its topics first): Kafka is a port nothing
//! listens on, and AWS (S3, DynamoDB) is a fake HTTP endpoint started here
//! that answers every request with a retryable 500, so the SDKs sign, send, retry
//! and log with the injected credentials.
//!
//! Secrets injected, each a distinct marker:
//! - `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN` (environment);
//! - `sasl.password` in the config file's `[kafka_options]`;
//! - `ssl.key.password` as a `--kafka-option` flag, or (another run)
//!   `ssl.keystore.password` through `PLAYLAKE_KAFKA_OPTIONS`.
//!
//! Output searched: stdout and stderr (`RUST_LOG=debug`, human and JSON formats) of
//! `playlake config`, `playlake run` (plus its `/metrics`, `/healthz` and `/readyz`
//! bodies), `playlake query` on an S3 lake and, with the test stack's broker,
//! `playlake source dynamodb`. The fake endpoint checks that the session token was
//! really sent, so the search is not vacuous. (`tests/bad_input.rs` covers partition paths staying inside the lake;
//! `tests/metrics.rs` covers the password with a real broker.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const AWS_SECRET: &str = "awsSecretKey-Qz7Xv1Lw9Pm3Rt5Yb7Nc";
const AWS_TOKEN: &str = "awsSessionToken-Hq2Jk4Lm6Np8Qr0St";
const SASL_FILE: &str = "saslPasswordFile-W3e4R5t6Y7u8";
const SSL_KEY_FLAG: &str = "sslKeyPasswordFlag-Y7u8I9o0P1a2";
const SSL_KEYSTORE_ENV: &str = "sslKeystoreEnv-A1s2D3f4G5h6";

const SECRETS: [&str; 5] = [
    AWS_SECRET,
    AWS_TOKEN,
    SASL_FILE,
    SSL_KEY_FLAG,
    SSL_KEYSTORE_ENV,
];

/// Fails when any secret, or its distinctive tail, is in `text`.
fn assert_no_secret(what: &str, text: &str) {
    for secret in SECRETS {
        let tail = &secret[secret.len() - 12..];
        assert!(
            !text.contains(secret) && !text.contains(tail),
            "{what} contains the secret {secret}:\n{}",
            excerpt(text, tail)
        );
    }
}

fn excerpt(text: &str, needle: &str) -> String {
    text.lines()
        .filter(|l| l.contains(needle))
        .take(5)
        .collect::<Vec<_>>()
        .join("\n")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A fake AWS endpoint: records every request, answers 500 (retryable).
struct FakeAws {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl FakeAws {
    fn start() -> FakeAws {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake AWS");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = seen.clone();
                std::thread::spawn(move || serve(stream, &seen));
            }
        });
        FakeAws { url, requests }
    }

    fn request_count(&self) -> usize {
        self.requests.lock().map(|r| r.len()).unwrap_or(0)
    }

    fn any_request_contains(&self, needle: &str) -> bool {
        self.requests
            .lock()
            .map(|r| r.iter().any(|req| req.contains(needle)))
            .unwrap_or(false)
    }
}

fn serve(stream: TcpStream, seen: &Mutex<Vec<String>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut writer = stream;
    loop {
        let mut head = String::new();
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                content_length = v.trim().parse().unwrap_or(0);
            }
            let end = line == "\r\n";
            head.push_str(&line);
            if end {
                break;
            }
        }
        let mut body = vec![0; content_length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        head.push_str(&String::from_utf8_lossy(&body));
        if let Ok(mut s) = seen.lock() {
            s.push(head);
        }
        let payload = r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"fake endpoint"}"#;
        let response = format!(
            "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n{payload}",
            payload.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// How the command-line Kafka option is given: clap reads `PLAYLAKE_KAFKA_OPTIONS`
/// only when no `--kafka-option` flag is present, so each run uses one of the two.
#[derive(Clone, Copy, Debug)]
enum Via {
    /// `--kafka-option ssl.key.password=...`
    Flag,
    /// `PLAYLAKE_KAFKA_OPTIONS=ssl.keystore.password=...`
    Env,
}

/// The `playlake` binary in `dir` with the secrets injected.
fn playlake(dir: &Path, aws: &FakeAws, log_format: &str, via: Via) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_playlake"));
    cmd.current_dir(dir)
        .args(["--config", "playlake.toml", "--log-format", log_format])
        .env_remove("PLAYLAKE_CONFIG")
        .env_remove("PLAYLAKE_KAFKA_OPTIONS");
    match via {
        Via::Flag => {
            cmd.args([
                "--kafka-option",
                &format!("ssl.key.password={SSL_KEY_FLAG}"),
            ]);
        }
        Via::Env => {
            cmd.env(
                "PLAYLAKE_KAFKA_OPTIONS",
                format!("ssl.keystore.password={SSL_KEYSTORE_ENV}"),
            );
        }
    }
    cmd.env("AWS_ACCESS_KEY_ID", "AKIAFAKEACCESSKEYID")
        .env("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
        .env("AWS_SESSION_TOKEN", AWS_TOKEN)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", &aws.url)
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "debug")
        .env("NO_COLOR", "1");
    cmd
}

fn write_config(dir: &Path, brokers: &str, aws: &FakeAws) {
    std::fs::write(
        dir.join("playlake.toml"),
        format!(
            r#"brokers = "{brokers}"
lake = "file://./lake"

[kafka_options]
"security.protocol" = "SASL_PLAINTEXT"
"sasl.mechanism" = "PLAIN"
"sasl.username" = "playlake"
"sasl.password" = "{SASL_FILE}"

[run]
shutdown_deadline_seconds = 3

[source.dynamodb]
table = "playback"
endpoint_url = "{url}"
max_backoff_ms = 500
"#,
            url = aws.url
        ),
    )
    .expect("config file");
}

fn all_output(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A child killed on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sigterm(child: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

/// SIGTERM, then wait up to `timeout`, then SIGKILL; returns everything it printed.
fn stop(mut child: Reaped, timeout: Duration) -> String {
    sigterm(&child.0);
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if child.0.try_wait().ok().flatten().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.0.kill();
    let mut text = String::new();
    if let Some(mut out) = child.0.stdout.take() {
        let _ = out.read_to_string(&mut text);
    }
    if let Some(mut err) = child.0.stderr.take() {
        let _ = err.read_to_string(&mut text);
    }
    text
}

fn spawn(mut cmd: Command) -> Reaped {
    Reaped(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start playlake"),
    )
}

/// One HTTP/1.0 GET: status and body.
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

/// Local addresses of the TCP sockets `pid` listens on (from /proc).
fn listening_addrs(pid: u32) -> Vec<String> {
    let mut inodes = std::collections::BTreeSet::new();
    if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                let t = target.to_string_lossy().into_owned();
                if let Some(inode) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                    inodes.insert(inode.to_owned());
                }
            }
        }
    }
    let mut addrs = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // local_address, st (0A = LISTEN), inode
            if cols.len() > 9 && cols[3] == "0A" && inodes.contains(cols[9]) {
                addrs.push(decode_proc_addr(cols[1]));
            }
        }
    }
    addrs
}

/// `0100007F:2448` -> `127.0.0.1:9288`; IPv6 as 32 hex digits (4 little-endian words).
fn decode_proc_addr(text: &str) -> String {
    let (ip, port) = text.split_once(':').unwrap_or((text, "0"));
    let port = u16::from_str_radix(port, 16).unwrap_or(0);
    let bytes: Vec<u8> = (0..ip.len() / 2)
        .map(|i| u8::from_str_radix(&ip[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect();
    let mut ordered = Vec::new();
    for word in bytes.chunks(4) {
        ordered.extend(word.iter().rev());
    }
    let ip: std::net::IpAddr = if ordered.len() == 4 {
        std::net::Ipv4Addr::new(ordered[0], ordered[1], ordered[2], ordered[3]).into()
    } else {
        let mut b = [0u8; 16];
        b.copy_from_slice(&ordered[..16]);
        std::net::Ipv6Addr::from(b).into()
    };
    std::net::SocketAddr::new(ip, port).to_string()
}

fn is_loopback(addr: &str) -> bool {
    addr.parse::<std::net::SocketAddr>()
        .map(|a| match a.ip() {
            std::net::IpAddr::V4(ip) => ip.is_loopback(),
            std::net::IpAddr::V6(ip) => {
                ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
        })
        .unwrap_or(false)
}

#[test]
fn proc_addresses_decode() {
    assert_eq!(decode_proc_addr("0100007F:2448"), "127.0.0.1:9288");
    assert_eq!(
        decode_proc_addr("00000000000000000000000001000000:0050"),
        "[::1]:80"
    );
    assert!(is_loopback("127.0.0.1:9464") && is_loopback("[::1]:1"));
    assert!(!is_loopback("0.0.0.0:9464") && !is_loopback("[::]:9464"));
}

#[test]
fn printed_config_redacts_every_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let aws = FakeAws::start();
    write_config(dir.path(), &format!("127.0.0.1:{}", free_port()), &aws);
    let mut text = String::new();
    for (via, key) in [
        (Via::Flag, "ssl.key.password"),
        (Via::Env, "ssl.keystore.password"),
    ] {
        let out = playlake(dir.path(), &aws, "human", via)
            .arg("config")
            .output()
            .expect("playlake config");
        text = all_output(&out);
        assert!(out.status.success(), "{text}");
        assert_no_secret("`playlake config`", &text);
        for key in ["sasl.password", key] {
            assert!(
                text.lines()
                    .any(|l| l.contains(key) && l.contains("[redacted]")),
                "{key} ({via:?}) is not shown redacted:\n{text}"
            );
        }
    }
    // The default metrics address is loopback.
    let addr = text
        .lines()
        .find_map(|l| l.strip_prefix("metrics_addr = "))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .unwrap_or_else(|| panic!("no metrics_addr in:\n{text}"));
    assert!(is_loopback(&addr), "default metrics_addr {addr}");
}

#[test]
fn run_at_debug_level_leaks_no_secret_and_listens_on_loopback_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let aws = FakeAws::start();
    write_config(dir.path(), &format!("127.0.0.1:{}", free_port()), &aws);
    // The default address, when free; else an explicit loopback port (then only the
    // redaction is checked against the default).
    let default_free = TcpListener::bind("127.0.0.1:9464").is_ok();
    let metrics_addr = if default_free {
        "127.0.0.1:9464".to_owned()
    } else {
        eprintln!("127.0.0.1:9464 is busy: using another port, default bind not observed");
        format!("127.0.0.1:{}", free_port())
    };
    for (format, via) in [("human", Via::Flag), ("json", Via::Env)] {
        let mut cmd = playlake(dir.path(), &aws, format, via);
        if !default_free {
            cmd.args(["--metrics-addr", &metrics_addr]);
        }
        cmd.arg("run");
        let child = spawn(cmd);
        let deadline = Instant::now() + Duration::from_secs(60);
        while http_get(&metrics_addr, "/healthz").map(|r| r.0).ok() != Some(200) {
            assert!(Instant::now() < deadline, "/healthz never answered");
            std::thread::sleep(Duration::from_millis(100));
        }
        let listening = listening_addrs(child.0.id());
        assert!(!listening.is_empty(), "no listening socket found");
        for addr in &listening {
            assert!(is_loopback(addr), "playlake run listens on {addr}");
        }
        // Let the stages try the broker for a while, then read every endpoint.
        std::thread::sleep(Duration::from_secs(3));
        let mut bodies = String::new();
        for target in ["/metrics", "/healthz", "/readyz"] {
            let (_, body) = http_get(&metrics_addr, target).expect(target);
            bodies.push_str(&body);
        }
        assert!(bodies.contains("playlake_"), "{bodies}");
        assert_no_secret("the metrics server's bodies", &bodies);
        let output = stop(child, Duration::from_secs(20));
        assert!(!output.is_empty(), "no log output at debug level");
        assert_no_secret(&format!("`playlake run` output ({format})"), &output);
    }
}

#[test]
fn aws_credentials_in_use_never_reach_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let aws = FakeAws::start();
    write_config(dir.path(), &format!("127.0.0.1:{}", free_port()), &aws);

    // `playlake query` on an S3 lake behind the fake endpoint: object_store signs
    // with the credentials, retries the 500s and fails.
    let out = playlake(dir.path(), &aws, "json", Via::Env)
        .args([
            "query",
            "--lake",
            "s3://playlake-secrets/lake",
            "SELECT count(*) FROM events",
        ])
        .output()
        .expect("playlake query");
    let text = all_output(&out);
    assert!(!text.is_empty());
    assert_no_secret("`playlake query` output", &text);
    assert!(
        aws.request_count() > 0,
        "the query never called the fake endpoint:\n{text}"
    );
    // The credentials were used (signed requests carry the session token), so the
    // search above looked at output produced with them; the secret key itself is
    // never sent, only signatures made with it.
    assert!(
        aws.any_request_contains(AWS_TOKEN),
        "no request carried the session token"
    );
    assert!(!aws.any_request_contains(AWS_SECRET));
}

/// The DynamoDB source creates its topics before it reads the stream, so it needs a
/// broker: the test stack's (plaintext; the SASL and SSL passwords are still set and
/// must still not be printed). DynamoDB is the fake endpoint.
#[test]
fn dynamodb_source_credentials_never_reach_the_log() {
    let Some(stack) = playlake_tests::stack::Stack::from_env() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let aws = FakeAws::start();
    std::fs::write(
        dir.path().join("playlake.toml"),
        format!(
            r#"brokers = "{brokers}"
topic_prefix = "{prefix}"

[kafka_options]
"sasl.password" = "{SASL_FILE}"

[source.dynamodb]
table = "playback"
endpoint_url = "{url}"
max_backoff_ms = 500
"#,
            brokers = stack.brokers,
            prefix = playlake_tests::stack::unique_name("secrets"),
            url = aws.url
        ),
    )
    .expect("config file");
    let mut cmd = playlake(dir.path(), &aws, "human", Via::Flag);
    // The source serves /metrics: a free port, not the default other tests may hold.
    cmd.args([
        "--metrics-addr",
        "127.0.0.1:0",
        "source",
        "dynamodb",
        "--table",
        "playback",
    ]);
    let child = spawn(cmd);
    let deadline = Instant::now() + Duration::from_secs(60);
    while aws.request_count() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = stop(child, Duration::from_secs(10));
    assert!(
        aws.request_count() > 0,
        "the source never called the fake endpoint:\n{output}"
    );
    assert_no_secret("`playlake source dynamodb` output", &output);
    assert!(
        aws.any_request_contains(AWS_TOKEN),
        "no request carried the session token"
    );
    assert!(!aws.any_request_contains(AWS_SECRET));
}

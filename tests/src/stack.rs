//! Where the local test stack listens, and small helpers for tests that use it.
//!
//! `tests/run` (or `tests/stack/start.sh`) starts Tansu and moto on free loopback
//! ports and writes `.stack/env`; the test processes inherit those variables and
//! [`Stack::from_env`] reads them. Without them a test returns early after printing
//! `SKIPPED (stack not running; use tests/run)`, except under `CI=true`, where a
//! missing stack is a failure: CI must never pass by skipping.
//!
//! Every test names its own topics, groups and buckets with [`unique_name`], so tests
//! run in parallel against one broker and one moto without seeing each other.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use playlake_checkpoint::S3Options;

/// Kafka bootstrap servers of the running Tansu (`host:port`).
pub const ENV_BROKERS: &str = "PLAYLAKE_TEST_BROKERS";
/// moto's endpoint (`http://127.0.0.1:PORT`), for S3, DynamoDB and DynamoDB Streams.
pub const ENV_AWS_ENDPOINT: &str = "PLAYLAKE_TEST_AWS_ENDPOINT";
/// The venv's Python, with moto, boto3, duckdb and pyarrow.
pub const ENV_PYTHON: &str = "PLAYLAKE_TEST_PYTHON";
/// The Tansu binary, for tests that run a broker of their own (e.g. with sqlite storage).
pub const ENV_TANSU: &str = "PLAYLAKE_TEST_TANSU";

/// The running local test stack.
#[derive(Clone, Debug)]
pub struct Stack {
    /// Kafka bootstrap servers, e.g. `127.0.0.1:39092`.
    pub brokers: String,
    /// moto's endpoint URL, e.g. `http://127.0.0.1:39000`.
    pub aws_endpoint: String,
    /// AWS region the stack uses (`AWS_REGION`, default `us-east-1`).
    pub aws_region: String,
    /// Access key id for moto (`AWS_ACCESS_KEY_ID`, default `testing`).
    pub aws_access_key_id: String,
    /// Secret key for moto (`AWS_SECRET_ACCESS_KEY`, default `testing`).
    pub aws_secret_access_key: String,
    /// Python interpreter of the project venv (default `python3`).
    pub python: PathBuf,
    /// Tansu binary (default `tansu` on `PATH`).
    pub tansu: PathBuf,
}

impl Stack {
    /// Reads the stack's address from the environment.
    ///
    /// Returns `None` (after printing `SKIPPED ...`) when the stack is not running;
    /// panics instead when `CI` is `true`/`1`, so CI cannot pass by skipping.
    pub fn from_env() -> Option<Self> {
        let brokers = non_empty_var(ENV_BROKERS);
        let aws_endpoint = non_empty_var(ENV_AWS_ENDPOINT);
        let (Some(brokers), Some(aws_endpoint)) = (brokers, aws_endpoint) else {
            if is_ci() {
                panic!(
                    "\n\n*** The local test stack is not running but CI is set: {ENV_BROKERS} and \
                     {ENV_AWS_ENDPOINT} are missing. Run the tests through tests/run, which \
                     installs and starts Tansu and moto and exports them. ***\n"
                );
            }
            eprintln!("SKIPPED (stack not running; use tests/run)");
            return None;
        };
        Some(Self {
            brokers,
            aws_endpoint,
            aws_region: non_empty_var("AWS_REGION").unwrap_or_else(|| "us-east-1".into()),
            aws_access_key_id: non_empty_var("AWS_ACCESS_KEY_ID")
                .unwrap_or_else(|| "testing".into()),
            aws_secret_access_key: non_empty_var("AWS_SECRET_ACCESS_KEY")
                .unwrap_or_else(|| "testing".into()),
            python: non_empty_var(ENV_PYTHON)
                .map(PathBuf::from)
                .unwrap_or_else(|| "python3".into()),
            tansu: non_empty_var(ENV_TANSU)
                .map(PathBuf::from)
                .unwrap_or_else(|| "tansu".into()),
        })
    }

    /// S3 settings pointing at moto, for `playlake_checkpoint::Lake::open_with`.
    pub fn s3_options(&self) -> S3Options {
        S3Options {
            endpoint: Some(self.aws_endpoint.clone()),
            region: Some(self.aws_region.clone()),
            access_key_id: Some(self.aws_access_key_id.clone()),
            secret_access_key: Some(self.aws_secret_access_key.clone()),
        }
    }

    /// A `Command` running the venv's Python with the AWS variables set for moto
    /// (`AWS_ENDPOINT_URL` included), for independent checks with boto3, DuckDB or
    /// pyarrow.
    pub fn python(&self) -> Command {
        let mut cmd = Command::new(&self.python);
        cmd.env("AWS_ENDPOINT_URL", &self.aws_endpoint)
            .env("AWS_REGION", &self.aws_region)
            .env("AWS_DEFAULT_REGION", &self.aws_region)
            .env("AWS_ACCESS_KEY_ID", &self.aws_access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.aws_secret_access_key)
            .env("PLAYLAKE_TEST_BROKERS", &self.brokers);
        cmd
    }

    /// Runs `script` (Python source) with `args` in the venv and returns its stdout;
    /// panics with its stderr when it fails.
    pub fn run_python(&self, script: &str, args: &[&str]) -> String {
        let output = self
            .python()
            .arg("-c")
            .arg(script)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.python.display()));
        assert!(
            output.status.success(),
            "python failed ({}):\n--- script ---\n{script}\n--- stderr ---\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

/// A Tansu broker of a test's own, with sqlite storage in a directory the test owns,
/// so it can be killed and restarted on the same port without losing topics.
/// Killed when dropped.
#[derive(Debug)]
pub struct OwnTansu {
    binary: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl OwnTansu {
    /// Bootstrap servers of this broker (`127.0.0.1:PORT`, stable across restarts).
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker (again) and waits until it answers a Kafka request.
    pub fn start(&mut self) {
        if self.child.is_some() {
            return;
        }
        let log = std::fs::File::create(self.dir.join("tansu.log"))
            .unwrap_or_else(|e| panic!("cannot create {}/tansu.log: {e}", self.dir.display()));
        let listener = format!("tcp://{}", self.brokers());
        // Tansu 0.6.0 opens sqlite://FILE relative to its working directory.
        let child = Command::new(&self.binary)
            .current_dir(&self.dir)
            .args(["broker", "--cluster-id", "playlake-test"])
            .args(["--listener-url", &listener])
            .args(["--advertised-listener-url", &listener])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !kafka_answers(&self.brokers()) {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "tansu exited with {status}; see {}/tansu.log",
                    self.dir.display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "tansu did not answer on {} within 30s; see {}/tansu.log",
                self.brokers(),
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the broker at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills and starts the broker; topics and offsets survive in sqlite.
    pub fn restart(&mut self) {
        self.kill();
        self.start();
    }
}

impl Drop for OwnTansu {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Stack {
    /// Starts a Tansu of the test's own, storing into `dir` (which must exist), on a
    /// fresh loopback port.
    pub fn own_tansu(&self, dir: &std::path::Path) -> OwnTansu {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("cannot pick a free port: {e}"));
        let mut tansu = OwnTansu {
            binary: self.tansu.clone(),
            dir: dir.to_path_buf(),
            port,
            child: None,
        };
        tansu.start();
        tansu
    }
}

/// A moto server of a test's own (S3 and the other mocked services, in memory), on a
/// fresh loopback port, for tests that must make S3 unreachable without disturbing
/// the shared one. Killed when dropped.
#[derive(Debug)]
pub struct OwnMoto {
    port: u16,
    child: Option<Child>,
}

impl OwnMoto {
    /// The endpoint URL (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnMoto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Stack {
    /// Starts `python -m moto.server` on a free port and waits until it answers.
    /// moto keeps its state in memory only: to simulate an outage without losing
    /// the buckets, put a [`PausableProxy`] in front of it instead of stopping it.
    pub fn own_moto(&self, dir: &std::path::Path) -> OwnMoto {
        let port = free_port();
        let log = std::fs::File::create(dir.join("moto.log"))
            .unwrap_or_else(|e| panic!("cannot create {}/moto.log: {e}", dir.display()));
        let child = Command::new(&self.python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start moto with {}: {e}", self.python.display()));
        let mut moto = OwnMoto {
            port,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(Ok(Some(status))) = moto.child.as_mut().map(Child::try_wait) {
                panic!("moto exited with {status}; see {}/moto.log", dir.display());
            }
            assert!(
                Instant::now() < deadline,
                "moto did not listen on {port} within 30s; see {}/moto.log",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }
}

/// A TCP proxy on a loopback port that forwards to `target` until paused. While
/// paused it cuts every open connection and resets new ones at once, so clients see
/// the server as down (connection refused/reset), while the server behind it keeps
/// its state. Runs on the current tokio runtime; stops when dropped.
#[derive(Debug)]
pub struct PausableProxy {
    port: u16,
    paused: tokio::sync::watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl PausableProxy {
    /// Starts forwarding `127.0.0.1:<new port>` to `target` (`host:port`).
    pub async fn start(target: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("cannot bind the proxy: {e}"));
        let port = listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("proxy address: {e}"));
        let (paused, _) = tokio::sync::watch::channel(false);
        let watch = paused.clone();
        let target = target.to_owned();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if *watch.borrow() {
                    // Dropping the accepted socket closes it: the client's request fails.
                    let _ = client.set_zero_linger();
                    drop(client);
                    continue;
                }
                let mut pause = watch.subscribe();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = pause.wait_for(|paused| *paused) => {
                            let _ = client.set_zero_linger();
                        }
                    }
                });
            }
        });
        Self {
            port,
            paused,
            accept,
        }
    }

    /// The proxy's endpoint URL (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Cuts every connection and refuses new ones until [`Self::resume`].
    pub fn pause(&self) {
        self.paused.send_replace(true);
    }

    /// Forwards again.
    pub fn resume(&self) {
        self.paused.send_replace(false);
    }
}

impl Drop for PausableProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot pick a free port: {e}"))
}

/// Whether a Kafka ApiVersions (v0) request to `address` is answered without error.
pub fn kafka_answers(address: &str) -> bool {
    fn probe(address: &str) -> std::io::Result<bool> {
        let mut stream = TcpStream::connect(address)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let client_id = b"playlake-probe";
        let mut body = Vec::new();
        body.extend_from_slice(&18i16.to_be_bytes()); // ApiVersions
        body.extend_from_slice(&0i16.to_be_bytes()); // version 0
        body.extend_from_slice(&7i32.to_be_bytes()); // correlation id
        body.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
        body.extend_from_slice(client_id);
        stream.write_all(&(body.len() as i32).to_be_bytes())?;
        stream.write_all(&body)?;
        let mut head = [0u8; 10]; // size, correlation id, error code
        stream.read_exact(&mut head)?;
        Ok(head[4..8] == 7i32.to_be_bytes() && head[8..10] == [0, 0])
    }
    probe(address).unwrap_or(false)
}

/// A name no other test (in this or a parallel process) uses: `prefix-pid-n-millis`.
/// Valid as a Kafka topic or group name; see [`s3_bucket`] for buckets.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() % 100_000_000)
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{millis}", std::process::id())
}

/// Creates a fresh, empty bucket in moto and returns its name.
pub fn s3_bucket(stack: &Stack) -> String {
    let mut name: String = unique_name("playlake")
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    name.truncate(63);
    let status = http_put(&stack.aws_endpoint, &format!("/{name}"))
        .unwrap_or_else(|e| panic!("cannot create bucket {name} at {}: {e}", stack.aws_endpoint));
    assert!(
        (200..300).contains(&status),
        "creating bucket {name} at {} answered HTTP {status}",
        stack.aws_endpoint
    );
    name
}

/// A bare HTTP/1.1 PUT with an empty body (moto accepts unsigned requests); returns
/// the status code. Keeps the tests free of an HTTP client dependency.
fn http_put(endpoint: &str, path: &str) -> std::io::Result<u16> {
    let authority = endpoint
        .strip_prefix("http://")
        .ok_or_else(|| std::io::Error::other("only http:// endpoints are supported"))?
        .trim_end_matches('/');
    let mut stream = TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "PUT {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad HTTP response: {response:.200}")))
}

fn non_empty_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ() {
        let a = unique_name("t");
        let b = unique_name("t");
        assert_ne!(a, b);
        assert!(a.starts_with("t-"));
    }

    #[test]
    fn own_tansu_answers_after_a_restart() {
        let Some(stack) = Stack::from_env() else {
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let mut tansu = stack.own_tansu(dir.path());
        let brokers = tansu.brokers();
        assert!(kafka_answers(&brokers));
        tansu.kill();
        assert!(!kafka_answers(&brokers));
        tansu.restart();
        assert_eq!(tansu.brokers(), brokers);
        assert!(kafka_answers(&brokers));
        assert!(dir.path().join("tansu.db").is_file());
    }
}

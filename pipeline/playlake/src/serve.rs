//! The metrics and health server of `playlake run`: a small HTTP/1.1 responder on
//! tokio (one request per connection, `Connection: close`).
//!
//! - `GET /metrics`: every metric of the process's registry, Prometheus text format;
//! - `GET /healthz`: 200 while the process runs (liveness);
//! - `GET /readyz`: 200 once every stage is connected and has been assigned its
//!   partitions, 503 before, with each stage's state in the body (readiness).
//!
//! It binds to loopback by default (`--metrics-addr 127.0.0.1:9464`); expose it
//! beyond the host only on purpose. Nothing it serves holds a secret: metric labels
//! are stage, topic, table and reason names.
//!
//! Robustness: a request head larger than [`MAX_HEAD_BYTES`] or slower than
//! [`REQUEST_TIMEOUT`] is dropped, and at most [`MAX_CONNECTIONS`] connections are
//! served at once, so a misbehaving client cannot starve the pipeline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use playlake_metrics::Metrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Largest request head read (request line and headers).
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Longest time a client may take to send its request and read the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the accept queue.
pub const MAX_CONNECTIONS: usize = 32;

/// The running server; aborted when dropped.
pub struct Server {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Server {
    /// The address it listens on (the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` and serves in a background task.
pub async fn start(addr: SocketAddr, metrics: Metrics) -> anyhow::Result<Server> {
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen for metrics on {addr}; choose a free address with --metrics-addr or PLAYLAKE_METRICS_ADDR")
    })?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "metrics and health server listening (/metrics, /healthz, /readyz)");
    let task = tokio::spawn(accept_loop(listener, metrics));
    Ok(Server { addr, task })
}

async fn accept_loop(listener: TcpListener, metrics: Metrics) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return; // the semaphore is never closed
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: pause instead of spinning.
                tracing::warn!(%error, "metrics server: accepting a connection failed; retrying in 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let served = tokio::time::timeout(REQUEST_TIMEOUT, serve(stream, &metrics)).await;
            match served {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "metrics server: connection ended with an error")
                }
                Err(_) => tracing::debug!(%peer, "metrics server: request timed out"),
            }
            drop(permit);
        });
    }
}

async fn serve(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let Some(head) = read_head(&mut stream).await? else {
        return respond(&mut stream, 400, "text/plain", "bad request\n", false).await;
    };
    let response = route(&head, metrics);
    let head_only = head.starts_with("HEAD ");
    respond(
        &mut stream,
        response.status,
        response.content_type,
        &response.body,
        head_only,
    )
    .await
}

/// Reads up to the end of the request head; `None` when it is too large or the
/// client closed early.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find(&buf, b"\r\n\r\n").or_else(|| find(&buf, b"\n\n")) {
            buf.truncate(end);
            return Ok(String::from_utf8(buf).ok());
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Ok(None);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What to answer.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

/// Answers one request head (pure, so it is tested without sockets).
pub fn route(head: &str, metrics: &Metrics) -> Response {
    let text = |status, body: String| Response {
        status,
        content_type: "text/plain; charset=utf-8",
        body,
    };
    let mut parts = head.lines().next().unwrap_or_default().split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return text(400, "bad request\n".into());
    };
    if method != "GET" && method != "HEAD" {
        return text(405, "only GET and HEAD are served\n".into());
    }
    let path = target.split('?').next().unwrap_or(target);
    match path {
        "/metrics" => Response {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: metrics.encode(),
        },
        "/healthz" => text(200, "ok\n".into()),
        "/readyz" => {
            let (ready, stages) = metrics.ready();
            let mut body = String::from(if ready { "ready\n" } else { "not ready\n" });
            for (stage, stage_ready) in stages {
                let state = if stage_ready {
                    "ready"
                } else {
                    "waiting for its connection and partition assignment"
                };
                body.push_str(&format!("{stage}: {state}\n"));
            }
            text(if ready { 200 } else { 503 }, body)
        }
        _ => text(404, "not found; try /metrics, /healthz or /readyz\n".into()),
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &str,
    head_only: bool,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Unknown",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use playlake_metrics::StageMetrics;

    use super::*;

    async fn get(addr: SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_metrics_health_and_readiness_over_http() {
        let metrics = Metrics::new();
        let stage = StageMetrics::new(&metrics, "process").unwrap();
        stage.records_in.inc_by(42);
        let server = start("127.0.0.1:0".parse().unwrap(), metrics.clone())
            .await
            .unwrap();
        let addr = server.addr();

        let reply = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        assert!(reply.contains("text/plain; version=0.0.4"), "{reply}");
        assert!(
            reply.contains("playlake_records_in_total{stage=\"process\"} 42"),
            "{reply}"
        );
        let (head, body) = reply.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len());

        let reply = get(addr, "GET /healthz HTTP/1.1\r\n\r\n").await;
        assert!(
            reply.starts_with("HTTP/1.1 200 OK") && reply.ends_with("ok\n"),
            "{reply}"
        );

        // Not ready before the stage is assigned partitions.
        let reply = get(addr, "GET /readyz HTTP/1.1\r\n\r\n").await;
        assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
        assert!(reply.contains("process: waiting"), "{reply}");
        stage.set_ready(true);
        let reply = get(addr, "GET /readyz?verbose=1 HTTP/1.0\r\n\r\n").await;
        assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
        assert!(reply.contains("process: ready"), "{reply}");

        let reply = get(addr, "HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert!(reply.ends_with("\r\n\r\n"), "HEAD has no body: {reply}");
        assert!(get(addr, "GET /nope HTTP/1.1\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 404"));
        assert!(get(addr, "POST /metrics HTTP/1.1\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 405"));
        assert!(get(addr, "garbage\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 400"));
    }

    #[tokio::test]
    async fn an_oversized_or_silent_request_does_not_stop_the_server() {
        let metrics = Metrics::new();
        let server = start("127.0.0.1:0".parse().unwrap(), metrics)
            .await
            .unwrap();
        let addr = server.addr();
        let huge = format!(
            "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(3 * MAX_HEAD_BYTES)
        );
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // The server may close before reading everything; either way it answers 400.
        let _ = stream.write_all(huge.as_bytes()).await;
        let mut out = String::new();
        let _ = stream.read_to_string(&mut out).await;
        assert!(out.is_empty() || out.starts_with("HTTP/1.1 400"), "{out}");
        // A client that connects and says nothing holds one slot, not the server.
        let _silent = TcpStream::connect(addr).await.unwrap();
        let reply = get(addr, "GET /healthz HTTP/1.1\r\n\r\n").await;
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    }

    #[test]
    fn the_default_address_is_loopback() {
        let addr: SocketAddr = crate::config::DEFAULT_METRICS_ADDR.parse().unwrap();
        assert!(addr.ip().is_loopback());
    }
}

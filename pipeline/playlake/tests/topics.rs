//! `playlake topics` against the real test broker (Tansu): creates the pipeline's
//! topics with the requested partitions, and a second run leaves them as they are.

use std::process::Command;

use playlake_tests::stack::{unique_name, Stack};
use playlake_transport::Transport;

#[tokio::test]
async fn topics_creates_missing_topics_idempotently() {
    let Some(stack) = Stack::from_env() else {
        return;
    };
    let prefix = unique_name("topics");
    for partitions in ["3", "5"] {
        let out = Command::new(env!("CARGO_BIN_EXE_playlake"))
            .args([
                "topics",
                "--brokers",
                &stack.brokers,
                "--topic-prefix",
                &prefix,
                "--partitions",
                partitions,
            ])
            .env_remove("PLAYLAKE_CONFIG")
            .output()
            .expect("run playlake");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The second run asks for 5 partitions: existing topics keep their 3.
        assert!(
            stdout.contains(&format!(
                "{prefix}.resume\tpartitions=3\tcleanup.policy=compact"
            )),
            "{stdout}"
        );
        assert_eq!(stdout.lines().count(), 7, "{stdout}");
    }

    let transport = playlake_kafka::KafkaTransport::new(playlake_kafka::KafkaConfig::new(
        stack.brokers.clone(),
    ))
    .expect("kafka transport");
    for suffix in [
        "events", "sessions", "viewers", "daily", "resume", "late", "dlq",
    ] {
        let topic = format!("{prefix}.{suffix}");
        assert_eq!(transport.partition_count(&topic).await.expect(&topic), 3);
    }
}

#[test]
fn topics_reports_an_unreachable_broker() {
    // A port nobody listens on: the command must fail with a message naming the
    // broker, not hang or panic.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let out = Command::new(env!("CARGO_BIN_EXE_playlake"))
        .args(["topics", "--brokers", &format!("127.0.0.1:{port}")])
        .env_remove("PLAYLAKE_CONFIG")
        .output()
        .expect("run playlake");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

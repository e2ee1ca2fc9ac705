//! Shutdown on SIGTERM or Ctrl-C: the first signal asks the running stage to drain
//! in-flight work, checkpoint and return; a second one exits at once.

use tokio::signal::unix::{signal, SignalKind};

/// Completes on the first SIGTERM or SIGINT. After it has fired, a second signal
/// ends the process immediately with status 130.
pub async fn shutdown() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the process with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutdown requested: finishing in-flight work and checkpointing (signal again to exit at once)");
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::warn!("second signal: exiting without a final checkpoint; the next start replays from the last one");
        std::process::exit(130);
    });
}

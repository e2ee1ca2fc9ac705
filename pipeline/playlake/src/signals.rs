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

/// The shutdown signal every stage shares; cheap to clone. `playlake run` sends it
/// to all its stages, [`run_until_signalled`] to its one.
#[derive(Clone)]
pub struct Shutdown(pub(crate) tokio::sync::watch::Receiver<bool>);

impl Shutdown {
    /// Completes once shutdown is requested (or its sender is gone).
    pub async fn requested(mut self) {
        let _ = self.0.wait_for(|requested| *requested).await;
    }

    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }
}

/// Runs one standalone stage (`playlake process`, `sink`, `source`). `stage` gets a
/// [`Shutdown`] requested on the first SIGTERM or Ctrl-C, after which it must finish
/// in-flight work, checkpoint and return, within `deadline_seconds`.
///
/// Watched from here rather than inside the stage: a stage notices its stop future
/// only between steps, and a step can wait minutes for a broker or store that went
/// away (librdkafka's delivery timeout is 5 minutes). Past the deadline the stage is
/// abandoned without its final checkpoint, which is crash semantics: the next start
/// restores the last checkpoint and replays, so nothing is lost or doubled.
pub async fn run_until_signalled<F: std::future::Future>(
    name: &str,
    deadline_seconds: u64,
    stage: impl FnOnce(Shutdown) -> F,
) -> anyhow::Result<F::Output> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut stage = std::pin::pin!(stage(Shutdown(stopped)));
    tokio::select! {
        output = stage.as_mut() => return Ok(output),
        () = shutdown() => {}
    }
    let _ = stop.send(true);
    let deadline = std::time::Duration::from_secs(deadline_seconds);
    match tokio::time::timeout(deadline, stage).await {
        Ok(output) => Ok(output),
        Err(_) => {
            tracing::error!(
                stage = name,
                shutdown_deadline_seconds = deadline_seconds,
                "the stage did not finish within the shutdown deadline; exiting without its final checkpoint (the next start replays from the last one)"
            );
            anyhow::bail!(
                "the {name} did not stop within shutdown_deadline_seconds = {deadline_seconds} after the signal (is the broker or the lake unreachable?); exited without its final checkpoint, the next start replays from the last one"
            )
        }
    }
}

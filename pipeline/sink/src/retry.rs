//! Retries of lake storage calls with exponential backoff, bounded in time.
//!
//! Data flow: every object-store call of the run loop (publishing a file, loading or
//! saving a checkpoint) goes through [`retry_lake`] or [`retry_checkpoint`]. A
//! transient failure (an outage, a timeout, a 5xx) is logged and retried after a
//! growing pause (100 ms doubling up to 5 s) until `max_elapsed` has passed; a
//! permanent one (no such bucket, access denied, fenced, corrupt) returns at once.
//! A shutdown request stops retrying at once ([`SinkError::Interrupted`]): nothing
//! past the durable files was committed, so the next start simply replays.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use tokio::time::Instant;

use playlake_checkpoint::CheckpointError;
use playlake_lake::error::names_permanent_s3_code;
use playlake_lake::LakeError;

use crate::error::SinkError;

const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// True when an object store error may heal by itself.
fn transient_store_error(error: &object_store::Error) -> bool {
    !names_permanent_s3_code(error)
        && !matches!(
            error,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
                | object_store::Error::NotFound { .. }
                | object_store::Error::NotSupported { .. }
                | object_store::Error::NotImplemented { .. }
                | object_store::Error::UnknownConfigurationKey { .. }
                | object_store::Error::InvalidPath { .. }
                | object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. }
        )
}

/// After a shutdown request, how long a storage call may still take before it is
/// abandoned: enough for the final publishes and commits of a healthy store, short
/// enough to exit within a shutdown deadline during an outage (object_store's own
/// retries can hold one call for minutes).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long transient storage errors are retried, and the shutdown request that
/// stops retrying early. Cheap to clone; clones share the request.
#[derive(Debug, Clone)]
pub(crate) struct RetryBudget {
    max_elapsed: Duration,
    /// When shutdown was requested, once it was.
    stop: Arc<watch::Sender<Option<Instant>>>,
}

impl RetryBudget {
    pub(crate) fn new(max_elapsed: Duration) -> Self {
        Self {
            max_elapsed,
            stop: Arc::new(watch::Sender::new(None)),
        }
    }

    /// Asks every retry loop of this budget to give up: at its next failure, or
    /// when a call is still running [`SHUTDOWN_GRACE`] after the request.
    pub(crate) fn stop(&self) {
        self.stop.send_if_modified(|at| {
            let first = at.is_none();
            if first {
                *at = Some(Instant::now());
            }
            first
        });
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stop.borrow().is_some()
    }

    /// Completes [`SHUTDOWN_GRACE`] after shutdown was requested (never before).
    /// Abandoning a storage call then is safe: every write the sink makes (a
    /// publish, a conditional checkpoint create) lands whole or not at all, and a
    /// restart replays from the last checkpoint, as after a crash.
    pub(crate) async fn interrupted(&self) {
        let mut requests = self.stop.subscribe();
        let requested = requests.wait_for(Option::is_some).await.map(|at| *at);
        let Ok(at) = requested else {
            return std::future::pending().await;
        };
        let at = at.unwrap_or_else(Instant::now);
        tokio::time::sleep_until(at + SHUTDOWN_GRACE).await;
    }
}

/// Why a retried call gave up.
enum GaveUp<E> {
    /// Permanent, or transient beyond the budget.
    Failed(E, u32),
    /// Shutdown was requested while the call was failing or hanging.
    Interrupted(u32),
}

async fn retry<T, E, F, Fut>(
    what: &str,
    budget: &RetryBudget,
    transient: impl Fn(&E) -> bool,
    mut call: F,
) -> Result<T, GaveUp<E>>
where
    E: std::error::Error,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    let mut pause = FIRST_PAUSE;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let outcome = tokio::select! {
            biased;
            outcome = call() => outcome,
            () = budget.interrupted() => return Err(GaveUp::Interrupted(attempts)),
        };
        match outcome {
            Ok(value) => {
                if attempts > 1 {
                    tracing::info!(what, attempts, "lake storage recovered");
                }
                return Ok(value);
            }
            Err(error) if transient(&error) && budget.stopping() => {
                tracing::warn!(what, attempts, error = %error,
                    "transient lake storage error during shutdown; not retrying");
                return Err(GaveUp::Interrupted(attempts));
            }
            Err(error) if transient(&error) && started.elapsed() < budget.max_elapsed => {
                tracing::warn!(
                    what,
                    attempts,
                    retry_in_ms = pause.as_millis() as u64,
                    error = %error,
                    cause = ?std::error::Error::source(&error).map(ToString::to_string),
                    "transient lake storage error; retrying"
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
            Err(error) => return Err(GaveUp::Failed(error, attempts)),
        }
    }
}

/// Runs a lake writer call, retrying transient storage errors.
pub(crate) async fn retry_lake<T, F, Fut>(
    operation: &'static str,
    budget: &RetryBudget,
    call: F,
) -> Result<T, SinkError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, LakeError>>,
{
    retry(operation, budget, LakeError::is_transient, call)
        .await
        .map_err(|gave_up| match gave_up {
            GaveUp::Failed(source, attempts) => SinkError::Lake {
                operation,
                attempts,
                source: Box::new(source),
            },
            GaveUp::Interrupted(attempts) => SinkError::Interrupted {
                operation,
                attempts,
            },
        })
}

/// Backoff state for a retry loop written by the caller (for calls that borrow
/// their store mutably, such as checkpoint saves).
pub(crate) struct Backoff {
    operation: &'static str,
    started: Instant,
    pause: Duration,
    attempts: u32,
    budget: RetryBudget,
}

impl Backoff {
    pub(crate) fn new(operation: &'static str, budget: &RetryBudget) -> Self {
        Self {
            operation,
            started: Instant::now(),
            pause: FIRST_PAUSE,
            attempts: 0,
            budget: budget.clone(),
        }
    }

    /// After a failed checkpoint call: waits and returns `Ok` to try again when
    /// the error is transient and time is left, else the error to stop with.
    pub(crate) async fn checkpoint_failed(
        &mut self,
        scope: &str,
        error: CheckpointError,
    ) -> Result<(), SinkError> {
        self.attempts += 1;
        let transient = matches!(&error, CheckpointError::Storage { source, .. }
            if transient_store_error(source));
        if transient && self.budget.stopping() {
            tracing::warn!(what = self.operation, scope, attempts = self.attempts, error = %error,
                "transient checkpoint storage error during shutdown; not retrying");
            return Err(self.interrupted());
        }
        if transient && self.started.elapsed() < self.budget.max_elapsed {
            tracing::warn!(
                what = self.operation,
                scope,
                attempts = self.attempts,
                retry_in_ms = self.pause.as_millis() as u64,
                error = %error,
                cause = ?std::error::Error::source(&error).map(ToString::to_string),
                "transient checkpoint storage error; retrying"
            );
            tokio::time::sleep(self.pause).await;
            self.pause = (self.pause * 2).min(MAX_PAUSE);
            return Ok(());
        }
        Err(SinkError::Checkpoint {
            operation: self.operation,
            scope: scope.to_owned(),
            attempts: self.attempts,
            source: Box::new(error),
        })
    }

    /// One attempt of a checkpoint-store call: `Some` with its value, or `None`
    /// after a transient storage error (counted in `retries`, paused): try again.
    /// A shutdown abandons the call; other errors are returned to stop with.
    pub(crate) async fn attempt<T>(
        &mut self,
        scope: &str,
        retries: &playlake_metrics::prometheus::IntCounter,
        call: impl std::future::Future<Output = playlake_checkpoint::Result<T>>,
    ) -> Result<Option<T>, SinkError> {
        let budget = self.budget.clone();
        let outcome = tokio::select! {
            biased;
            outcome = call => outcome,
            () = budget.interrupted() => return Err(self.interrupted()),
        };
        match outcome {
            Ok(value) => Ok(Some(value)),
            Err(e) => {
                self.checkpoint_failed(scope, e).await?;
                retries.inc();
                Ok(None)
            }
        }
    }

    /// The error of a call abandoned because shutdown was requested.
    pub(crate) fn interrupted(&self) -> SinkError {
        SinkError::Interrupted {
            operation: self.operation,
            attempts: self.attempts.max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn outage() -> LakeError {
        LakeError::Storage {
            operation: "put",
            path: "x".into(),
            source: object_store::Error::Generic {
                store: "S3",
                source: "connection refused".into(),
            },
        }
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_until_they_heal() {
        let calls = Cell::new(0);
        let value = retry_lake("put", &RetryBudget::new(Duration::from_secs(60)), || {
            calls.set(calls.get() + 1);
            let fail = calls.get() < 4;
            async move {
                if fail {
                    Err(outage())
                } else {
                    Ok(7)
                }
            }
        })
        .await;
        assert_eq!(value.ok(), Some(7));
        assert_eq!(calls.get(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_bounded_and_permanent_errors_stop_at_once() {
        let err = retry_lake(
            "put",
            &RetryBudget::new(Duration::from_secs(10)),
            || async { Err::<(), _>(outage()) },
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, SinkError::Lake { attempts, .. } if attempts > 3),
            "{err:?}"
        );
        let denied = || LakeError::Storage {
            operation: "put",
            path: "x".into(),
            source: object_store::Error::PermissionDenied {
                path: "x".into(),
                source: "no".into(),
            },
        };
        let err = retry_lake(
            "put",
            &RetryBudget::new(Duration::from_secs(10)),
            || async { Err::<(), _>(denied()) },
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, SinkError::Lake { attempts: 1, .. }),
            "{err:?}"
        );
        assert!(std::error::Error::source(&err).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_stops_retrying_an_outage() {
        let budget = RetryBudget::new(Duration::from_secs(600));
        let calls = Cell::new(0);
        let err = retry_lake("put", &budget, || {
            calls.set(calls.get() + 1);
            if calls.get() == 3 {
                budget.stop();
            }
            async { Err::<(), _>(outage()) }
        })
        .await
        .unwrap_err();
        assert!(
            matches!(err, SinkError::Interrupted { attempts: 3, .. }),
            "{err:?}"
        );
        assert!(err.is_interrupted());
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_hanging_after_shutdown_is_abandoned_after_the_grace() {
        let budget = RetryBudget::new(Duration::from_secs(600));
        budget.stop();
        let started = Instant::now();
        let err = retry_lake("put", &budget, || {
            std::future::pending::<Result<(), LakeError>>()
        })
        .await
        .unwrap_err();
        assert!(err.is_interrupted(), "{err:?}");
        assert_eq!(started.elapsed(), SHUTDOWN_GRACE);
        // A healthy call during shutdown still completes (final publishes).
        let value = retry_lake("put", &budget, || async { Ok::<_, LakeError>(1) }).await;
        assert_eq!(value.ok(), Some(1));
    }

    /// Regression: moto (and S3) answer a list of a missing bucket with 404 and a
    /// `NoSuchBucket` body, which object_store reports as `Generic`; that was
    /// retried for `storage_retry_max_seconds` instead of stopping the sink.
    #[tokio::test(start_paused = true)]
    async fn a_missing_bucket_is_permanent() {
        let body = "Error performing list request: Server returned non-2xx status code: \
                    404 Not Found: <Error><Code>NoSuchBucket</Code><BucketName>b</BucketName></Error>";
        let missing = object_store::Error::Generic {
            store: "S3",
            source: body.into(),
        };
        assert!(!transient_store_error(&missing));
        let err = retry_lake(
            "put",
            &RetryBudget::new(Duration::from_secs(10)),
            || async {
                Err::<(), _>(LakeError::Storage {
                    operation: "put",
                    path: "x".into(),
                    source: object_store::Error::Generic {
                        store: "S3",
                        source: body.into(),
                    },
                })
            },
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, SinkError::Lake { attempts: 1, .. }),
            "{err:?}"
        );
        assert!(transient_store_error(&object_store::Error::Generic {
            store: "S3",
            source: "connection refused".into(),
        }));
    }
}

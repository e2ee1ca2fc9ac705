//! Retries of lake storage calls with exponential backoff, bounded in time.
//!
//! Data flow: every object-store call of the run loop (publishing a file, loading or
//! saving a checkpoint) goes through [`retry_lake`] or [`retry_checkpoint`]. A
//! transient failure (an outage, a timeout, a 5xx) is logged and retried after a
//! growing pause (100 ms doubling up to 5 s) until `max_elapsed` has passed; a
//! permanent one (no such bucket, access denied, fenced, corrupt) returns at once.

use std::future::Future;
use std::time::Duration;

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

async fn retry<T, E, F, Fut>(
    what: &str,
    max_elapsed: Duration,
    transient: impl Fn(&E) -> bool,
    mut call: F,
) -> Result<T, (E, u32)>
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
        match call().await {
            Ok(value) => {
                if attempts > 1 {
                    tracing::info!(what, attempts, "lake storage recovered");
                }
                return Ok(value);
            }
            Err(error) if transient(&error) && started.elapsed() < max_elapsed => {
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
            Err(error) => return Err((error, attempts)),
        }
    }
}

/// Runs a lake writer call, retrying transient storage errors.
pub(crate) async fn retry_lake<T, F, Fut>(
    operation: &'static str,
    max_elapsed: Duration,
    call: F,
) -> Result<T, SinkError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, LakeError>>,
{
    retry(operation, max_elapsed, LakeError::is_transient, call)
        .await
        .map_err(|(source, attempts)| SinkError::Lake {
            operation,
            attempts,
            source: Box::new(source),
        })
}

/// Backoff state for a retry loop written by the caller (for calls that borrow
/// their store mutably, such as checkpoint saves).
pub(crate) struct Backoff {
    operation: &'static str,
    started: Instant,
    pause: Duration,
    attempts: u32,
    max_elapsed: Duration,
}

impl Backoff {
    pub(crate) fn new(operation: &'static str, max_elapsed: Duration) -> Self {
        Self {
            operation,
            started: Instant::now(),
            pause: FIRST_PAUSE,
            attempts: 0,
            max_elapsed,
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
        if transient && self.started.elapsed() < self.max_elapsed {
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
        let value = retry_lake("put", Duration::from_secs(60), || {
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
        let err = retry_lake("put", Duration::from_secs(10), || async {
            Err::<(), _>(outage())
        })
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
        let err = retry_lake("put", Duration::from_secs(10), || async {
            Err::<(), _>(denied())
        })
        .await
        .unwrap_err();
        assert!(
            matches!(err, SinkError::Lake { attempts: 1, .. }),
            "{err:?}"
        );
        assert!(std::error::Error::source(&err).is_some());
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
        let err = retry_lake("put", Duration::from_secs(10), || async {
            Err::<(), _>(LakeError::Storage {
                operation: "put",
                path: "x".into(),
                source: object_store::Error::Generic {
                    store: "S3",
                    source: body.into(),
                },
            })
        })
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

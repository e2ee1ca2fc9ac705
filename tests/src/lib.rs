//! Shared helpers of playlake's integration tests.
//!
//! - [`stack`]: where the local test stack (Tansu, moto) listens, unique names per
//!   test, and the rule that a missing stack fails loudly under `CI=true`.
//! - [`conformance`]: the transport conformance suite, generic over
//!   [`playlake_transport::Transport`], run against the in-process log and Kafka.

pub mod conformance;
pub mod stack;

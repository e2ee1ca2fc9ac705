//! Transport conformance suite (placeholder).

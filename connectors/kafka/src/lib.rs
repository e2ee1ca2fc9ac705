//! Kafka plumbing (placeholder).

//! Checkpoint store (placeholder).

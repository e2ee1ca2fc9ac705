//! Test stack helpers (placeholder).

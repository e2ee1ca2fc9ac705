//! playlake record types (placeholder).

//! Hive partition escaping (`playlake-lake`'s `hive.rs`): every value, whatever its
//! characters, stays one directory level under its `column=` segment and reads back
//! as itself.
//!
//! Invariants: `unescape(escape(v)) == v` (null for the empty value); the escaped
//! text is never empty, `.` or `..`, and holds no `/`, `\`, `=` or ASCII control
//! character;
//! `unescape` never panics on any text.

#![no_main]

use libfuzzer_sys::fuzz_target;
use playlake_fuzz::hive::{escape, unescape, HIVE_DEFAULT_PARTITION};

fuzz_target!(|data: &[u8]| {
    let value = String::from_utf8_lossy(data);
    let escaped = escape(Some(&value));
    assert!(!escaped.is_empty());
    assert!(
        escaped != "." && escaped != "..",
        "{value:?} -> {escaped:?}"
    );
    assert!(
        !escaped.contains(['/', '\\', '=']),
        "{value:?} -> {escaped:?}"
    );
    // ASCII control characters (C0 and DEL) are escaped; C1 controls (U+0080..U+009F)
    // are kept like every non-ASCII character, as Hive does: `%XX` stands for one
    // byte-sized character in Hive's unescaping, so they have no Hive-compatible form.
    assert!(
        !escaped.chars().any(|c| c.is_ascii_control()),
        "{value:?} -> {escaped:?}"
    );
    // A path built from it has exactly one more segment, named `column=<escaped>`.
    let segment = format!("stream_id={escaped}");
    let path = std::path::Path::new("lake/sessions").join(&segment);
    assert_eq!(path.components().count(), 3, "{value:?} -> {escaped:?}");
    assert!(path.starts_with("lake/sessions"));

    let back = unescape(&escaped);
    if value.is_empty() {
        assert_eq!(escaped, HIVE_DEFAULT_PARTITION);
        assert_eq!(back, None);
    } else {
        assert_eq!(back.as_deref(), Some(&*value), "via {escaped:?}");
        assert_ne!(escaped, HIVE_DEFAULT_PARTITION, "{value:?}");
    }
    // Arbitrary directory names (written by someone else) never make it panic.
    let _ = unescape(&value);
    assert_eq!(escape(None), HIVE_DEFAULT_PARTITION);
});

//! Hive-style escaping of partition values, so that a value can never leave its
//! partition directory and readers get the original value back.
//!
//! Data flow: [`crate::partition`] builds every `column=value` path segment with
//! [`escape`]; readers (Athena, pyarrow's `partitioning="hive"`, DuckDB's
//! `hive_partitioning`, `playlake query`) undo it with the equivalent of
//! [`unescape`]. The rules follow Hive's `FileUtils.escapePathName`: control
//! characters, DEL and `"#%'*/:=?[\]^{}` become `%XX` (upper-case hex of the byte);
//! everything else, including non-ASCII text, is kept. Two additions make a value
//! unable to act as a path segment on its own: the whole values `.` and `..` are
//! written `%2E` and `%2E%2E`. A null or empty value is Hive's default partition
//! [`HIVE_DEFAULT_PARTITION`]; a real value spelled like that marker is written with
//! its first `_` escaped, so it does not read back as null.

/// The directory value of a null (or empty) partition value, as Hive writes it.
pub const HIVE_DEFAULT_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// True when Hive escapes `c` inside a partition value.
fn needs_escape(c: char) -> bool {
    matches!(
        c,
        '\u{0}'
            ..='\u{1F}'
                | '\u{7F}'
                | '"'
                | '#'
                | '%'
                | '\''
                | '*'
                | '/'
                | ':'
                | '='
                | '?'
                | '['
                | '\\'
                | ']'
                | '^'
                | '{'
                | '}'
    )
}

fn push_escaped_byte(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 0x0F)]));
}

/// Escapes one partition value for a `column=value` directory name; `None` and `""`
/// become [`HIVE_DEFAULT_PARTITION`].
pub fn escape(value: Option<&str>) -> String {
    let value = match value {
        None | Some("") => return HIVE_DEFAULT_PARTITION.to_owned(),
        Some(v) => v,
    };
    if value == "." || value == ".." {
        return "%2E".repeat(value.len());
    }
    if value == HIVE_DEFAULT_PARTITION {
        // A real value spelled like the null marker must not read back as null.
        return format!("%5F{}", &HIVE_DEFAULT_PARTITION[1..]);
    }
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if needs_escape(c) {
            // Every escaped character is ASCII, so it is one byte.
            push_escaped_byte(&mut out, c as u8);
        } else {
            out.push(c);
        }
    }
    out
}

/// Undoes [`escape`]: `%XX` with two hex digits becomes that byte (an ASCII
/// character, since only those are escaped); anything else, including a `%` that
/// does not start such a sequence, is kept as it is. [`HIVE_DEFAULT_PARTITION`]
/// becomes `None`.
pub fn unescape(text: &str) -> Option<String> {
    if text == HIVE_DEFAULT_PARTITION {
        return None;
    }
    let bytes = text.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                let byte = (hi << 4) | lo;
                if byte.is_ascii() {
                    out.push(byte);
                    i += 3;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    // Only ASCII bytes were substituted for ASCII sequences, so the UTF-8 of the
    // input's other characters is intact.
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hostile_values_stay_one_segment() {
        let cases = [
            ("../x", "..%2Fx"),
            ("a/b", "a%2Fb"),
            ("a=b", "a%3Db"),
            ("%", "%25"),
            ("..", "%2E%2E"),
            (".", "%2E"),
            ("a\\b", "a%5Cb"),
            ("new\nline", "new%0Aline"),
            ("del\u{7f}", "del%7F"),
            ("{x}[y]^*?:#'\"", "%7Bx%7D%5By%5D%5E%2A%3F%3A%23%27%22"),
            ("straße/ü", "straße%2Fü"),
            ("stream-1_a.b c", "stream-1_a.b c"),
            (HIVE_DEFAULT_PARTITION, "%5F_HIVE_DEFAULT_PARTITION__"),
        ];
        for (value, want) in cases {
            let got = escape(Some(value));
            assert_eq!(got, want, "{value:?}");
            assert!(!got.contains('/') && !got.contains('='), "{got}");
            assert!(got != "." && got != "..");
            assert_eq!(unescape(&got).as_deref(), Some(value));
        }
    }

    #[test]
    fn null_and_empty_are_the_default_partition() {
        assert_eq!(escape(None), HIVE_DEFAULT_PARTITION);
        assert_eq!(escape(Some("")), HIVE_DEFAULT_PARTITION);
        assert_eq!(unescape(HIVE_DEFAULT_PARTITION), None);
    }

    #[test]
    fn unescape_keeps_stray_percent_signs() {
        assert_eq!(unescape("100%").as_deref(), Some("100%"));
        assert_eq!(unescape("%zz%4").as_deref(), Some("%zz%4"));
        assert_eq!(unescape("%2f").as_deref(), Some("/"));
        // Non-ASCII bytes are never produced by escaping, so they are not decoded.
        assert_eq!(unescape("%C3%BC").as_deref(), Some("%C3%BC"));
    }

    proptest! {
        #[test]
        fn round_trip(value in any::<String>()) {
            let escaped = escape(Some(&value));
            let back = unescape(&escaped);
            if value.is_empty() {
                prop_assert_eq!(back, None);
            } else {
                prop_assert_eq!(back.as_deref(), Some(value.as_str()));
            }
        }

        #[test]
        fn escaped_values_cannot_leave_their_directory(value in "[./=%a\\\\\u{0}-\u{1f}ü]{0,8}") {
            let escaped = escape(Some(&value));
            prop_assert!(!escaped.is_empty());
            prop_assert!(!escaped.contains('/'));
            prop_assert!(!escaped.contains('\\'));
            prop_assert!(!escaped.contains('='));
            prop_assert!(!escaped.chars().any(|c| c.is_control()));
            prop_assert!(escaped != "." && escaped != "..");
        }
    }
}

//! The questions users ask of the lake, as shipped in `deploy/athena/queries/`:
//! one SQL file each that runs unchanged on Athena (Trino), `playlake query`
//! (DataFusion) and DuckDB. The text is compiled in, so `playlake demo` answers
//! some of them from any working directory, and a test checks that this list and
//! the directory agree.

/// One shipped query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShippedQuery {
    /// File name under `deploy/athena/queries/`.
    pub file: &'static str,
    /// The question it answers, in a few words.
    pub title: &'static str,
    /// The SQL, starting with comments on the question and its parameters.
    pub sql: &'static str,
}

macro_rules! shipped {
    ($file:literal, $title:literal) => {
        ShippedQuery {
            file: $file,
            title: $title,
            sql: include_str!(concat!("../../../deploy/athena/queries/", $file)),
        }
    };
}

/// Every shipped query, in the order the README lists them.
pub const SHIPPED: [ShippedQuery; 5] = [
    shipped!(
        "concurrent_viewers.sql",
        "concurrent viewers of a stream over time"
    ),
    shipped!(
        "peak_viewers_per_day.sql",
        "peak viewers per stream per day"
    ),
    shipped!("top_streams_by_watch_time.sql", "top streams by watch time"),
    shipped!(
        "user_watch_history.sql",
        "a user's watch history by day and hour"
    ),
    shipped!("sessions_per_uuid.sql", "sessions per player (uuid)"),
];

/// The shipped query in `file`.
pub fn shipped(file: &str) -> Option<&'static ShippedQuery> {
    SHIPPED.iter().find(|q| q.file == file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_the_directory_is_shipped_and_documented() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/athena/queries");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".sql"))
            .collect();
        files.sort();
        let mut listed: Vec<String> = SHIPPED.iter().map(|q| q.file.to_owned()).collect();
        listed.sort();
        assert_eq!(files, listed);
        for query in SHIPPED {
            let first = query.sql.lines().next().unwrap_or_default();
            assert!(
                first.starts_with("-- Question: "),
                "{}: {first}",
                query.file
            );
            assert!(query.sql.contains("-- Parameters: "), "{}", query.file);
            // One statement without a trailing `;`, which Athena's API refuses.
            assert!(!query.sql.trim_end().ends_with(';'), "{}", query.file);
        }
        assert_eq!(
            shipped("top_streams_by_watch_time.sql").map(|q| q.title),
            Some("top streams by watch time")
        );
    }
}

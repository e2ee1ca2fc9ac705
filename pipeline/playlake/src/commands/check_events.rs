//! `playlake check-events`: validates playback events (JSON lines) against the input
//! contract, the same parser the processor uses, so a producer team can test its
//! output before it reaches the pipeline.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use anyhow::Context;

/// Counts of one run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CheckSummary {
    pub valid: u64,
    pub invalid: u64,
}

/// Checks every non-empty line and writes one report line per invalid event.
pub fn check(input: impl Read, now_ms: i64, mut out: impl Write) -> anyhow::Result<CheckSummary> {
    let mut summary = CheckSummary::default();
    let mut reader = BufReader::new(input);
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .context("reading events")?;
        if read == 0 {
            break;
        }
        number += 1;
        let trimmed = line.trim_ascii();
        if trimmed.is_empty() {
            continue;
        }
        match playlake_schemas::parse_playback_event(trimmed, now_ms) {
            Ok(_) => summary.valid += 1,
            Err(err) => {
                summary.invalid += 1;
                writeln!(out, "line {number}: {} ({err})", err.reason_code())?;
            }
        }
    }
    writeln!(out, "{} valid, {} invalid", summary.valid, summary.invalid)?;
    Ok(summary)
}

pub fn run(file: Option<&Path>) -> anyhow::Result<bool> {
    let now_ms = chrono_now_ms();
    let stdout = std::io::stdout().lock();
    let summary = match file {
        Some(path) if path != Path::new("-") => {
            let f = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            check(f, now_ms, stdout)?
        }
        _ => check(std::io::stdin().lock(), now_ms, stdout)?,
    };
    Ok(summary.invalid == 0)
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_each_invalid_line_with_its_reason() {
        let input = concat!(
            r#"{"uuid":"u1","stream_id":"s1","event_time":1700000000000,"position_end":5}"#,
            "\n\n",
            "not json\n",
            r#"{"stream_id":"s1","event_time":1700000000000,"position_end":5}"#,
            "\n",
        );
        let mut out = Vec::new();
        let summary = check(input.as_bytes(), 1_700_000_100_000, &mut out).unwrap();
        assert_eq!(
            summary,
            CheckSummary {
                valid: 1,
                invalid: 2
            }
        );
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("line 3:"), "{out}");
        assert!(out.contains("line 4:") && out.contains("uuid"), "{out}");
        assert!(out.ends_with("1 valid, 2 invalid\n"), "{out}");
    }
}

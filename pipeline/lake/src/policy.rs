//! When to roll a file: pure rules over sizes, row counts, ages and a memory budget.
//!
//! Data flow: [`crate::pool::WriterPool`] hands the [`FileStats`] of every open file
//! and the wall clock (as a parameter, so tests are deterministic) to
//! [`RollPolicy::plan`], and finishes the files it names. A file rolls when it reaches
//! the target size (the writer's encoded size, including the in-progress row group),
//! the row limit, or the flush interval (so an idle partition still appears in the
//! lake within the interval). Across all open files, memory stays within
//! [`RollPolicy::memory_budget_bytes`]: when the files that roll anyway do not bring
//! the total under the budget, more files are rolled, largest first or oldest first
//! ([`EvictOrder`]).

use std::time::Duration;

use crate::error::{LakeError, Result};
use crate::format::DEFAULT_TARGET_BYTES;

/// Size, memory, rows and age of one open file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileStats {
    /// Bytes the file would have if closed now (written plus in-progress estimate).
    pub encoded_bytes: u64,
    /// Memory the open file holds (buffers, encoders and the encoded output).
    pub memory_bytes: u64,
    /// Rows written.
    pub rows: u64,
    /// Wall-clock time the file was opened, in epoch milliseconds.
    pub opened_at_ms: i64,
}

/// Why a file was rolled (a bounded metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RollReason {
    /// It reached the target size.
    Size,
    /// It reached the row limit.
    Rows,
    /// It has been open for the flush interval.
    Interval,
    /// Memory across open files was over budget.
    Memory,
    /// The sink is draining or shutting down, or a recorded cut ends here.
    Cut,
}

impl RollReason {
    /// Lowercase label.
    pub const fn as_str(self) -> &'static str {
        match self {
            RollReason::Size => "size",
            RollReason::Rows => "rows",
            RollReason::Interval => "interval",
            RollReason::Memory => "memory",
            RollReason::Cut => "cut",
        }
    }
}

/// Which files go first when memory is over budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EvictOrder {
    /// The largest memory first: frees the budget with the fewest (and biggest) files.
    #[default]
    Largest,
    /// The oldest first: keeps file sizes fair between partitions.
    Oldest,
}

/// The rolling rules, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollPolicy {
    /// Roll once a file's encoded size reaches this many bytes (128 MiB default).
    pub target_file_bytes: u64,
    /// Roll once a file holds this many rows.
    pub max_file_rows: u64,
    /// Roll once a file has been open this long.
    pub flush_interval: Duration,
    /// Keep the memory of all open files under this many bytes.
    pub memory_budget_bytes: u64,
    /// Which files to roll first when over budget.
    pub evict: EvictOrder,
}

impl Default for RollPolicy {
    fn default() -> Self {
        Self {
            target_file_bytes: DEFAULT_TARGET_BYTES,
            max_file_rows: 10_000_000,
            flush_interval: Duration::from_secs(300),
            memory_budget_bytes: 1024 * 1024 * 1024,
            evict: EvictOrder::Largest,
        }
    }
}

impl RollPolicy {
    /// Rejects zero sizes and intervals.
    pub fn validate(&self) -> Result<()> {
        let checks = [
            ("target_file_bytes", self.target_file_bytes == 0),
            ("max_file_rows", self.max_file_rows == 0),
            ("flush_interval", self.flush_interval.is_zero()),
            ("memory_budget_bytes", self.memory_budget_bytes == 0),
        ];
        match checks.into_iter().find(|(_, bad)| *bad) {
            Some((setting, _)) => Err(LakeError::config(setting, "must be greater than 0")),
            None => Ok(()),
        }
    }

    /// Why one file should roll now, if it should (size, then rows, then interval).
    pub fn roll_reason(&self, stats: &FileStats, now_ms: i64) -> Option<RollReason> {
        if stats.rows == 0 {
            return None;
        }
        let interval_ms = i64::try_from(self.flush_interval.as_millis()).unwrap_or(i64::MAX);
        if stats.encoded_bytes >= self.target_file_bytes {
            Some(RollReason::Size)
        } else if stats.rows >= self.max_file_rows {
            Some(RollReason::Rows)
        } else if now_ms.saturating_sub(stats.opened_at_ms) >= interval_ms {
            Some(RollReason::Interval)
        } else {
            None
        }
    }

    /// The files to roll now: each that meets a rule, then, while the memory of
    /// the rest is over budget, more in [`EvictOrder`]. Ties are broken by key, so
    /// the plan does not depend on the iteration order of `files`.
    pub fn plan<K: Ord + Clone>(
        &self,
        files: impl IntoIterator<Item = (K, FileStats)>,
        now_ms: i64,
    ) -> Vec<(K, RollReason)> {
        let mut roll = Vec::new();
        let mut keep = Vec::new();
        let mut kept_memory: u64 = 0;
        for (key, stats) in files {
            match self.roll_reason(&stats, now_ms) {
                Some(reason) => roll.push((key, reason)),
                None => {
                    kept_memory = kept_memory.saturating_add(stats.memory_bytes);
                    keep.push((key, stats));
                }
            }
        }
        if kept_memory > self.memory_budget_bytes {
            match self.evict {
                EvictOrder::Largest => keep.sort_by(|a, b| {
                    b.1.memory_bytes
                        .cmp(&a.1.memory_bytes)
                        .then_with(|| a.0.cmp(&b.0))
                }),
                EvictOrder::Oldest => keep.sort_by(|a, b| {
                    a.1.opened_at_ms
                        .cmp(&b.1.opened_at_ms)
                        .then_with(|| a.0.cmp(&b.0))
                }),
            }
            for (key, stats) in keep {
                if kept_memory <= self.memory_budget_bytes {
                    break;
                }
                kept_memory -= stats.memory_bytes;
                roll.push((key, RollReason::Memory));
            }
        }
        roll.sort_by(|a, b| a.0.cmp(&b.0));
        roll
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(bytes: u64, rows: u64, opened_at_ms: i64) -> FileStats {
        FileStats {
            encoded_bytes: bytes,
            memory_bytes: bytes,
            rows,
            opened_at_ms,
        }
    }

    fn policy() -> RollPolicy {
        RollPolicy {
            target_file_bytes: 1000,
            max_file_rows: 100,
            flush_interval: Duration::from_secs(60),
            memory_budget_bytes: 10_000,
            evict: EvictOrder::Largest,
        }
    }

    #[test]
    fn rolls_on_target_size() {
        let p = policy();
        assert_eq!(p.roll_reason(&stats(999, 1, 0), 0), None);
        assert_eq!(p.roll_reason(&stats(1000, 1, 0), 0), Some(RollReason::Size));
    }

    #[test]
    fn rolls_on_row_count() {
        let p = policy();
        assert_eq!(p.roll_reason(&stats(10, 99, 0), 0), None);
        assert_eq!(p.roll_reason(&stats(10, 100, 0), 0), Some(RollReason::Rows));
    }

    #[test]
    fn rolls_on_flush_interval_with_the_clock_passed_in() {
        let p = policy();
        assert_eq!(p.roll_reason(&stats(10, 1, 5_000), 64_999), None);
        assert_eq!(
            p.roll_reason(&stats(10, 1, 5_000), 65_000),
            Some(RollReason::Interval)
        );
        // An empty file never rolls, however old.
        assert_eq!(p.roll_reason(&stats(0, 0, 0), 1_000_000), None);
    }

    #[test]
    fn memory_budget_rolls_largest_first() {
        let p = RollPolicy {
            memory_budget_bytes: 1500,
            ..policy()
        };
        let files = [
            ("a", stats(900, 1, 0)),
            ("b", stats(500, 1, 1)),
            ("c", stats(400, 1, 2)),
        ];
        // 1800 > 1500: rolling the largest (a, 900) is enough.
        assert_eq!(p.plan(files, 0), vec![("a", RollReason::Memory)]);
    }

    #[test]
    fn memory_budget_rolls_oldest_first() {
        let p = RollPolicy {
            memory_budget_bytes: 1000,
            evict: EvictOrder::Oldest,
            ..policy()
        };
        let files = [
            ("a", stats(900, 1, 30)),
            ("b", stats(500, 1, 10)),
            ("c", stats(400, 1, 20)),
        ];
        // 1800 > 1000: b (oldest, 500) leaves 1300, c (400) leaves 900.
        assert_eq!(
            p.plan(files, 40),
            vec![("b", RollReason::Memory), ("c", RollReason::Memory)]
        );
    }

    #[test]
    fn files_rolling_anyway_count_toward_the_budget() {
        let p = RollPolicy {
            memory_budget_bytes: 600,
            ..policy()
        };
        let files = [("big", stats(1200, 1, 0)), ("small", stats(500, 1, 0))];
        assert_eq!(p.plan(files, 0), vec![("big", RollReason::Size)]);
    }

    #[test]
    fn ten_thousand_open_paths_stay_within_budget() {
        let p = RollPolicy {
            memory_budget_bytes: 64 * 1024 * 1024,
            ..RollPolicy::default()
        };
        let files: Vec<(u32, FileStats)> = (0..10_000u32)
            .map(|i| {
                let size = 4_096 + u64::from(i % 97) * 128;
                (i, stats(size, 10, i64::from(i)))
            })
            .collect();
        let total: u64 = files.iter().map(|f| f.1.memory_bytes).sum();
        assert!(total > p.memory_budget_bytes);
        let plan = p.plan(files.clone(), 0);
        let rolled: std::collections::BTreeSet<u32> = plan.iter().map(|(k, _)| *k).collect();
        let kept: u64 = files
            .iter()
            .filter(|(k, _)| !rolled.contains(k))
            .map(|f| f.1.memory_bytes)
            .sum();
        assert!(kept <= p.memory_budget_bytes, "{kept}");
        // It rolls only what it must: keeping any one rolled file breaks the budget.
        let smallest_rolled = files
            .iter()
            .filter(|(k, _)| rolled.contains(k))
            .map(|f| f.1.memory_bytes)
            .min()
            .unwrap_or(0);
        assert!(kept + smallest_rolled > p.memory_budget_bytes);
    }

    proptest::proptest! {
        #[test]
        fn plan_always_meets_the_budget(
            sizes in proptest::collection::vec((0u64..5_000, 0u64..200, 0i64..100_000), 0..200),
            budget in 1u64..50_000,
            oldest in proptest::bool::ANY,
            now in 0i64..200_000,
        ) {
            let p = RollPolicy {
                memory_budget_bytes: budget,
                evict: if oldest { EvictOrder::Oldest } else { EvictOrder::Largest },
                ..policy()
            };
            let files: Vec<(usize, FileStats)> =
                sizes.iter().map(|&(b, r, t)| stats(b, r, t)).enumerate().collect();
            let plan = p.plan(files.clone(), now);
            let rolled: std::collections::BTreeSet<usize> = plan.iter().map(|(k, _)| *k).collect();
            proptest::prop_assert_eq!(rolled.len(), plan.len(), "each file at most once");
            let kept: u64 = files
                .iter()
                .filter(|(k, _)| !rolled.contains(k))
                .map(|(_, s)| s.memory_bytes)
                .sum();
            proptest::prop_assert!(kept <= budget);
            for (k, s) in &files {
                if p.roll_reason(s, now).is_some() {
                    proptest::prop_assert!(rolled.contains(k));
                }
            }
        }
    }

    #[test]
    fn zero_settings_are_rejected() {
        let bad = RollPolicy {
            flush_interval: Duration::ZERO,
            ..policy()
        };
        assert!(matches!(
            bad.validate(),
            Err(LakeError::Config {
                setting: "flush_interval",
                ..
            })
        ));
        assert!(policy().validate().is_ok());
    }
}

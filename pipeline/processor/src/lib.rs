//! # playlake-processor
//!
//! The processor's operators as pure code (SPEC section 3): no I/O, no async, no
//! clock reads (wall-clock time is a parameter). The I/O layer (`playlake process`)
//! reads Kafka, calls these, publishes what they return and checkpoints their state,
//! which is all `serde`-serializable.
//!
//! ```text
//!  <prefix>.events partition p                       repartition topics (key = stream_id)
//!  --parse--> PartitionProcessor (source.rs) --ViewerPartial/DailyPartial/SourceWatermark-->
//!              | dedup.rs: (uuid, event_id)                          MergeOperator (merge.rs)
//!              | late.rs: per-operator verdicts -> <prefix>.late         | viewers, daily rows
//!              | session.rs: sessions -> <prefix>.sessions              v
//!              | partials.rs: per-partition viewers / daily        <prefix>.viewers, .daily
//!              | resume.rs: ResumeCandidate --(key user_id/stream_id)--> ResumeMerge -> .resume
//!              | watermark.rs: W = max event_time - max_out_of_orderness
//! ```
//!
//! * [`config`]: settings and their validation; [`time`]: watermarks values, windows,
//!   calendar days in a time zone, the order-independent watched-seconds sum.
//! * [`watermark`]: per-partition watermarks, the minimum, idleness.
//! * [`source`]: all state of one input partition; [`merge`]: per-stream results from
//!   every partition's partials; [`resume`]: resume points.
//! * [`mod@reference`]: the batch definition everything is tested against.
//! * [`inline_str`]: short ids held inline in per-event state.
//!
//! Every emitted batch is sorted by natural key, and every result is a deterministic
//! function of the input sequence and the restored state, so a replay after a crash
//! emits identical records.

mod buffered;
pub mod config;
pub mod dedup;
pub mod inline_str;
mod keys;
pub mod late;
pub mod merge;
pub mod partials;
mod prefetch;
pub mod reference;
pub mod resume;
mod serde_util;
pub mod session;
pub mod source;
pub mod time;
pub mod watermark;
mod zeroed;

pub use config::{ConfigError, ProcessorConfig, Settings};
pub use inline_str::InlineStr;
pub use late::{EventOutcome, Late, Operator};
pub use merge::{MergeOperator, PartialOutcome, PartialRecord};
pub use partials::{DailyPartial, ViewerPartial};
pub use resume::{ResumeCandidate, ResumeMerge};
pub use source::{PartitionProcessor, SourceOutput, StateSizes};
pub use time::{WatchedSum, Watermark};
pub use watermark::{PartitionId, SourceWatermark, Watermarks};

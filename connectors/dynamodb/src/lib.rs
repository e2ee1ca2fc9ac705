//! playlake's DynamoDB Streams source: every change of a DynamoDB table into Kafka,
//! none lost, with backfill, leases and the playback mapping (SPEC section 7).
//!
//! Data flow:
//! ```text
//! DescribeStream --> shards (shards.rs) --> leases (lease.rs, lease_table.rs)
//!      GetRecords per owned shard --> ChangeEvent (aws.rs, attribute.rs)
//!      --> <prefix>.cdc.<table>, keyed by item key   (publish.rs, acked)
//!      --> mapping (mapping.rs) --> <prefix>.events / <prefix>.dlq
//!      --> checkpoint in the lease table (only after the acks)
//! --backfill: positions first, parallel rate-limited Scan, then stream (backfill.rs)
//! ```
//!
//! Pure parts (attribute unmarshalling, shard graph, lease planning, mapping,
//! backfill pacing) have no I/O and are unit-tested; `aws.rs`, `stream.rs`,
//! `lease_table.rs` are the thin AWS layer, tested against moto's server and a
//! scripted DynamoDB Streams endpoint. [`run`] is the entry point the binary (and
//! `playlake run`) calls with a producer, metrics and a shutdown future.

pub mod attribute;
pub mod aws;
pub mod backfill;
pub mod config;
pub mod error;
pub mod lease;
pub mod lease_table;
pub mod mapping;
pub mod metrics;
pub mod publish;
pub mod shards;
pub mod source;
pub mod stream;

pub use config::{DynamoFileConfig, SourceConfig, TrimmedDataPolicy};
pub use error::SourceError;
pub use mapping::MappingConfig;
pub use metrics::SourceMetrics;
pub use source::{run, Report};

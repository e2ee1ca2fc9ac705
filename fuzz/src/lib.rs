//! The pure modules of crates too heavy to build under the fuzzer, compiled here from
//! their very source files.
//!
//! `playlake-dynamodb` pulls in the AWS SDK and `playlake-lake` arrow, parquet and
//! object_store; instrumenting those for libFuzzer would take most of a fuzzing
//! budget on two cores. The processor's config is taken the same way so that the
//! fuzz build depends on nothing but `playlake-schemas` and `playlake-generator`. The modules fuzzed here have no dependency on the rest of
//! their crate (no `crate::` paths), so including the file is the same code the
//! pipeline runs. If one of them starts to use its crate's internals, this fails to
//! compile rather than fuzzing something else.

#[path = "../../connectors/dynamodb/src/attribute.rs"]
pub mod attribute;

#[path = "../../connectors/dynamodb/src/mapping.rs"]
pub mod mapping;

#[path = "../../pipeline/lake/src/hive.rs"]
pub mod hive;

#[path = "../../pipeline/processor/src/config.rs"]
pub mod processor_config;

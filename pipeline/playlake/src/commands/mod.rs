//! One module per subcommand; each takes the validated [`crate::config::Settings`].

pub mod check_events;
pub mod demo;
pub mod process;
pub mod produce;
pub mod produce_dynamodb;
pub mod query;
pub mod run;
pub mod sink;
pub mod source;
pub mod topics;

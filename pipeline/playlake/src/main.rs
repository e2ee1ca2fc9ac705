//! The `playlake` binary: parses the command line, merges it with the environment and
//! the config file into validated [`config::Settings`], sets up logging, and runs one
//! subcommand. Library crates do the work; this crate wires them together.

mod cli;
mod commands;
mod config;
mod kafka;
mod serve;
mod signals;
mod topics;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, LogFormat};
use config::TopicOverrides;

/// mimalloc instead of glibc malloc: the processor's per-event strings and state
/// entries are small, short-lived allocations, where it is markedly faster.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            // `{:#}` prints the whole cause chain on one line; the log may not be set up
            // yet when configuration fails, so this goes to stderr directly.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let file = config::load_file(cli.common.config.as_deref())?;
    let overrides = match &cli.command {
        Command::Topics(args) => TopicOverrides {
            partitions: args.partitions,
            replication_factor: args.replication_factor,
        },
        _ => TopicOverrides::default(),
    };
    let settings = config::resolve(&cli.common, &file, overrides)?;
    init_logging(settings.log_format);

    match cli.command {
        Command::Run(args) => {
            let options = config::resolve_run(&settings, &args)?;
            block_on(commands::run::run(&settings, &options))?
        }
        Command::AthenaDdl(args) => {
            let location = match &settings.lake {
                config::LakeUrl::S3 { .. } => settings.lake.to_string(),
                config::LakeUrl::File(_) => {
                    eprintln!(
                        "note: --lake is not an s3:// URL; using the placeholder {}",
                        playlake_lake::athena::PLACEHOLDER_LOCATION
                    );
                    playlake_lake::athena::PLACEHOLDER_LOCATION.to_string()
                }
            };
            print!(
                "{}",
                playlake_lake::athena::all_ddl(&location, args.database.as_deref())
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Config => {
            print!("{}", settings.to_redacted_toml());
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckEvents(args) => {
            let all_valid = commands::check_events::run(args.file.as_deref())?;
            Ok(if all_valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Process(args) => {
            let config = config::resolve_process(&settings, &args)?;
            block_on(commands::process::run(&settings, config))??;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(args) => {
            let process = config::resolve_process(
                &settings,
                &cli::ProcessArgs {
                    drain: true,
                    ..Default::default()
                },
            )?;
            let sink = config::resolve_sink(
                &settings,
                &cli::SinkArgs {
                    drain: true,
                    ..Default::default()
                },
            )?;
            let options = commands::demo::DemoOptions {
                events: args.events,
                viewers: args.viewers,
                seed: args.seed,
                partitions: args.partitions,
            };
            block_on(commands::demo::run(&settings, process, sink, options))??;
            Ok(ExitCode::SUCCESS)
        }
        Command::Produce(args) => {
            block_on(commands::produce::run(&settings, &args))??;
            Ok(ExitCode::SUCCESS)
        }
        Command::Source(args) => match args.kind {
            commands::source::SourceKind::Dynamodb(args) => {
                let config = commands::source::resolve(&settings, &args)?;
                block_on(commands::source::run(&settings, config))??;
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Sink(args) => {
            let config = config::resolve_sink(&settings, &args)?;
            block_on(commands::sink::run(&settings, config))??;
            Ok(ExitCode::SUCCESS)
        }
        Command::Query(args) => {
            block_on(commands::query::run(&settings, &args))??;
            Ok(ExitCode::SUCCESS)
        }
        Command::Topics(_) => {
            block_on(commands::topics::run(&settings))??;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// How long, once a command is done, its runtime waits for leftover blocking work
/// (a Kafka poll or commit to a broker that went away) before the process exits.
const RUNTIME_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs `future` on a fresh multi-threaded runtime. Not dropped plainly: dropping a
/// runtime waits without limit for its blocking tasks, so a command abandoned at its
/// shutdown deadline would hang on a stuck commit.
fn block_on<F: std::future::Future>(future: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let output = runtime.block_on(future);
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_GRACE);
    Ok(output)
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (tests) is harmless; ignore it.
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

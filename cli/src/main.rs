//! The `adeploy` binary: clap definitions, rendering, and `plugins new`.
//! Nothing printed here is computed here; every value comes from the
//! `adeploy` library (the engine, in `host/`), which compiles none of this
//! crate's dependencies (clap, indicatif, dialoguer, comfy-table, anyhow,
//! tracing-subscriber).
//!
//! Exit codes: 0 success, 1 a deployment or plugin call failed, 2 bad input.

mod audit;
mod deploy;
mod diagnostics;
mod model;
mod output;
mod plugins;
mod scaffold;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use adeploy::config::{Config, ConfigError};
use adeploy::engine::EngineError;
use adeploy::plugin::PluginError;

use crate::scaffold::ScaffoldError;

/// adeploy — adaptive deployment orchestrator with WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "adeploy", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// A config file merged over the embedded defaults.
    #[arg(
        long,
        short = 'c',
        global = true,
        value_name = "FILE",
        env = "ADEPLOY_CONFIG"
    )]
    config: Option<PathBuf>,

    /// Print one machine-readable JSON document instead of text.
    #[arg(long, global = true)]
    json: bool,

    /// Debug logging on stderr (RUST_LOG overrides the filter).
    #[arg(long, short = 'v', global = true)]
    verbose: bool,

    /// Where history, logs and reports live (overrides the config's state_dir).
    #[arg(long, global = true, value_name = "DIR", env = "ADEPLOY_STATE_DIR")]
    state_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Deploy services (the seed's `intelligent_deploy.py --services ...`).
    Run(deploy::RunArgs),
    /// Recent deployments, newest first (`--list-deployments`).
    List(deploy::ListArgs),
    /// The report of one deployment (`--report ID`).
    Report(deploy::ReportArgs),
    /// Environment, metrics and trend, thresholds, plugins, state, model and
    /// config (`--diagnostics`); exit 1 when a check is critical.
    Diagnostics(diagnostics::DiagnosticsArgs),
    /// List, inspect and create plugins.
    #[command(subcommand)]
    Plugins(plugins::PluginsCommand),
    /// The audit log: approvals of deployments, model retrain/reset, who and when.
    Audit(audit::AuditArgs),
    /// The learned strategy model: status, retrain, reset.
    #[command(subcommand)]
    Model(model::ModelCommand),
}

/// Bad command-line input the CLI finds itself (beyond what clap checks):
/// exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Sorts an error into an exit code: 2 for what is classified as bad input
/// (the arguments, the config, a plugin file, the state directory), 1 for
/// everything else (a deployment, a plugin call or the machine failed).
fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(p) = cause.downcast_ref::<PluginError>() {
            return if p.is_bad_input() { 2 } else { 1 };
        }
        if let Some(e) = cause.downcast_ref::<EngineError>() {
            return if e.is_bad_input() { 2 } else { 1 };
        }
        if cause.downcast_ref::<ConfigError>().is_some()
            || cause.downcast_ref::<ScaffoldError>().is_some()
            || cause.downcast_ref::<UsageError>().is_some()
        {
            return 2;
        }
    }
    1
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            output::say(&format!("error: {err:#}"));
            ExitCode::from(exit_code(&err))
        }
    };
    // The result is out. Whatever a plugin left behind (a host call that
    // still waits on a blocking thread), the process ends now: dropping the
    // runtime would wait for every blocking task.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    code
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let ctx = Context {
        config_path: cli.config,
        json: cli.json,
        state_dir: cli.state_dir,
    };
    match cli.command {
        Command::Run(args) => deploy::run(&ctx, args).await,
        Command::List(args) => deploy::list(&ctx, args).await,
        Command::Report(args) => deploy::report(&ctx, args).await,
        Command::Diagnostics(args) => diagnostics::run(&ctx, args).await,
        Command::Plugins(cmd) => plugins::run(&ctx, cmd).await,
        Command::Model(cmd) => model::run(&ctx, cmd).await,
        Command::Audit(args) => audit::run(&ctx, args).await,
    }
}

/// What every command needs from the global flags.
#[derive(Debug)]
pub struct Context {
    config_path: Option<PathBuf>,
    json: bool,
    state_dir: Option<PathBuf>,
}

impl Context {
    fn config(&self) -> Result<Config, ConfigError> {
        Config::load(self.config_path.as_deref())
    }
}

fn init_tracing(verbose: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if verbose {
        "adeploy=debug,adeploy_cli=debug,info"
    } else {
        "warn"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colour codes of the subscriber itself would be escaped by the safe
    // writer like everyone else's, so it writes plain text.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(output::SafeStderr::default)
        .with_ansi(false)
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_is_2_and_everything_else_1() {
        let usage = anyhow::Error::new(UsageError("--root /x: not a directory".into()));
        assert_eq!(exit_code(&usage), 2);
        let engine = anyhow::Error::new(EngineError::NoServices).context("run");
        assert_eq!(exit_code(&engine), 2);
        assert_eq!(exit_code(&anyhow::Error::new(EngineError::Declined)), 1);
        // An error nobody classified as bad input is a runtime failure.
        let io = anyhow::Error::new(std::io::Error::other("disk on fire")).context("writing");
        assert_eq!(exit_code(&io), 1);
    }
}

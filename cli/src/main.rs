//! The `adeploy` binary: clap definitions, rendering, and `plugins new`.
//! Nothing printed here is computed here; every value comes from the
//! `adeploy` library (the engine, in `host/`), which compiles none of this
//! crate's dependencies (clap, indicatif, dialoguer, comfy-table, anyhow,
//! tracing-subscriber).
//!
//! Exit codes: 0 success, 1 a deployment or plugin call failed, 2 bad input
//! (including a history that cannot be used: damaged, newer, unreachable),
//! 75 another run holds the lock this one needs (nothing was attempted;
//! retry later).

mod analyze;
mod audit;
mod deploy;
mod diagnostics;
mod history;
mod model;
mod output;
mod plugins;
mod scaffold;
mod state;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use adeploy::config::{Config, ConfigError};
use adeploy::engine::EngineError;
use adeploy::history::HistoryError;
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
    /// The report of one deployment (`--report ID`), or its rendering as
    /// HTML, Markdown or JUnit (`--format`).
    Report(deploy::ReportArgs),
    /// Analytics across deployments: success per strategy and environment,
    /// step durations, the model's accuracy, failure patterns (text, JSON or
    /// an HTML page).
    History(history::HistoryArgs),
    /// Environment, metrics and trend, thresholds, plugins, state, model and
    /// config (`--diagnostics`); exit 1 when a check is critical.
    Diagnostics(diagnostics::DiagnosticsArgs),
    /// List, inspect and create plugins.
    #[command(subcommand)]
    Plugins(plugins::PluginsCommand),
    /// Re-run a recorded deployment's metric analysis over its recorded
    /// windows with this config's rules (`--config other.yaml`); exit 1 when
    /// it would fail.
    Analyze(analyze::AnalyzeArgs),
    /// The audit log: approvals of deployments, model retrain/reset, who and when.
    Audit(audit::AuditArgs),
    /// The learned strategy model: status, retrain, reset.
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// The history itself: export, import, migrate to PostgreSQL, sync the
    /// local journal.
    #[command(subcommand)]
    State(state::StateCommand),
}

/// Bad command-line input the CLI finds itself (beyond what clap checks):
/// exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Exit code when another run holds the lock this one needs and the wait
/// (`--lock-timeout`) ran out: `EX_TEMPFAIL` of sysexits.h, "try again
/// later". Not 2: the input is fine and nothing needs fixing; not 1: nothing
/// was deployed or rolled back. A distinct code lets a CI job retry exactly
/// this case (GitLab's `retry: exit_codes: [75]`, a shell loop elsewhere).
pub const EXIT_BUSY: u8 = 75;

/// Sorts an error into an exit code: 75 when another run holds the lock
/// ([`EXIT_BUSY`]), 2 for what is classified as bad input (the arguments,
/// the config, a plugin file, the state directory, a history that cannot be
/// used), 1 for everything else (a deployment, a plugin call or the machine
/// failed).
fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(p) = cause.downcast_ref::<PluginError>() {
            return if p.is_bad_input() { 2 } else { 1 };
        }
        if let Some(e) = cause.downcast_ref::<EngineError>() {
            return if e.is_busy() {
                EXIT_BUSY
            } else if e.is_bad_input() {
                2
            } else {
                1
            };
        }
        if let Some(h) = cause.downcast_ref::<HistoryError>() {
            return if h.is_busy() {
                EXIT_BUSY
            } else if h.needs_operator() {
                2
            } else {
                1
            };
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

/// The error and its causes on one line, each said once: a cause whose text
/// the message before it already carries (`cannot read config: No such file
/// or directory` over the `io::Error` it wraps) is not repeated.
fn error_text(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
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
            output::say(&format!("error: {}", error_text(&err)));
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
        Command::History(args) => history::run(&ctx, args).await,
        Command::Diagnostics(args) => diagnostics::run(&ctx, args).await,
        Command::Plugins(cmd) => plugins::run(&ctx, cmd).await,
        Command::Model(cmd) => model::run(&ctx, cmd).await,
        Command::Audit(args) => audit::run(&ctx, args).await,
        Command::State(cmd) => state::run(&ctx, cmd).await,
        Command::Analyze(args) => analyze::run(&ctx, args).await,
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

    #[test]
    fn each_cause_is_said_once() {
        let missing =
            adeploy::config::Config::load(Some(std::path::Path::new("/definitely/not/here.yaml")))
                .unwrap_err();
        let text = error_text(&anyhow::Error::new(missing));
        assert_eq!(
            text.matches("No such file or directory").count(),
            1,
            "{text}"
        );
        let io = anyhow::Error::new(std::io::Error::other("disk on fire")).context("writing");
        assert_eq!(error_text(&io), "writing: disk on fire");
    }

    #[test]
    fn a_busy_lock_is_75_and_an_unusable_history_2() {
        let busy = HistoryError::DeploymentBusy {
            environment: "staging".into(),
            services: vec!["web".into()],
            holder: None,
            waited: std::time::Duration::from_secs(1),
        };
        assert_eq!(
            exit_code(&anyhow::Error::new(EngineError::History(busy)).context("run")),
            EXIT_BUSY
        );
        let unreachable = HistoryError::Unreachable {
            url: "postgres://ci:[redacted]@db/x".into(),
            source: "connection refused".into(),
        };
        assert_eq!(exit_code(&anyhow::Error::new(unreachable)), 2);
    }
}

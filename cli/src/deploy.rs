//! `adeploy run`, `adeploy list`, `adeploy report ID`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use adeploy::config::Environment;
use adeploy::engine::{
    Approval, DeploymentEvent, DeploymentRequest, DeploymentSize, Engine, EngineError,
    EngineOptions,
};
use adeploy::history::DeploymentRecord;
use adeploy::report::{Decision, PlanView, Report, step_label};

use crate::Context;
use crate::output::{CommandOutput, emit, safe, table};

/// `adeploy run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The services to deploy (names from the config's `services`).
    #[arg(long, short = 's', num_args = 1.., required = true, value_name = "SERVICE")]
    services: Vec<String>,
    /// A strategy plugin (conservative, balanced, aggressive, or a custom one),
    /// or adaptive to let adeploy choose.
    #[arg(long, default_value = "adaptive")]
    strategy: String,
    /// Skip detection: deploy to this environment.
    #[arg(long, value_enum)]
    environment: Option<EnvArg>,
    /// Hard deadline in minutes: past it the deployment stops and rolls back.
    #[arg(long, value_name = "MIN", value_parser = clap::value_parser!(u32).range(1..))]
    max_time: Option<u32>,
    /// The size of the deployment, for strategy selection.
    #[arg(long, value_enum, default_value = "medium")]
    deployment_size: SizeArg,
    /// Show the plan and ask for confirmation first (needs a terminal, or --yes).
    #[arg(long)]
    interactive: bool,
    /// With --interactive: confirm without asking (does not approve
    /// environments in approvals.required_for).
    #[arg(long)]
    yes: bool,
    /// Approve this deployment (needed for environments in
    /// approvals.required_for); recorded in the audit log with your user.
    #[arg(long)]
    approve: bool,
    /// Run the whole decision flow and print the plan; execute nothing.
    #[arg(long)]
    dry_run: bool,
    /// Deploy even when memory or disk is over its threshold.
    #[arg(long)]
    force: bool,
    /// A directory of plugin components; repeatable.
    #[arg(long = "plugins", value_name = "DIR")]
    plugin_dirs: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum EnvArg {
    Local,
    Development,
    Staging,
    Production,
}

/// `--deployment-size` (the library's `DeploymentSize` knows nothing of clap).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum SizeArg {
    Small,
    Medium,
    Large,
}

impl From<SizeArg> for DeploymentSize {
    fn from(s: SizeArg) -> Self {
        match s {
            SizeArg::Small => DeploymentSize::Small,
            SizeArg::Medium => DeploymentSize::Medium,
            SizeArg::Large => DeploymentSize::Large,
        }
    }
}

impl From<EnvArg> for Environment {
    fn from(e: EnvArg) -> Self {
        match e {
            EnvArg::Local => Environment::Local,
            EnvArg::Development => Environment::Development,
            EnvArg::Staging => Environment::Staging,
            EnvArg::Production => Environment::Production,
        }
    }
}

async fn engine(ctx: &Context, plugin_dirs: Vec<PathBuf>) -> anyhow::Result<Engine> {
    let config = ctx.config()?;
    let options = EngineOptions {
        state_dir: ctx.state_dir.clone(),
        plugin_dirs,
        ..EngineOptions::default()
    };
    Ok(Engine::new(config, options).await?)
}

/// An engine for `list` and `report`: they read the history and reports
/// only, so no plugin is loaded (a config naming a plugin from a
/// `--plugins` directory, or a broken plugin, does not stop them).
fn query_engine(ctx: &Context) -> anyhow::Result<Engine> {
    let options = EngineOptions {
        state_dir: ctx.state_dir.clone(),
        ..EngineOptions::default()
    };
    Ok(Engine::for_queries(ctx.config()?, options)?)
}

pub async fn run(ctx: &Context, args: RunArgs) -> anyhow::Result<ExitCode> {
    if args.interactive && !args.yes && !std::io::stdin().is_terminal() {
        return Err(crate::UsageError(
            "--interactive needs a terminal to ask for confirmation; pass --yes to confirm non-interactively".into(),
        )
        .into());
    }
    let engine = engine(ctx, args.plugin_dirs).await?;
    let req = DeploymentRequest {
        services: args.services,
        strategy: Some(args.strategy),
        environment: args.environment.map(Into::into),
        max_time: args
            .max_time
            .map(|m| Duration::from_secs(u64::from(m) * 60)),
        size: args.deployment_size.into(),
        dry_run: args.dry_run,
        force: args.force,
        approval: if args.approve {
            Some(Approval::Flag {
                user: adeploy::history::current_user(),
            })
        } else if args.interactive && !args.yes && std::io::stdin().is_terminal() {
            Some(Approval::Prompt {
                user: adeploy::history::current_user(),
            })
        } else {
            None
        },
    };
    let confirm: Option<adeploy::engine::Confirm> = if args.interactive && !args.dry_run {
        let yes = args.yes;
        Some(Box::new(move |plan: &PlanView| {
            crate::output::say_block(&render_plan(plan));
            if yes {
                return true;
            }
            tokio::task::block_in_place(|| {
                dialoguer::Confirm::new()
                    .with_prompt("Deploy with this plan?")
                    .default(false)
                    .interact()
                    .unwrap_or(false)
            })
        }))
    } else {
        None
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let renderer = tokio::spawn(render_events(rx, ctx.json));
    let outcome = engine.deploy(req, Some(tx), confirm).await;
    let _ = renderer.await;
    let outcome = match outcome {
        Err(EngineError::Declined) => {
            eprintln!("deployment cancelled: nothing was deployed");
            return Ok(ExitCode::from(1));
        }
        other => other?,
    };
    let report = &outcome.report;
    if ctx.json {
        emit(
            &RunOutput {
                report,
                report_path: outcome.report_path.clone(),
                log_path: outcome.log_path.clone(),
            },
            true,
        )?;
    } else {
        let mut text = String::new();
        if report.deployment_summary.dry_run
            && let Some(plan) = &report.plan
        {
            text.push_str(&render_plan(plan));
        }
        text.push_str(&report.human_summary());
        if let Some(p) = &outcome.report_path {
            text.push_str(&format!("  report: {}\n", p.display()));
        }
        if let Some(p) = &outcome.log_path {
            text.push_str(&format!("  log:    {}\n", p.display()));
        }
        emit(&Text(text), false)?;
    }
    // The result is out; a retraining this deployment triggered finishes
    // before the process exits.
    for r in engine.wait_for_learning().await {
        match &r.result {
            Ok(m) if !ctx.json => eprintln!(
                "learning: strategy model retrained on {} deployments in {:.1} s{}",
                m.samples,
                r.seconds,
                m.oob_accuracy
                    .map(|a| format!(" (out-of-bag accuracy {a:.2})"))
                    .unwrap_or_default()
            ),
            Ok(_) => {}
            Err(e) => crate::output::say(&format!(
                "warning: retraining the strategy model failed: {e}"
            )),
        }
    }
    Ok(if outcome.success {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn render_plan(plan: &PlanView) -> String {
    let mut s = format!(
        "plan: {} — {} wave(s), {} at a time, {} health sample(s) {} ms apart, {} s soak, rollback {}\n",
        safe(&plan.strategy),
        plan.waves.len(),
        plan.concurrency,
        plan.samples,
        plan.interval_ms,
        plan.soak_s,
        plan.rollback_scope
    );
    for (i, w) in plan.waves.iter().enumerate() {
        let steps: Vec<_> = w.iter().map(|x| safe(x)).collect();
        s.push_str(&format!("  wave {}: {}\n", i + 1, steps.join(", ")));
    }
    for n in &plan.notes {
        s.push_str(&format!("  note: {}\n", safe(n)));
    }
    for w in &plan.warnings {
        s.push_str(&format!("  WARNING: {}\n", safe(w)));
    }
    s
}

/// Live progress on stderr: a redrawing status line on a terminal, plain
/// lines otherwise. Nothing with `--json` except errors.
async fn render_events(mut rx: tokio::sync::mpsc::UnboundedReceiver<DeploymentEvent>, json: bool) {
    let terminal = std::io::stderr().is_terminal() && !json;
    let bar = terminal.then(|| {
        let pb = indicatif::ProgressBar::new_spinner();
        pb.enable_steady_tick(Duration::from_millis(120));
        pb
    });
    // Every line is made safe for the terminal as a whole: a field's
    // newline or escape sequence is shown escaped, inside its line.
    let say = |line: String| match &bar {
        Some(pb) => pb.println(safe(&line)),
        None if !json => crate::output::say(&line),
        None => {}
    };
    let started = Instant::now();
    let (mut total, mut done, mut step_secs) = (0usize, 0usize, 0.0f64);
    let mut concurrency = 1usize;
    let mut wave = (0u32, 0u32);
    let mut running: Vec<String> = Vec::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            DeploymentEvent::Decision(d) => {
                if let Decision::PluginOverride {
                    plugin,
                    kind,
                    source,
                    sha256,
                    grants_withheld,
                } = &d.decision
                {
                    say(format!(
                        "warning: the built-in {kind} plugin '{plugin}' is replaced by {source} (sha256 {}){}",
                        sha256.get(..12).unwrap_or(sha256),
                        grants_withheld
                            .as_deref()
                            .map(|w| format!("; it runs without grants: {w}"))
                            .unwrap_or_default()
                    ));
                    continue;
                }
                // The decisions that shape the run; the rest stay in the log.
                let shown = match &d.decision {
                    Decision::SafetyOverride { applied, .. } => *applied != Some(false),
                    Decision::EnvironmentDetected(_)
                    | Decision::StrategyPredicted { .. }
                    | Decision::StrategySelected { .. }
                    | Decision::MaxTimeCheck(_)
                    | Decision::RollbackPrediction { .. }
                    | Decision::ModelDiscarded { .. } => true,
                    _ => false,
                };
                if shown {
                    say(format!(
                        "decision {}: {}",
                        d.decision.decision_type(),
                        d.decision.details()
                    ));
                }
            }
            DeploymentEvent::Planned {
                strategy,
                waves,
                concurrency: c,
            } => {
                total = waves.iter().map(Vec::len).sum();
                concurrency = c.max(1) as usize;
                say(format!(
                    "plan: {strategy}, {} wave(s), {total} step(s)",
                    waves.len()
                ));
            }
            DeploymentEvent::WaveStarted { wave: w, waves } => {
                wave = (w, waves);
                say(format!("wave {w}/{waves}"));
            }
            DeploymentEvent::StepStarted { service, host, .. } => {
                let service = step_label(&service, host.as_deref());
                say(format!("  {service}: deploying"));
                running.push(service);
            }
            DeploymentEvent::StepFinished {
                service,
                host,
                ok,
                message,
                seconds,
            } => {
                let service = step_label(&service, host.as_deref());
                running.retain(|s| *s != service);
                done += 1;
                step_secs += seconds;
                say(format!(
                    "  {service}: {} ({seconds:.1} s) {message}",
                    if ok { "ok" } else { "FAILED" }
                ));
            }
            DeploymentEvent::Paused { seconds, reason } => {
                say(format!("  pause {seconds} s: {reason}"))
            }
            DeploymentEvent::RollbackStarted { reason, services } => {
                say(format!("rollback ({reason}): {}", services.join(", ")))
            }
            DeploymentEvent::StepRolledBack {
                service,
                host,
                ok,
                message,
            } => say(format!(
                "  {}: {} {message}",
                step_label(&service, host.as_deref()),
                if ok { "rolled back" } else { "ROLLBACK FAILED" }
            )),
            DeploymentEvent::Alert { message } => say(format!("ALERT: {message}")),
            DeploymentEvent::Scaled { from, to, reason } => {
                concurrency = to.max(1) as usize;
                say(format!("  concurrency {from} → {to}: {reason}"))
            }
            // Hooks that did their job stay in the decision log; failures show.
            DeploymentEvent::Hook {
                phase,
                name,
                ok: false,
                message,
            } => say(format!("  hook {phase} {name} FAILED: {message}")),
            // Successful hooks, and kinds of events added later, are not
            // rendered.
            _ => {}
        }
        if let Some(pb) = &bar {
            let avg = if done > 0 {
                step_secs / done as f64
            } else {
                0.0
            };
            let left = total.saturating_sub(done);
            let eta = if done > 0 {
                format!(", ~{:.0} s left", avg * left as f64 / concurrency as f64)
            } else {
                String::new()
            };
            pb.set_message(
                safe(&format!(
                    "wave {}/{} · {done}/{total} steps · {} running · {:.0} s elapsed{eta}",
                    wave.0,
                    wave.1,
                    if running.is_empty() {
                        "none".to_string()
                    } else {
                        running.join(", ")
                    },
                    started.elapsed().as_secs_f64()
                ))
                .into_owned(),
            );
        }
    }
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
}

#[derive(Debug, Serialize)]
struct RunOutput<'a> {
    report: &'a Report,
    report_path: Option<PathBuf>,
    log_path: Option<PathBuf>,
}

impl CommandOutput for RunOutput<'_> {
    fn text(&self) -> String {
        self.report.human_summary()
    }
}

#[derive(Debug, Serialize)]
#[serde(transparent)]
struct Text(String);

impl CommandOutput for Text {
    fn text(&self) -> String {
        self.0.clone()
    }
}

/// `adeploy list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// How many deployments to show, newest first.
    #[arg(long, short = 'n', default_value_t = 20)]
    limit: usize,
}

#[derive(Debug, Serialize)]
struct ListOutput {
    deployments: Vec<DeploymentRecord>,
}

impl CommandOutput for ListOutput {
    fn text(&self) -> String {
        if self.deployments.is_empty() {
            return "no deployments yet\n".to_string();
        }
        let rows = self
            .deployments
            .iter()
            .map(|d| {
                vec![
                    d.id.clone(),
                    d.started_at
                        .with_timezone(&chrono::Local)
                        .format("%Y-%m-%d %H:%M:%S")
                        .to_string(),
                    d.status.as_str().to_string(),
                    safe(&d.strategy).into_owned(),
                    safe(&d.environment).into_owned(),
                    d.duration_s
                        .map(|s| format!("{s:.1}s"))
                        .unwrap_or_else(|| "-".into()),
                    safe(&d.services.join(",")).into_owned(),
                    adeploy::report::host_results(&d.steps).unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        table(
            &[
                "ID",
                "STARTED",
                "STATUS",
                "STRATEGY",
                "ENVIRONMENT",
                "DURATION",
                "SERVICES",
                "HOSTS",
            ],
            rows,
        )
    }
}

pub async fn list(ctx: &Context, args: ListArgs) -> anyhow::Result<ExitCode> {
    let engine = query_engine(ctx)?;
    emit(
        &ListOutput {
            deployments: engine.list(args.limit)?,
        },
        ctx.json,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `adeploy report ID`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A deployment id from `adeploy list`.
    id: String,
}

#[derive(Debug, Serialize)]
#[serde(transparent)]
struct ReportOutput(Report);

impl CommandOutput for ReportOutput {
    fn text(&self) -> String {
        let r = &self.0;
        let mut s = r.human_summary();
        s.push_str("decisions:\n");
        for d in &r.decision_process {
            s.push_str(&format!(
                "  {} {}: {}\n",
                d.timestamp.format("%H:%M:%S%.3f"),
                safe(&d.decision.decision_type()),
                safe(&d.decision.details().to_string())
            ));
        }
        s
    }
}

pub async fn report(ctx: &Context, args: ReportArgs) -> anyhow::Result<ExitCode> {
    let engine = query_engine(ctx)?;
    emit(&ReportOutput(engine.report(&args.id)?), ctx.json)?;
    Ok(ExitCode::SUCCESS)
}

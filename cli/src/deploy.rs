//! `adeploy run`, `adeploy list`, `adeploy report ID`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use adeploy::config::{Environment, VersionOverride};
use adeploy::engine::{
    Approval, DeploymentEvent, DeploymentRequest, DeploymentSize, Engine, EngineError,
    EngineOptions, Question,
};
use adeploy::history::DeploymentRecord;
use adeploy::report::{Decision, Format, PlanView, Report, step_label};

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
    /// Deploy SERVICE at VERSION (over its `version` in the config):
    /// exported to its commands as ADEPLOY_VERSION, checked by health
    /// expectations that use ${ADEPLOY_VERSION}, recorded in the report.
    /// Repeatable.
    #[arg(long = "set-version", value_name = "SERVICE=VERSION", value_parser = parse_version)]
    set_version: Vec<VersionOverride>,
    /// Also write the report in these formats beside the JSON one
    /// (comma-separated: html, markdown, junit, text); the paths are printed.
    #[arg(long, value_name = "FORMATS", value_parser = parse_formats)]
    report_format: Option<Formats>,
    /// How long to wait while another run deploys some of the same services
    /// to the same environment (seconds, or 30s, 10m, 1h; 0 tries once).
    /// Past it the run exits with 75, naming the holder.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_lock_timeout)]
    lock_timeout: Duration,
}

/// `--set-version SERVICE=VERSION` (a malformed one is refused by clap:
/// exit 2 naming it).
fn parse_version(s: &str) -> Result<VersionOverride, String> {
    s.parse()
}

/// `--report-format html,junit`.
#[derive(Debug, Clone)]
pub(crate) struct Formats(Vec<Format>);

fn parse_formats(s: &str) -> Result<Formats, String> {
    Format::parse_list(s)
        .map(Formats)
        .map_err(|e| e.to_string())
}

/// `--format` of `report`: one format name.
fn parse_format(s: &str) -> Result<Format, String> {
    s.parse::<Format>().map_err(|e| e.to_string())
}

/// `--lock-timeout`: a number of seconds, or a number and a unit (s, m, h, d, w).
fn parse_lock_timeout(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    adeploy::config::parse_duration(text).ok_or_else(|| {
        format!(
            "{text:?} is not a duration: write seconds (600) or a number and a unit (30s, 10m, 1h)"
        )
    })
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

async fn engine(
    ctx: &Context,
    plugin_dirs: Vec<PathBuf>,
    lock_wait: Option<Duration>,
) -> anyhow::Result<Engine> {
    let config = ctx.config()?;
    let options = EngineOptions {
        state_dir: ctx.state_dir.clone(),
        plugin_dirs,
        lock_wait,
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
    let mut versions = BTreeMap::new();
    for v in args.set_version {
        if let Some(first) = versions.insert(v.service.clone(), v.version.clone()) {
            return Err(crate::UsageError(format!(
                "--set-version {}: given twice ({first} and {})",
                v.service, v.version
            ))
            .into());
        }
    }
    let formats = args.report_format.map(|f| f.0).unwrap_or_default();
    let engine = engine(ctx, args.plugin_dirs, Some(args.lock_timeout)).await?;
    let req = DeploymentRequest {
        versions,
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
    // The live status line on a terminal (none with --json or in CI logs).
    let bar = (std::io::stderr().is_terminal() && !ctx.json).then(|| {
        let pb = indicatif::ProgressBar::new_spinner();
        pb.enable_steady_tick(Duration::from_millis(120));
        pb
    });
    let confirm: Option<adeploy::engine::Confirm> = if args.interactive && !args.dry_run {
        let yes = args.yes;
        let bar = bar.clone();
        Some(Box::new(move |question: &Question<'_>| {
            let ask = || {
                match question {
                    Question::Plan(plan) => crate::output::say_block(&render_plan(plan)),
                    Question::Inconclusive(analysis) => {
                        crate::output::say_block(&analysis.describe())
                    }
                    _ => {}
                }
                if yes {
                    return true;
                }
                tokio::task::block_in_place(|| {
                    dialoguer::Confirm::new()
                        .with_prompt(question.prompt())
                        .default(false)
                        .interact()
                        .unwrap_or(false)
                })
            };
            // The spinner is hidden (and does not tick) while the plan and
            // the question are on screen.
            match &bar {
                Some(pb) => pb.suspend(ask),
                None => ask(),
            }
        }))
    } else {
        None
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let renderer = tokio::spawn(render_events(rx, ctx.json, bar));
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
    // The rendered reports, and the step summary of a GitHub Actions job:
    // the deployment happened whatever becomes of them, so a failure to
    // write one is a warning.
    let report_files = match engine.write_reports(&outcome, &formats).await {
        Ok(paths) => paths,
        Err(e) => {
            eprintln!("warning: {e}");
            Vec::new()
        }
    };
    let step_summary = step_summary(report);
    if ctx.json {
        emit(
            &RunOutput {
                report,
                report_path: outcome.report_path.clone(),
                log_path: outcome.log_path.clone(),
                report_files,
                step_summary,
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
        for p in &report_files {
            text.push_str(&format!("  report: {}\n", p.display()));
        }
        if let Some(p) = &step_summary {
            text.push_str(&format!("  step summary appended to {}\n", p.display()));
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

/// Appends the Markdown summary to `$GITHUB_STEP_SUMMARY` when it is set
/// (GitHub Actions shows it on the job's page); the file, or `None`.
fn step_summary(report: &Report) -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os("GITHUB_STEP_SUMMARY").filter(|v| !v.is_empty())?);
    match adeploy::report::render::append_markdown(report, &path) {
        Ok(()) => Some(path),
        Err(e) => {
            eprintln!("warning: GITHUB_STEP_SUMMARY: {e}");
            None
        }
    }
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
    for a in &plan.analysis {
        s.push_str(&a.describe());
    }
    s
}

/// Live progress on stderr: a redrawing status line on a terminal (`bar`),
/// plain lines otherwise. Nothing with `--json` except warnings.
async fn render_events(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<DeploymentEvent>,
    json: bool,
    bar: Option<indicatif::ProgressBar>,
) {
    // Every line is made safe for the terminal as a whole: a field's
    // newline or escape sequence is shown escaped, inside its line.
    let say = |line: String| match &bar {
        Some(pb) => pb.println(safe(&line)),
        None if !json => crate::output::say(&line),
        None => {}
    };
    // Warnings are printed with --json too (on stderr).
    let warn = |line: String| match &bar {
        Some(pb) => pb.println(safe(&line)),
        None => crate::output::say(&line),
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
                    warn(format!(
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
                    | Decision::Exploration(_)
                    | Decision::DriftDetected(_)
                    | Decision::ModelDiscarded { .. } => true,
                    _ => false,
                };
                if shown {
                    say(format!("decision: {}", d.decision.summary()));
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
            } => {
                // The message says what happened ("rolled back", "nothing
                // was started", "rollback failed: …"); a failure stands out.
                let label = step_label(&service, host.as_deref());
                say(if ok {
                    format!("  {label}: {message}")
                } else {
                    let why = message
                        .strip_prefix("rollback failed: ")
                        .unwrap_or(&message);
                    format!("  {label}: ROLLBACK FAILED: {why}")
                })
            }
            DeploymentEvent::Alert { message } => say(format!("ALERT: {message}")),
            // Said even with --json (on stderr): the operator should fix it.
            DeploymentEvent::Warning { message } => match &bar {
                Some(pb) => pb.println(format!("warning: {message}")),
                None => eprintln!("warning: {message}"),
            },
            DeploymentEvent::Scaled { from, to, reason } => {
                concurrency = to.max(1) as usize;
                say(format!("  concurrency {from} → {to}: {reason}"))
            }
            // Waiting for another run, and records kept locally: shown in
            // CI logs even with --json (on stderr; stdout stays the document).
            DeploymentEvent::WaitingForLock(wait) => match &bar {
                Some(pb) => pb.println(format!("{wait}")),
                None => eprintln!("{wait}"),
            },
            DeploymentEvent::HistoryJournaled {
                url,
                pending,
                journal,
            } => {
                let line = format!(
                    "history: {url} is unreachable; {pending} write(s) wait in {}: the next run that reaches it sends them, or `adeploy state sync`",
                    journal.display()
                );
                match &bar {
                    Some(pb) => pb.println(line),
                    None => eprintln!("{line}"),
                }
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
            let stage = if wave.1 == 0 {
                "preparing".to_string()
            } else {
                format!("wave {}/{}", wave.0, wave.1)
            };
            pb.set_message(
                safe(&format!(
                    "{stage} · {done}/{total} steps · {} running · {:.0} s elapsed{eta}",
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
    /// The reports `--report-format` wrote beside the JSON one.
    report_files: Vec<PathBuf>,
    /// `$GITHUB_STEP_SUMMARY`, when the Markdown summary was appended to it.
    step_summary: Option<PathBuf>,
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
                    result_of(d),
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
                "RESULT",
            ],
            rows,
        )
    }
}

/// What a failed deployment's first failed step says (`api: analysis failed:
/// metric 'error-rate' failed: …`), cut to one short line; `-` otherwise.
fn result_of(d: &DeploymentRecord) -> String {
    const MOST: usize = 90;
    if d.success != Some(false) {
        return "-".into();
    }
    let text = d
        .steps
        .iter()
        .find(|s| matches!(s.status, adeploy::report::StepStatus::Failed))
        .map(|s| format!("{}: {}", s.label(), s.message))
        .or_else(|| d.summary.clone())
        .unwrap_or_else(|| "-".into());
    let text = text.replace('\n', " ");
    if text.chars().count() > MOST {
        text.chars().take(MOST - 1).collect::<String>() + "…"
    } else {
        text
    }
}

pub async fn list(ctx: &Context, args: ListArgs) -> anyhow::Result<ExitCode> {
    let engine = query_engine(ctx)?;
    emit(
        &ListOutput {
            deployments: engine.list(args.limit).await?,
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
    /// Render the report as json (the file as written), html (one
    /// self-contained page), markdown or junit, instead of the summary.
    #[arg(long, value_name = "FORMAT", value_parser = parse_format)]
    format: Option<Format>,
    /// Write the rendering to FILE (atomically) instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
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
                "  {} {}\n",
                d.timestamp
                    .with_timezone(&chrono::Local)
                    .format("%H:%M:%S%.3f"),
                safe(&d.decision.summary())
            ));
        }
        s
    }
}

pub async fn report(ctx: &Context, args: ReportArgs) -> anyhow::Result<ExitCode> {
    let engine = query_engine(ctx)?;
    let format = match args.format {
        Some(f) => f,
        None if args.output.is_some() || ctx.json => Format::Json,
        None => {
            emit(&ReportOutput(engine.report(&args.id).await?), false)?;
            return Ok(ExitCode::SUCCESS);
        }
    };
    let text = match format {
        // The typed summary, as without --format.
        Format::Text => ReportOutput(engine.report(&args.id).await?).text(),
        other => engine.render_report(&args.id, other).await?,
    };
    write_or_print(&text, args.output.as_deref(), ctx.json)
}

/// Writes `text` to `output` (atomically, then says where) or prints it.
pub(crate) fn write_or_print(
    text: &str,
    output: Option<&Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    match output {
        Some(path) => {
            adeploy::report::render::write_text(path, text)?;
            if json {
                emit(&Written { path }, true)?;
            } else {
                emit(&Text(format!("wrote {}\n", path.display())), false)?;
            }
        }
        None => emit(&Text(text.to_string()), false)?,
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Serialize)]
struct Written<'a> {
    path: &'a Path,
}

impl CommandOutput for Written<'_> {
    fn text(&self) -> String {
        format!("wrote {}\n", self.path.display())
    }
}

//! `adeploy history`: analytics across deployments (success per strategy ×
//! environment, step durations per service, the model's accuracy, failure
//! patterns) as text, JSON, or one self-contained HTML page.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;

use adeploy::engine::{Engine, EngineOptions, HistoryReport};
use adeploy::report::render::HistoryAnalytics;

use crate::Context;
use crate::output::{CommandOutput, emit, table};

/// `adeploy history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// html (one self-contained page with charts), json (the aggregates),
    /// or text (the default: a few tables).
    #[arg(long, value_enum)]
    format: Option<HistoryFormat>,
    /// Write to FILE (atomically) instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum HistoryFormat {
    Html,
    Json,
    Text,
}

pub async fn run(ctx: &Context, args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let engine = Engine::new(
        config,
        EngineOptions {
            state_dir: ctx.state_dir.clone(),
            ..EngineOptions::default()
        },
    )
    .await?;
    let report = engine.history_report().await?;
    let format = match args.format {
        Some(f) => f,
        None if ctx.json => HistoryFormat::Json,
        None if args.output.is_some() => HistoryFormat::Html,
        None => HistoryFormat::Text,
    };
    let text = match format {
        HistoryFormat::Html => report.html(),
        HistoryFormat::Json => serde_json::to_string_pretty(&report.analytics)? + "\n",
        HistoryFormat::Text if args.output.is_none() => {
            emit(&Output(&report), false)?;
            return Ok(ExitCode::SUCCESS);
        }
        HistoryFormat::Text => Output(&report).text(),
    };
    crate::deploy::write_or_print(&text, args.output.as_deref(), ctx.json)
}

struct Output<'a>(&'a HistoryReport);

impl Serialize for Output<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.analytics.serialize(s)
    }
}

fn rate(ok: usize, n: usize) -> String {
    if n == 0 {
        "-".to_string()
    } else {
        format!("{:.0}%", ok as f64 * 100.0 / n as f64)
    }
}

impl CommandOutput for Output<'_> {
    fn text(&self) -> String {
        let a: &HistoryAnalytics = &self.0.analytics;
        if a.deployments == 0 {
            return format!(
                "no finished deployments yet ({} dry run(s), {} unfinished)\n",
                a.dry_runs, a.unfinished
            );
        }
        let mut s = format!(
            "{} deployments, {} succeeded ({}){}\n",
            a.deployments,
            a.succeeded,
            rate(a.succeeded, a.deployments),
            match (a.first, a.last) {
                (Some(f), Some(l)) => format!(
                    ", {} to {}",
                    f.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M"),
                    l.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M")
                ),
                _ => String::new(),
            }
        );
        s.push_str("\nby strategy and environment:\n");
        s.push_str(&table(
            &["STRATEGY", "ENVIRONMENT", "DEPLOYMENTS", "SUCCESS"],
            a.groups
                .iter()
                .map(|g| {
                    vec![
                        g.strategy.clone(),
                        g.environment.clone(),
                        g.total.to_string(),
                        rate(g.succeeded, g.total),
                    ]
                })
                .collect(),
        ));
        if !a.services.is_empty() {
            s.push_str("\nstep durations (succeeded steps):\n");
            s.push_str(&table(
                &["SERVICE", "STEPS", "MEDIAN"],
                a.services
                    .iter()
                    .map(|v| {
                        vec![
                            v.service.clone(),
                            v.steps.to_string(),
                            format!("{:.1} s", v.median_s),
                        ]
                    })
                    .collect(),
            ));
        }
        if let Some(m) = a.model.last() {
            s.push_str(&format!(
                "\nmodel: {} retraining(s); the last on {} deployments{}\n",
                a.model.len(),
                m.samples,
                m.oob_accuracy
                    .map(|x| format!(", out-of-bag accuracy {x:.2}"))
                    .unwrap_or_default()
            ));
        }
        if !a.patterns.is_empty() {
            s.push_str("\nfailure patterns:\n");
            for p in &a.patterns {
                s.push_str(&format!("  {}\n", p.lesson()));
            }
        }
        s.push_str("\n`adeploy history --format html -o history.html` draws these over time.\n");
        s
    }
}

//! `adeploy diagnostics` (the seed's `--diagnostics`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;

use adeploy::engine::diagnostics::{CheckStatus, Diagnostics};
use adeploy::engine::{Engine, EngineOptions};
use adeploy::plugin::{HostOptions, HostWorld};

use crate::Context;
use crate::output::{CommandOutput, emit, safe, table};

/// `adeploy diagnostics`.
#[derive(Debug, Args)]
pub struct DiagnosticsArgs {
    /// Examine another filesystem tree: detectors see DIR as `/` (a container
    /// image, a mounted host).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// The host name detectors see, instead of this machine's.
    #[arg(long, value_name = "NAME")]
    hostname: Option<String>,
    /// A directory of plugin components; repeatable.
    #[arg(long = "plugins", value_name = "DIR")]
    plugin_dirs: Vec<PathBuf>,
}

pub async fn run(ctx: &Context, args: DiagnosticsArgs) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    if let Some(root) = &args.root
        && !root.is_dir()
    {
        return Err(
            crate::UsageError(format!("--root {}: not a directory", root.display())).into(),
        );
    }
    let mut host = HostOptions::for_config(&config);
    host.world = HostWorld {
        root: args.root.clone().unwrap_or_else(|| PathBuf::from("/")),
        hostname: args.hostname.clone(),
        ..HostWorld::default()
    };
    let options = EngineOptions {
        state_dir: ctx.state_dir.clone(),
        plugin_dirs: args.plugin_dirs,
        host: Some(host),
        ..EngineOptions::default()
    };
    let engine = Engine::new(config, options).await?;
    let d = engine.diagnostics().await?;
    let healthy = d.healthy;
    emit(&Output(d), ctx.json)?;
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[derive(Debug, Serialize)]
#[serde(transparent)]
struct Output(Diagnostics);

fn status(s: CheckStatus) -> &'static str {
    match s {
        CheckStatus::Ok => "ok",
        CheckStatus::Caution => "caution",
        CheckStatus::Critical => "CRITICAL",
    }
}

impl CommandOutput for Output {
    fn text(&self) -> String {
        let d = &self.0;
        let e = &d.environment;
        let mut s = format!(
            "{}\n\nenvironment: {} (confidence {:.2}, from {})\n",
            if d.healthy {
                "healthy"
            } else {
                "NOT HEALTHY: a check is critical"
            },
            e.environment,
            e.confidence,
            serde_json::to_value(e.source)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default()
        );
        for ev in &e.evidence {
            s.push_str(&format!(
                "  {} {} → {} (weight {}): {}\n",
                safe(&ev.detector),
                safe(&ev.method),
                ev.environment,
                ev.weight,
                safe(&ev.detail)
            ));
        }
        for n in &e.notes {
            s.push_str(&format!("  note: {}\n", safe(n)));
        }
        let m = &d.system;
        let snap = &m.snapshot;
        s.push_str(&format!(
            "\nsystem: CPU {:.1}% over {} cores (per core: {}), load {:.2} {:.2} {:.2}\n",
            snap.cpu_percent,
            m.cores,
            m.cpu_per_core
                .iter()
                .map(|c| format!("{c:.0}"))
                .collect::<Vec<_>>()
                .join(" "),
            m.load_average.one,
            m.load_average.five,
            m.load_average.fifteen
        ));
        s.push_str(&format!(
            "  memory {:.1}% of {:.1} GiB, swap {:.1} of {:.1} GiB, disk {:.1}% of {} ({:.1} GiB free), {} processes\n",
            snap.memory_percent,
            m.memory_total_bytes as f64 / 1073741824.0,
            m.swap_used_bytes as f64 / 1073741824.0,
            m.swap_total_bytes as f64 / 1073741824.0,
            snap.disk_percent,
            m.disk_mount.display(),
            m.disk_available_bytes as f64 / 1073741824.0,
            m.process_count
        ));
        if let (Some(r), Some(w)) = (m.disk_read_bytes_per_s, m.disk_write_bytes_per_s) {
            s.push_str(&format!(
                "  disk I/O: {:.1} KiB/s read, {:.1} KiB/s written\n",
                r / 1024.0,
                w / 1024.0
            ));
        }
        if d.latency.is_empty() {
            s.push_str("  network latency: not measured (monitoring.latency_endpoints is empty)\n");
        }
        for l in &d.latency {
            match (l.ms, &l.error) {
                (Some(ms), _) => s.push_str(&format!("  latency {}: {ms:.1} ms\n", l.endpoint)),
                (None, e) => s.push_str(&format!(
                    "  latency {}: no answer ({})\n",
                    l.endpoint,
                    e.as_deref().unwrap_or("?")
                )),
            }
        }
        for t in &d.trends {
            s.push_str(&format!("  trend {t}\n"));
        }
        if d.environment_settings.is_empty() {
            s.push_str(&format!(
                "\nenvironment settings: none (environments.{} changes nothing)\n",
                e.environment
            ));
        } else {
            s.push_str(&format!("\nenvironment settings ({}):\n", e.environment));
            for o in &d.environment_settings {
                s.push_str(&format!("  {o} — from {}\n", o.source));
            }
        }
        s.push_str("\nthresholds:\n");
        s.push_str(&table(
            &["STATUS", "KEY", "VALUE", "THRESHOLD", "DETAIL"],
            d.thresholds
                .iter()
                .map(|t| {
                    vec![
                        status(t.status).to_string(),
                        if t.source.is_empty() || t.source == t.key {
                            t.key.clone()
                        } else {
                            format!("{} ({})", t.key, t.source)
                        },
                        format!("{:.1}", t.value),
                        format!("{:.1}", t.threshold),
                        t.message.clone(),
                    ]
                })
                .collect(),
        ));
        s.push_str("\nplugins:\n");
        s.push_str(&table(
            &["NAME", "KIND", "SOURCE", "LOADED", "TIME"],
            d.plugins
                .iter()
                .map(|p| {
                    vec![
                        safe(&p.name).into_owned(),
                        p.kind.to_string(),
                        safe(&p.source).into_owned(),
                        serde_json::to_value(p.outcome)
                            .ok()
                            .and_then(|v| v.as_str().map(String::from))
                            .unwrap_or_default(),
                        format!("{:.2} ms", p.load_micros as f64 / 1000.0),
                    ]
                })
                .collect(),
        ));
        let st = &d.state;
        s.push_str(&format!(
            "\nstate: {} [{}] {}; history: {} ({} bytes){}\n",
            st.state_dir.display(),
            status(st.status),
            st.message,
            st.history,
            st.database_bytes,
            st.last_deployment
                .as_ref()
                .map(|l| format!(", last {l}"))
                .unwrap_or_default()
        ));
        for c in &d.containers {
            s.push_str(&format!(
                "container {}{} [{}] via {}: {}\n",
                c.service,
                c.host.as_ref().map(|h| format!("@{h}")).unwrap_or_default(),
                status(c.status),
                c.runtime.as_deref().unwrap_or("no runtime"),
                c.message
            ));
            for f in &c.containers {
                s.push_str(&format!(
                    "  {} {} {} {}{}{}\n",
                    f.name,
                    f.status,
                    f.image,
                    f.digest,
                    f.since
                        .map(|t| format!(" since {}", t.format("%Y-%m-%d %H:%M:%S UTC")))
                        .unwrap_or_default(),
                    if f.owned { "" } else { " (not adeploy's)" }
                ));
            }
        }
        s.push_str(&format!("model: {} — {}\n", d.model.method, d.model.detail));
        s.push_str(&format!(
            "config: {} (valid; services: {})\n",
            d.config
                .source
                .as_ref()
                .map_or("embedded default".to_string(), |p| p.display().to_string()),
            d.config.services.join(", ")
        ));
        s
    }
}

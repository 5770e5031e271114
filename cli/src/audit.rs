//! `adeploy audit`: who approved what, and model changes.

use std::process::ExitCode;

use clap::Args;
use serde::Serialize;

use adeploy::engine::{Engine, EngineOptions};
use adeploy::history::AuditEntry;

use crate::Context;
use crate::output::{CommandOutput, emit, safe, table};

/// `adeploy audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// How many entries to show, newest first.
    #[arg(long, short = 'n', default_value_t = 50)]
    limit: usize,
}

#[derive(Debug, Serialize)]
struct AuditOutput {
    entries: Vec<AuditEntry>,
}

impl CommandOutput for AuditOutput {
    fn text(&self) -> String {
        if self.entries.is_empty() {
            return "the audit log is empty\n".to_string();
        }
        table(
            &["TIME", "USER", "ACTION", "DETAILS"],
            self.entries
                .iter()
                .map(|e| {
                    vec![
                        e.timestamp
                            .with_timezone(&chrono::Local)
                            .format("%Y-%m-%d %H:%M:%S")
                            .to_string(),
                        safe(&e.user).into_owned(),
                        safe(&e.action).into_owned(),
                        safe(&e.details.to_string()).into_owned(),
                    ]
                })
                .collect(),
        )
    }
}

pub async fn run(ctx: &Context, args: AuditArgs) -> anyhow::Result<ExitCode> {
    let options = EngineOptions {
        state_dir: ctx.state_dir.clone(),
        ..EngineOptions::default()
    };
    // The audit log needs no plugins: none are loaded.
    let engine = Engine::for_queries(ctx.config()?, options)?;
    emit(
        &AuditOutput {
            entries: engine.audit_log(args.limit).await?,
        },
        ctx.json,
    )?;
    Ok(ExitCode::SUCCESS)
}

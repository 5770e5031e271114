//! `adeploy analyze ID`: re-runs a recorded deployment's metric analysis
//! over its recorded windows with the rules of the config given
//! (`--config other.yaml`): would this rule have caught that release?

use std::process::ExitCode;

use clap::Args;
use serde::Serialize;

use adeploy::analysis::Verdict;
use adeploy::engine::{Engine, EngineOptions, Reanalysis};

use crate::Context;
use crate::output::{CommandOutput, emit};

/// `adeploy analyze`.
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// A deployment id from `adeploy list`.
    id: String,
}

#[derive(Debug, Serialize)]
#[serde(transparent)]
struct AnalyzeOutput(Reanalysis);

impl CommandOutput for AnalyzeOutput {
    fn text(&self) -> String {
        self.0.describe()
    }
}

/// Exit 0 when the analysis passes by the config's rules, 1 when it fails
/// or is inconclusive (so a script can ask "would this have failed?"), 2 for
/// bad input.
pub async fn run(ctx: &Context, args: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let options = EngineOptions {
        state_dir: ctx.state_dir.clone(),
        ..EngineOptions::default()
    };
    let engine = Engine::new(ctx.config()?, options).await?;
    let result = engine.analyze(&args.id).await?;
    let passed = result.verdict == Verdict::Pass;
    emit(&AnalyzeOutput(result), ctx.json)?;
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

//! `adeploy model status|retrain|reset`: the learned strategy model.

use std::process::ExitCode;

use clap::Subcommand;
use serde::Serialize;

use adeploy::engine::learn::ModelStatus;
use adeploy::engine::{Engine, EngineOptions};
use adeploy::ml::ModelMeta;

use crate::Context;
use crate::output::{CommandOutput, emit, table};

/// `adeploy model ...`.
#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Samples, last training, accuracy, feature importances, success rate
    /// per strategy and environment, failure patterns.
    Status,
    /// Train the model now on the whole history.
    Retrain,
    /// Delete the model (the seed's "delete the model files to retrain"):
    /// rules decide until the next deployment with enough history retrains.
    Reset,
}

async fn engine(ctx: &Context) -> anyhow::Result<Engine> {
    let options = EngineOptions {
        state_dir: ctx.state_dir.clone(),
        ..EngineOptions::default()
    };
    // The model needs no plugins: none are loaded.
    Ok(Engine::for_queries(ctx.config()?, options)?)
}

pub async fn run(ctx: &Context, cmd: ModelCommand) -> anyhow::Result<ExitCode> {
    let engine = engine(ctx).await?;
    match cmd {
        ModelCommand::Status => emit(&Status(engine.model_status().await?), ctx.json)?,
        ModelCommand::Retrain => emit(&Retrained(engine.retrain_model().await?), ctx.json)?,
        ModelCommand::Reset => emit(
            &Reset {
                removed: engine.reset_model().await?,
            },
            ctx.json,
        )?,
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Serialize)]
#[serde(transparent)]
struct Status(ModelStatus);

fn pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

fn meta_lines(m: &ModelMeta) -> String {
    let mut s = format!(
        "trained on {} deployments at {} ({}), out-of-bag accuracy {}\nstrategies: {}\n",
        m.samples,
        m.trained_at.format("%Y-%m-%d %H:%M:%S UTC"),
        adeploy::engine::learn::age(m),
        m.oob_accuracy.map_or("unknown".to_string(), pct),
        m.strategies.join(", ")
    );
    let mut imp = m.feature_importances.clone();
    imp.sort_by(|a, b| b.1.total_cmp(&a.1));
    let top: Vec<Vec<String>> = imp
        .iter()
        .take(8)
        .filter(|(_, v)| *v > 0.0)
        .map(|(n, v)| vec![n.clone(), format!("{v:.3}")])
        .collect();
    if !top.is_empty() {
        s.push_str("\nfeature importances (top 8):\n");
        s.push_str(&table(&["FEATURE", "IMPORTANCE"], top));
    }
    s
}

impl CommandOutput for Status {
    fn text(&self) -> String {
        let st = &self.0;
        let mut s = format!(
            "model: {}{}\nadaptive deployments are decided by: {}\nhistory: {} deployments, {} with features (the model needs {}; retrains every {}, next: {})\n",
            st.state,
            st.detail
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default(),
            st.decides,
            st.deployments,
            st.training_samples,
            st.min_training_samples,
            st.retrain_frequency,
            match st.next_retrain_in {
                1 => "the next deployment".to_string(),
                n => format!("deployment {n} from now"),
            }
        );
        if let Some(h) = &st.history {
            s.push_str(&format!("history lives in: {h}\n"));
        }
        if let Some(m) = &st.model {
            s.push_str(&meta_lines(m));
        }
        if !st.success_rates.is_empty() {
            s.push_str("\nsuccess rate per strategy and environment:\n");
            s.push_str(&table(
                &[
                    "STRATEGY",
                    "ENVIRONMENT",
                    "DEPLOYMENTS",
                    "SUCCEEDED",
                    "RATE",
                ],
                st.success_rates
                    .iter()
                    .map(|r| {
                        vec![
                            r.strategy.clone(),
                            r.environment.to_string(),
                            r.deployments.to_string(),
                            r.successes.to_string(),
                            pct(r.rate),
                        ]
                    })
                    .collect(),
            ));
        }
        s.push_str(&format!(
            "\nrecency: an outcome's weight halves every {} (ml_config.half_life_deployments{})\n",
            match st.half_life_deployments {
                h if h > 0.0 => format!("{h} newer deployments of its strategy in its environment"),
                _ => "never".to_string(),
            },
            match st.half_life_days {
                d if d > 0.0 => format!("; and every {d} days, ml_config.half_life_days"),
                _ => String::new(),
            }
        ));
        if st.drift_p_value <= 0.0 {
            s.push_str("change detection: off (ml_config.drift_p_value = 0)\n");
        } else if st.drift_events.is_empty() {
            s.push_str(&format!(
                "no changes detected (ml_config.drift_p_value = {})\n",
                st.drift_p_value
            ));
        } else {
            s.push_str(&format!(
                "recent changes (newest first; ml_config.drift_p_value = {}):\n",
                st.drift_p_value
            ));
            for d in &st.drift_events {
                s.push_str(&format!(
                    "  - {} (since {}, detected by {}; {} deployment(s) in {} since)\n    {}\n",
                    d.summary,
                    d.event.since,
                    d.event.detected_by,
                    d.deployments_since,
                    d.event.environment,
                    if d.active {
                        format!("active: {}", d.response)
                    } else {
                        "no longer acted on".to_string()
                    }
                ));
            }
        }
        if st.failure_patterns.is_empty() {
            s.push_str("\nno failure patterns\n");
        } else {
            s.push_str("\nfailure patterns:\n");
            for (l, r) in st.lessons.iter().zip(&st.recommendations) {
                s.push_str(&format!("  - {l}\n    recommendation: {r}\n"));
            }
        }
        s
    }
}

#[derive(Debug, Serialize)]
#[serde(transparent)]
struct Retrained(ModelMeta);

impl CommandOutput for Retrained {
    fn text(&self) -> String {
        format!("model retrained\n{}", meta_lines(&self.0))
    }
}

#[derive(Debug, Serialize)]
struct Reset {
    removed: bool,
}

impl CommandOutput for Reset {
    fn text(&self) -> String {
        if self.removed {
            "model deleted: transparent rules decide until the next deployment with enough history retrains it\n".to_string()
        } else {
            "there was no model to delete\n".to_string()
        }
    }
}

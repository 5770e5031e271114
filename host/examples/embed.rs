//! Embedding the adeploy engine in another program: load a config, deploy two
//! services, and consume the same event stream the `adeploy` CLI renders.
//!
//! Run: `cargo run -p adeploy --example embed`

use std::time::Duration;

use adeploy::config::{Config, Environment};
use adeploy::engine::{DeploymentEvent, DeploymentRequest, Engine, EngineOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let state = tempfile::tempdir()?;
    // Two services that only echo, over the embedded defaults.
    let yaml = "services:\n  db:\n    deploy: 'echo migrating'\n    rollback: 'echo undo'\n    health: {command: 'true'}\n  api:\n    deploy: 'echo starting api'\n    depends_on: [db]\n";
    let path = state.path().join("embed.yaml");
    std::fs::write(&path, yaml)?;
    let config = Config::load(Some(&path))?;

    let options = EngineOptions {
        state_dir: Some(state.path().join("state")),
        ..EngineOptions::default()
    };
    let engine = Engine::new(config, options).await?;

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let printer = tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            match event {
                DeploymentEvent::Decision(d) => {
                    println!("decision  {}", d.decision.decision_type())
                }
                DeploymentEvent::StepFinished {
                    service,
                    ok,
                    seconds,
                    ..
                } => {
                    println!(
                        "step      {service}: {} in {seconds:.2} s",
                        if ok { "ok" } else { "failed" }
                    )
                }
                other => println!(
                    "event     {}",
                    serde_json::to_string(&other).unwrap_or_default()
                ),
            }
        }
    });

    let request = DeploymentRequest {
        services: vec!["api".into(), "db".into()],
        strategy: Some("adaptive".into()),
        environment: Some(Environment::Staging),
        max_time: Some(Duration::from_secs(120)),
        ..DeploymentRequest::default()
    };
    let outcome = engine.deploy(request, Some(tx), None).await?;
    printer.await?;
    println!("\n{}", outcome.report.human_summary());
    for d in engine.list(5).await? {
        println!("history   {} {:?} {}", d.id, d.status, d.strategy);
    }
    Ok(())
}

//! How the engine uses its history: the start of a deployment reads a
//! bounded window plus the aggregates (and learns the same from them as
//! from every record), retraining happens under the history's retraining
//! lock, a second run waits for the deployment lock and says for whom.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use adeploy::config::Environment;
use adeploy::engine::{
    Decision, DeploymentEvent, DeploymentRequest, DeploymentSize, Engine, EngineError,
    EngineOptions,
};
use adeploy::history::{HistoryBackend, HistoryError};

use crate::common::World;

fn request(strategy: &str) -> DeploymentRequest {
    DeploymentRequest {
        services: vec!["api".into()],
        strategy: Some(strategy.into()),
        environment: Some(Environment::Staging),
        size: DeploymentSize::Medium,
        ..DeploymentRequest::default()
    }
}

fn history_loaded(report: &adeploy::report::Report) -> serde_json::Value {
    report
        .decision_process
        .iter()
        .find(|d| d.decision.decision_type() == "history_loaded")
        .map(|d| d.decision.details())
        .unwrap()
}

/// A window of 3 deployments knows what a window of 1,000 knows: the
/// totals come from the aggregates, not from reading every record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_window_knows_the_whole_history_from_the_aggregates() {
    let w = World::new();
    let services = w.service("api", &[], "{command: 'true'}");
    let bad = w.dir.path().join("fail");
    let services = services.replace(
        "deploy: 'echo",
        &format!("deploy: 'test ! -f {} && echo", bad.display()),
    );
    let wide = w.engine_with(&services, "history:\n  window: 1000\n").await;
    for i in 0..12 {
        if i % 4 == 0 {
            std::fs::write(&bad, "").unwrap();
        } else {
            let _ = std::fs::remove_file(&bad);
        }
        let strategy = ["conservative", "balanced", "aggressive"][i % 3];
        wide.deploy(request(strategy), None, None).await.unwrap();
    }
    let _ = std::fs::remove_file(&bad);
    let narrow = w.engine_with(&services, "history:\n  window: 3\n").await;
    let a = wide
        .deploy(
            DeploymentRequest {
                dry_run: true,
                ..request("balanced")
            },
            None,
            None,
        )
        .await
        .unwrap();
    let b = narrow
        .deploy(
            DeploymentRequest {
                dry_run: true,
                ..request("balanced")
            },
            None,
            None,
        )
        .await
        .unwrap();
    let (la, lb) = (history_loaded(&a.report), history_loaded(&b.report));
    assert_eq!(la["deployments"], 12, "{la}");
    assert_eq!(la["training_samples"], 12, "{la}");
    assert_eq!(la["in_environment"], 12, "{la}");
    assert_eq!(
        la, lb,
        "the window of 3 sees the same totals as the window of 1000"
    );
    // The narrow one really read 3 records: the duration benchmark (the
    // successful balanced deployments among what was read) has 1 sample
    // (i = 10) against the wide one's 3 (i = 1, 7, 10).
    assert_eq!(a.report.performance_analysis.benchmark_samples, 3);
    assert_eq!(b.report.performance_analysis.benchmark_samples, 1);
    let window = narrow.history().await.unwrap().window(3).await.unwrap();
    assert_eq!(window.recent.len(), 3);
    assert_eq!(window.aggregates.deployments(), 12);
    assert_eq!(window.aggregates.with_features(), 12);
}

/// One process retrains at a time: while another holds the retraining
/// lock, a due retraining is skipped (the newest stored model is used);
/// the next due one runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retraining_waits_its_turn_under_the_retraining_lock() {
    let w = World::new();
    let services = w.service("api", &[], "{command: 'true'}");
    let engine = w
        .engine_with(
            &services,
            "ml_config:\n  min_training_samples: 3\n  retrain_frequency: 1\n  exploration_rate: 0.0\n",
        )
        .await;
    for s in ["conservative", "balanced"] {
        engine.deploy(request(s), None, None).await.unwrap();
        assert!(engine.wait_for_learning().await.is_empty());
    }
    let other = adeploy::history::HistoryStore::open_local(&w.state())
        .await
        .unwrap();
    let held = other.try_lock_retrain().await.unwrap().unwrap();
    engine
        .deploy(request("aggressive"), None, None)
        .await
        .unwrap();
    assert!(
        engine.wait_for_learning().await.is_empty(),
        "retrained while another process held the retraining lock"
    );
    let history = engine.history().await.unwrap();
    assert_eq!(history.get_blob("strategy_model").await.unwrap(), None);
    // `model retrain` waits for the lock (the engine's lock wait), then
    // says who is busy.
    let options = EngineOptions {
        lock_wait: Some(Duration::from_millis(300)),
        ..w.options()
    };
    let impatient = w
        .engine_with_options(
            &services,
            "ml_config:\n  min_training_samples: 3\n",
            options,
        )
        .await;
    let err = impatient.retrain_model().await.unwrap_err();
    assert!(err.is_busy(), "{err}");
    assert!(
        err.to_string()
            .contains("another adeploy process is retraining"),
        "{err}"
    );
    drop(held);
    engine
        .deploy(request("balanced"), None, None)
        .await
        .unwrap();
    let done = engine.wait_for_learning().await;
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].result.as_ref().unwrap().samples, 4);
    assert!(history.get_blob("strategy_model").await.unwrap().is_some());
}

/// A second run of overlapping services waits for the first, says for
/// whom on the event channel, and records the wait; with a short wait it is
/// refused as busy, having written nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_waits_for_the_lock_announces_it_and_records_it() {
    let w = World::new();
    let (started, go) = (w.dir.path().join("started"), w.dir.path().join("go"));
    let services = format!(
        "  api:\n    deploy: 'touch {}; while [ ! -f {} ]; do sleep 0.05; done'\n    rollback: 'true'\n    health: {{command: 'true'}}\n    timeout_s: 60\n",
        started.display(),
        go.display()
    );
    let first = Arc::new(w.engine(&services).await);
    let running = {
        let first = first.clone();
        tokio::spawn(async move { first.deploy(request("balanced"), None, None).await })
    };
    while !started.exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Refused after a short wait: busy, nothing recorded.
    let short = EngineOptions {
        lock_wait: Some(Duration::from_millis(200)),
        ..w.options()
    };
    let refused = w.engine_with_options(&services, "", short).await;
    let err = refused
        .deploy(request("balanced"), None, None)
        .await
        .unwrap_err();
    assert!(err.is_busy(), "{err}");
    assert!(matches!(
        err,
        EngineError::History(HistoryError::Busy { .. })
    ));

    // Waits, then deploys.
    let patient = EngineOptions {
        lock_wait: Some(Duration::from_secs(60)),
        ..w.options()
    };
    let second = w.engine_with_options(&services, "", patient).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let waits = Arc::new(Mutex::new(Vec::new()));
    let collector = {
        let waits = waits.clone();
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                if let DeploymentEvent::WaitingForLock(wait) = ev {
                    waits.lock().unwrap().push(wait.to_string());
                }
            }
        })
    };
    let go2 = go.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        std::fs::write(go2, "").unwrap();
    });
    let out = second
        .deploy(request("balanced"), Some(tx), None)
        .await
        .unwrap();
    collector.await.unwrap();
    let first_out = running.await.unwrap().unwrap();
    assert!(out.success && first_out.success);
    let waits = waits.lock().unwrap().clone();
    assert_eq!(waits.len(), 1, "{waits:?}");
    assert!(
        waits[0].starts_with(&format!(
            "waiting for the lock held by deployment {} of ",
            first_out.id
        )),
        "{waits:?}"
    );
    let waited = out
        .report
        .decision_process
        .iter()
        .find_map(|d| match &d.decision {
            Decision::LockWaited {
                held_by, waited_s, ..
            } => Some((held_by.clone(), *waited_s)),
            _ => None,
        })
        .expect("a lock_waited decision");
    let held_by = waited.0.clone().unwrap();
    assert!(
        held_by.starts_with(&format!("deployment {}", first_out.id)),
        "{held_by}"
    );
    assert!(waited.1 >= 0.5, "{waited:?}");
    // Two deployments recorded, the refused run none.
    assert_eq!(second.list(10).await.unwrap().len(), 2);
}

/// A fresh state directory: queries answer "nothing yet" and create nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_on_a_fresh_state_directory_create_nothing() {
    let w = World::new();
    let engine: Engine = w.engine(&w.service("api", &[], "{command: 'true'}")).await;
    assert!(engine.list(10).await.unwrap().is_empty());
    assert!(engine.audit_log(10).await.unwrap().is_empty());
    assert!(!engine.reset_model().await.unwrap());
    let status = engine.model_status().await.unwrap();
    assert_eq!(status.deployments, 0);
    assert!(status.history.unwrap().to_string().starts_with("redb "));
    assert!(matches!(
        engine.report("deploy_0").await,
        Err(EngineError::UnknownDeployment { .. })
    ));
    assert!(!w.state().join("deployment_data").exists());
}

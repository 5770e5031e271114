//! The report renderers with real parts: a real deployment that fails and
//! rolls back, rendered as HTML and opened in headless Chromium (DOM,
//! console, screenshot), as JUnit validated by xmllint against the JUnit
//! XSD, and as Markdown checked against golden files; the history page over
//! real deployments, in Chromium too.
//!
//! Artefacts (HTML, screenshots, JUnit, Markdown) go to
//! `target/test-artifacts/reports/`. `BLESS=1` rewrites the golden files in
//! `host/tests/all/reports/` and `docs/images/report.png`.

use std::path::{Path, PathBuf};
use std::process::Command;

use adeploy::config::Environment;
use adeploy::engine::{Approval, DeploymentRequest, DeploymentSize};
use adeploy::history::History;
use adeploy::report::render::{
    self, Document, Format, HistoryOptions, ModelPoint, document::Outcome,
};

use crate::common::HttpServer;
use crate::common::World;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/all/reports")
}

fn blessing() -> bool {
    std::env::var_os("BLESS").is_some_and(|v| v == "1")
}

/// `target/test-artifacts/reports/NAME` (created).
fn artefacts(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("test-artifacts/reports")
        .join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What headless Chromium made of a page.
struct Browsed {
    dom: String,
    /// Console lines (`:CONSOLE:`): with no script on the page, every one
    /// is a problem (a CSP violation, a failed load, an error).
    console: Vec<String>,
}

/// Opens `page` in headless Chromium: dumps the DOM, collects the console,
/// and writes a 1280×800 screenshot to `screenshot`.
fn chromium(page: &Path, screenshot: &Path) -> Browsed {
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let base = |c: &mut Command| {
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()));
    };
    let mut dump = Command::new("chromium");
    base(&mut dump);
    let out = dump
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("chromium is needed (Debian package `chromium`; .ci/run installs it)");
    assert!(out.status.success(), "chromium --dump-dom failed: {out:?}");
    let mut shot = Command::new("chromium");
    base(&mut shot);
    let _ = std::fs::remove_file(screenshot);
    let s = shot
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg("--window-size=1280,800")
        .arg("--hide-scrollbars")
        .arg(&url)
        .output()
        .unwrap();
    assert!(s.status.success(), "chromium --screenshot failed: {s:?}");
    let png = std::fs::read(screenshot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG screenshot");
    let w = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((w, h), (1280, 800), "screenshot size");
    let console = [&out.stderr, &s.stderr]
        .iter()
        .flat_map(|e| {
            String::from_utf8_lossy(e)
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .filter(|l| {
            l.contains(":CONSOLE")
                || l.contains("Uncaught")
                || l.contains("Content Security Policy")
                || l.contains("ERR_FILE_NOT_FOUND")
                || l.contains(" 404 ")
        })
        .collect();
    Browsed {
        dom: String::from_utf8(out.stdout).unwrap(),
        console,
    }
}

/// Elements of the dumped DOM that carry `class` (a class attribute
/// containing it), each with its `data-status`.
fn with_class(dom: &str, class: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for chunk in dom.split('<').skip(1) {
        let tag = chunk.split('>').next().unwrap_or_default();
        let has = attr(tag, "class").is_some_and(|c| c.split_whitespace().any(|w| w == class));
        if has {
            out.push(attr(tag, "data-status"));
        }
    }
    out
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let end = tag[start..].find('"')?;
    Some(
        tag[start..start + end]
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

/// `xmllint --schema tests/schemas/junit.xsd FILE` succeeds.
fn assert_valid_junit(file: &Path) {
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(repo().join("tests/schemas/junit.xsd"))
        .arg(file)
        .output()
        .expect("xmllint is needed (Debian package `libxml2-utils`; .ci/run installs it)");
    assert!(
        out.status.success(),
        "{} is not valid JUnit: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Compares `actual` with the golden file NAME (rewritten under BLESS=1).
fn golden(name: &str, actual: &str) {
    let path = fixtures().join(name);
    if blessing() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (BLESS=1 writes it)", path.display()));
    assert!(
        expected == actual,
        "{name} differs from the golden file (BLESS=1 rewrites it):\n--- expected\n{expected}\n--- actual\n{actual}"
    );
}

fn service(name: &str, deploy: &str, deps: &[&str], health: &str, timeout_s: u32) -> String {
    format!(
        "  {name}:\n    deploy: '{deploy}'\n    rollback: 'sleep 0.2'\n    depends_on: [{}]\n    health: {health}\n    timeout_s: {timeout_s}\n",
        deps.join(", ")
    )
}

/// A real deployment of four services under `conservative`: db and api
/// deploy, web fails its health check (HTTP 503), docs is never started,
/// api and db are rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_rolled_back_deployment_renders_in_chromium_junit_and_markdown() {
    let w = World::new();
    let down = HttpServer::start(503, "down");
    let ok = "{command: 'true'}";
    let bad = format!(
        "{{http: 'http://127.0.0.1:{}/health', timeout_ms: 300}}",
        down.port
    );
    let services = [
        service("db", "sleep 0.5", &[], ok, 20),
        service("api", "sleep 0.4", &["db"], ok, 20),
        service("web", "sleep 0.3", &["api"], &bad, 1),
        service("docs", "true", &["web"], ok, 20),
    ]
    .concat();
    let engine = w
        .engine_with(&services, "monitoring:\n  sample_interval_ms: 100\n")
        .await;
    let out = engine
        .deploy(
            DeploymentRequest {
                services: ["db", "api", "web", "docs"].map(String::from).to_vec(),
                strategy: Some("conservative".into()),
                environment: Some(Environment::Staging),
                ..DeploymentRequest::default()
            },
            None,
            None,
        )
        .await
        .unwrap();
    assert!(!out.success, "{}", out.report.human_summary());
    let samples =
        adeploy::history::HistoryBackend::samples(engine.history().await.unwrap(), &out.id)
            .await
            .unwrap();
    assert!(samples.len() >= 3, "load samples: {}", samples.len());
    let doc = Document::from_report(&out.report)
        .unwrap()
        .with_resource_samples(&samples);
    let dir = artefacts("failed-rollback");
    std::fs::write(
        dir.join("report.json"),
        render::render(&out.report, Format::Json).unwrap(),
    )
    .unwrap();

    // HTML in Chromium: one bar per step with its status, rollbacks, no
    // console output at all, a screenshot.
    let page = dir.join("report.html");
    std::fs::write(&page, render::render_document(&doc, Format::Html)).unwrap();
    let shot = dir.join("report.png");
    let b = chromium(&page, &shot);
    assert!(b.console.is_empty(), "console: {:#?}", b.console);
    let bars = with_class(&b.dom, "step-bar");
    assert_eq!(bars.len(), out.report.steps.len(), "one bar per step");
    for st in &out.report.steps {
        let status = serde_json::to_value(st.status).unwrap();
        let want = status.as_str().unwrap();
        let n = bars.iter().filter(|s| s.as_deref() == Some(want)).count();
        let expected = out
            .report
            .steps
            .iter()
            .filter(|o| o.status == st.status)
            .count();
        assert_eq!(n, expected, "bars with data-status={want}");
    }
    let statuses: Vec<&str> = bars.iter().map(|s| s.as_deref().unwrap()).collect();
    assert!(
        statuses.contains(&"failed") && statuses.contains(&"skipped"),
        "{statuses:?}"
    );
    let rollbacks = with_class(&b.dom, "rollback-bar");
    let rolled = out
        .report
        .steps
        .iter()
        .filter(|s| s.rolled_back.is_some())
        .count();
    assert_eq!(
        rollbacks.len(),
        rolled,
        "one rollback bar per rolled-back step"
    );
    assert!(rolled >= 2, "web, api and db are rolled back: {rolled}");
    assert!(
        b.dom.contains("id=\"resource-chart\""),
        "the load chart is drawn"
    );
    assert!(
        b.dom.contains("role=\"img\"") && b.dom.contains("<desc id=\"timeline-chart-desc\">"),
        "charts carry text alternatives"
    );
    let decisions = with_class(&b.dom, "decision");
    assert_eq!(decisions.len(), out.report.decision_process.len());
    if blessing() {
        std::fs::create_dir_all(repo().join("docs/images")).unwrap();
        std::fs::copy(&shot, repo().join("docs/images/report.png")).unwrap();
    }

    // JUnit: valid against the XSD; the failure and the rollbacks are in it.
    let xml = render::render_document(&doc, Format::Junit);
    let junit = dir.join("report.junit.xml");
    std::fs::write(&junit, &xml).unwrap();
    assert_valid_junit(&junit);
    assert_eq!(xml.matches("<testcase ").count(), out.report.steps.len());
    assert_eq!(xml.matches("<failure ").count(), 1, "{xml}");
    let web = &xml[xml.find("<testcase name=\"web\"").unwrap()..];
    let web = &web[..web.find("</testcase>").unwrap()];
    assert!(web.contains("<failure ") && web.contains("503"), "{web}");
    assert!(xml.contains("deployed, then rolled back"), "{xml}");

    // Markdown: the table names every step; the failure is marked.
    let md = render::render_document(&doc, Format::Markdown);
    std::fs::write(dir.join("report.md"), &md).unwrap();
    assert!(md.starts_with("### ❌ adeploy "), "{md}");
    for name in ["db", "api", "web", "docs"] {
        assert!(md.contains(&format!("| {name} |")), "{name} in\n{md}");
    }
    assert!(md.contains("❌ failed"), "{md}");
}

/// Hostile strings (from plugins, commands, configs) in every field stay
/// text: no element, no attribute, no console output, valid XML.
#[test]
fn hostile_strings_stay_text_in_every_format() {
    let evil = "<script>alert(1)</script>\"><img src=x onerror=alert(2)>&amp;\u{1b}[31m|**x**";
    let mut v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("with_analysis.json")).unwrap(),
    )
    .unwrap();
    v["deployment_summary"]["services"] = serde_json::json!([evil]);
    v["deployment_summary"]["strategy_used"] = evil.into();
    for st in v["steps"].as_array_mut().unwrap() {
        st["service"] = evil.into();
        st["host"] = evil.into();
        st["message"] = evil.into();
    }
    for d in v["decision_process"].as_array_mut().unwrap() {
        d["details"]["note"] = evil.into();
    }
    for a in v["analysis"].as_array_mut().unwrap() {
        a["metric"] = evil.into();
        a["message"] = evil.into();
    }
    v["lessons_learned"] = serde_json::json!([evil]);
    let doc = Document::from_value(v).unwrap();

    let html = render::render_document(&doc, Format::Html);
    for bad in ["<script", "<img", "onerror=alert(2)>"] {
        assert!(!html.contains(bad), "{bad} in the HTML");
    }
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let dir = artefacts("hostile");
    let page = dir.join("report.html");
    std::fs::write(&page, &html).unwrap();
    let b = chromium(&page, &dir.join("report.png"));
    assert!(b.console.is_empty(), "console: {:#?}", b.console);
    assert!(!b.dom.contains("<script") && !b.dom.contains("<img"));
    assert_eq!(with_class(&b.dom, "step-bar").len(), doc.steps.len());

    let xml = render::render_document(&doc, Format::Junit);
    let junit = dir.join("report.junit.xml");
    std::fs::write(&junit, &xml).unwrap();
    assert_valid_junit(&junit);
    assert!(!xml.contains("<script") && !xml.contains('\u{1b}'));

    let md = render::render_document(&doc, Format::Markdown);
    assert!(!md.contains("<script") && !md.contains("<img"), "{md}");
    assert!(!md.contains("**x**"), "{md}");
}

/// The checks above can fail: a page with a script and a missing image
/// produces console lines, and an invalid JUnit file fails xmllint.
#[test]
fn the_browser_and_schema_checks_catch_broken_output() {
    let dir = artefacts("control");
    let page = dir.join("broken.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><head><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'\"><title>x</title></head><body><script>nope()</script><img src=\"missing.png\"></body></html>",
    )
    .unwrap();
    let b = chromium(&page, &dir.join("broken.png"));
    assert!(!b.console.is_empty(), "the console check sees violations");
    let bad = dir.join("bad.junit.xml");
    std::fs::write(&bad, "<testsuites><testsuite name=\"x\"/></testsuites>").unwrap();
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(repo().join("tests/schemas/junit.xsd"))
        .arg(&bad)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "xmllint rejects a suite without its attributes"
    );
}

/// Golden Markdown and JUnit of recorded reports: `failed_rollback.json`
/// (a real run's report file) and `with_analysis.json` (the same run with
/// the fields phase 2 adds: analysis verdicts, per-step phases, the
/// deployment's process usage, versions).
#[test]
fn markdown_and_junit_of_recorded_reports_match_the_golden_files() {
    for name in ["failed_rollback", "with_analysis"] {
        let text = std::fs::read_to_string(fixtures().join(format!("{name}.json"))).unwrap();
        let doc = Document::from_json(&text).unwrap();
        golden(
            &format!("{name}.md"),
            &render::render_document(&doc, Format::Markdown),
        );
        let xml = render::render_document(&doc, Format::Junit);
        golden(&format!("{name}.junit.xml"), &xml);
        let file = artefacts("golden").join(format!("{name}.junit.xml"));
        std::fs::write(&file, &xml).unwrap();
        assert_valid_junit(&file);
    }
}

/// The optional sections render when present: analysis charts with their
/// threshold or baseline, phase bars and probes, the process charts.
#[test]
fn analysis_phases_and_process_usage_render_when_present() {
    let text = std::fs::read_to_string(fixtures().join("with_analysis.json")).unwrap();
    let doc = Document::from_json(&text).unwrap();
    assert!(!doc.analysis.is_empty() && doc.process_usage.is_some());
    let html = render::render_document(&doc, Format::Html);
    let dir = artefacts("with-analysis");
    let page = dir.join("report.html");
    std::fs::write(&page, &html).unwrap();
    let b = chromium(&page, &dir.join("report.png"));
    assert!(b.console.is_empty(), "console: {:#?}", b.console);
    assert_eq!(with_class(&b.dom, "step-bar").len(), doc.steps.len());
    for (i, a) in doc.analysis.iter().enumerate() {
        let drawn = b.dom.contains(&format!("id=\"analysis-chart-{i}\""));
        assert_eq!(
            drawn,
            !a.samples.is_empty(),
            "{}: a chart when it has samples",
            a.metric
        );
    }
    let verdicts: Vec<&str> = doc.analysis.iter().map(|a| a.verdict.as_str()).collect();
    assert!(
        verdicts.contains(&"fail") && verdicts.contains(&"pass"),
        "{verdicts:?}"
    );
    assert!(b.dom.contains("class=\"threshold\""), "a threshold line");
    assert!(
        b.dom.contains("id=\"process-cpu-chart\"") && b.dom.contains("id=\"process-memory-chart\"")
    );
    let phases = with_class(&b.dom, "phase-bar").len();
    let expected: usize = doc
        .steps
        .iter()
        .map(|s| {
            s.phases
                .iter()
                .filter(|p| p.kind != "rollback" && p.started_at.is_some())
                .count()
        })
        .sum();
    assert!(expected > 0);
    assert_eq!(phases, expected, "one bar per recorded phase");
    let failed_steps = doc
        .steps
        .iter()
        .filter(|s| s.outcome() == Outcome::Failed)
        .count();
    assert_eq!(
        with_class(&b.dom, "step-bar")
            .iter()
            .filter(|s| s.as_deref() == Some("failed"))
            .count(),
        failed_steps
    );
}

/// 36 real deployments (three strategies, two environments, some failing,
/// the model retrained every few) → the analytics page in Chromium.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_page_over_real_deployments_renders_in_chromium() {
    let w = World::new();
    let flaky = w.dir.path().join("fail-web");
    let services = format!(
        "  api:\n    deploy: 'true'\n    timeout_s: 20\n  web:\n    deploy: 'test ! -e {}'\n    rollback: 'true'\n    depends_on: [api]\n    timeout_s: 20\n",
        flaky.display()
    );
    let mut options = w.options();
    options.fixed_metrics = Some(adeploy::monitor::Snapshot {
        timestamp: chrono::Utc::now(),
        cpu_percent: 20.0,
        memory_percent: 40.0,
        disk_percent: 30.0,
        load_per_core: 0.2,
        network_latency_ms: None,
    });
    let engine = w
        .engine_with_options(
            &services,
            "ml_config:\n  min_training_samples: 6\n  retrain_frequency: 6\n",
            options,
        )
        .await;
    let strategies = ["conservative", "balanced", "aggressive"];
    let envs = [Environment::Staging, Environment::Development];
    for i in 0..36 {
        // aggressive fails every other time in staging; the rest now and then.
        let strategy = strategies[i % 3];
        let env = envs[(i / 3) % 2];
        let fail =
            (strategy == "aggressive" && env == Environment::Staging && i % 2 == 0) || i % 11 == 0;
        if fail {
            std::fs::write(&flaky, "").unwrap();
        } else {
            let _ = std::fs::remove_file(&flaky);
        }
        engine
            .deploy(
                DeploymentRequest {
                    services: vec!["api".into(), "web".into()],
                    strategy: Some(strategy.into()),
                    environment: Some(env),
                    size: DeploymentSize::Small,
                    approval: Some(Approval::Flag {
                        user: "test".into(),
                    }),
                    ..DeploymentRequest::default()
                },
                None,
                None,
            )
            .await
            .unwrap();
        engine.wait_for_learning().await;
    }
    let history = History::open(&w.state()).unwrap();
    let records = history.all_deployments().unwrap();
    assert_eq!(records.len(), 36);
    let mut log = Vec::new();
    for r in &records {
        log.extend(history.decisions(&r.id).unwrap());
    }
    let model = ModelPoint::from_log(&log);
    assert!(
        model.len() >= 2,
        "retrainings seen by later deployments: {model:?}"
    );
    let outcomes = adeploy::engine::learn::outcomes(&records);
    let opts = HistoryOptions {
        model,
        patterns: adeploy::ml::failure_patterns(&outcomes),
        ..HistoryOptions::default()
    };
    let analytics = render::HistoryAnalytics::compute(&records, &opts);
    assert_eq!(analytics.deployments, 36);
    assert_eq!(analytics.groups.len(), 6, "strategy × environment");
    let failed = records.iter().filter(|r| r.success == Some(false)).count();
    assert!(failed >= 5, "{failed}");
    assert_eq!(analytics.deployments - analytics.succeeded, failed);
    let web = analytics
        .failures_by_service
        .iter()
        .find(|f| f.0 == "web")
        .unwrap();
    assert_eq!(web.1, failed, "every failure is web's");

    let html = render::history_page(&records, &opts);
    let dir = artefacts("history");
    let page = dir.join("history.html");
    std::fs::write(&page, &html).unwrap();
    let b = chromium(&page, &dir.join("history.png"));
    assert!(b.console.is_empty(), "console: {:#?}", b.console);
    assert!(with_class(&b.dom, "cell").len() >= 6, "heat-map cells");
    assert!(b.dom.matches("<tr><td>").count() >= 6, "table rows");
    assert!(b.dom.contains("id=\"model-chart\"") && b.dom.contains("id=\"success-heatmap\""));
    assert!(
        b.dom.contains("id=\"duration-chart-0\""),
        "a duration trend"
    );
    assert!(b.dom.contains("id=\"failure-chart\""));
}

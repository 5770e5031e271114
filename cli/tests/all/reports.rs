//! Reports people and CI read, through the CLI: `report ID --format
//! json|html|markdown|junit [--output FILE]`, `run --report-format` writing
//! them beside the JSON report, the Markdown summary appended to
//! `$GITHUB_STEP_SUMMARY`, and `history --format html|json`. JUnit is
//! validated by xmllint against tests/schemas/junit.xsd.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{World, adeploy, adeploy_command};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
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

/// The timeline's step bars of an HTML report: (step, status) per bar.
fn step_bars(html: &str) -> Vec<(String, String)> {
    html.match_indices("class=\"bar step-bar")
        .map(|(i, _)| {
            let tag = &html[i..i + html[i..].find('>').unwrap()];
            let attr = |name: &str| {
                let at = tag.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                tag[at..at + tag[at..].find('"').unwrap()].to_string()
            };
            (attr("data-step"), attr("data-status"))
        })
        .collect()
}

/// A failed, rolled-back deployment of `api` (ok) and `web` (fails), run
/// with `--report-format html,junit,markdown` and a step summary file that
/// already has a line (GitHub appends every step's summary to one file).
#[test]
fn run_writes_the_formats_beside_the_report_and_appends_the_step_summary() {
    let w = World::new();
    let ok = w.service("api", &[], "{command: 'true'}");
    let bad = w
        .service("web", &["api"], "{command: 'false'}")
        .replace("timeout_s: 20", "timeout_s: 1");
    let cfg = w.write_config(&(ok + &bad));
    let state = w.state();
    let summary = w.dir.path().join("step_summary.md");
    std::fs::write(&summary, "# earlier step\n").unwrap();
    let o = adeploy_command(w.dir.path(), &state)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .args(["run", "--config"])
        .arg(&cfg)
        .args([
            "--services",
            "api",
            "web",
            "--strategy",
            "balanced",
            "--environment",
            "staging",
            "--report-format",
            "html,junit,markdown",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let id = v["report"]["deployment_summary"]["id"].as_str().unwrap();
    let json_path = PathBuf::from(v["report_path"].as_str().unwrap());
    let files: Vec<PathBuf> = v["report_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| PathBuf::from(p.as_str().unwrap()))
        .collect();
    let stem = format!("deployment_report_{id}");
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            format!("{stem}.html"),
            format!("{stem}.junit.xml"),
            format!("{stem}.md")
        ]
    );
    for f in &files {
        assert_eq!(f.parent(), json_path.parent(), "beside the JSON report");
    }

    // HTML: one bar per step, with its status.
    let html = std::fs::read_to_string(&files[0]).unwrap();
    assert_eq!(
        step_bars(&html),
        [
            ("api".to_string(), "succeeded".to_string()),
            ("web".to_string(), "failed".to_string())
        ]
    );
    assert!(!html.contains("<script"), "no script in the page");
    // JUnit: valid, with the failure.
    assert_valid_junit(&files[1]);
    let xml = std::fs::read_to_string(&files[1]).unwrap();
    assert!(xml.contains("<failure") && xml.contains("web"), "{xml}");
    // Markdown: the summary, and the same text appended to the step summary.
    let md = std::fs::read_to_string(&files[2]).unwrap();
    // Markdown escapes the `_` of the id.
    let md_id = id.replace('_', "\\_");
    assert!(md.contains(&md_id) && md.contains("| Wave |"), "{md}");
    assert_eq!(
        v["step_summary"].as_str().unwrap(),
        summary.to_str().unwrap()
    );
    let appended = std::fs::read_to_string(&summary).unwrap();
    assert!(appended.starts_with("# earlier step\n"), "{appended}");
    assert!(appended.contains(&md), "{appended}");

    // The human rendering names the files too.
    let o = adeploy_command(w.dir.path(), &state)
        .env_remove("GITHUB_STEP_SUMMARY")
        .args(["run", "--config"])
        .arg(&cfg)
        .args([
            "--services",
            "api",
            "--environment",
            "staging",
            "--report-format",
            "markdown",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let md_line = out
        .lines()
        .find(|l| l.trim_start().starts_with("report:") && l.ends_with(".md"))
        .unwrap_or_else(|| panic!("{out}"));
    let md_path = md_line.trim_start().trim_start_matches("report:").trim();
    assert!(Path::new(md_path).is_file(), "{md_path}");
    assert!(
        !out.contains("step summary"),
        "no GITHUB_STEP_SUMMARY: {out}"
    );
}

#[test]
fn report_renders_each_format_and_writes_output_files() {
    let w = World::new();
    let ok = w.service("api", &[], "{command: 'true'}");
    let bad = w
        .service("web", &["api"], "{command: 'false'}")
        .replace("timeout_s: 20", "timeout_s: 1");
    let cfg = w.write_config(&(ok + &bad));
    let cfg = cfg.to_str().unwrap();
    let state = w.state();
    let cwd = w.dir.path();
    let o = adeploy(
        &[
            "run",
            "--config",
            cfg,
            "--services",
            "api",
            "web",
            "--strategy",
            "balanced",
            "--environment",
            "staging",
            "--json",
        ],
        cwd,
        &state,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let id = v["report"]["deployment_summary"]["id"].as_str().unwrap();
    assert_eq!(v["report_files"], serde_json::json!([]));
    let json_file = std::fs::read_to_string(v["report_path"].as_str().unwrap()).unwrap();

    // json: the file as written.
    let o = adeploy(&["report", id, "--format", "json"], cwd, &state);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), json_file);

    // html to a file: the page, with its bars.
    let page = cwd.join("out/report.html");
    let o = adeploy(
        &[
            "report",
            id,
            "--format",
            "html",
            "--output",
            page.to_str().unwrap(),
        ],
        cwd,
        &state,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("wrote {}\n", page.display()));
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(step_bars(&html).len(), 2, "one bar per step");
    assert!(html.contains("<svg"), "inline SVG charts");

    // junit on stdout: valid against the XSD.
    let o = adeploy(&["report", id, "--format", "junit"], cwd, &state);
    assert!(o.status.success(), "{}", stderr(&o));
    let xml = cwd.join("report.junit.xml");
    std::fs::write(&xml, &o.stdout).unwrap();
    assert_valid_junit(&xml);

    // markdown: non-empty, and decisions as sentences.
    let o = adeploy(&["report", id, "--format", "markdown"], cwd, &state);
    assert!(o.status.success(), "{}", stderr(&o));
    let md = stdout(&o);
    assert!(
        md.contains(&id.replace('_', "\\_")) && md.contains("Decision flow"),
        "{md}"
    );
    assert!(!md.contains("{\""), "no JSON blobs: {md}");

    // A format that does not exist is refused at argument parsing.
    let o = adeploy(&["report", id, "--format", "pdf"], cwd, &state);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("'pdf'"), "{}", stderr(&o));
}

#[test]
fn bad_report_format_names_exit_2_before_anything_is_written() {
    let w = World::new();
    let cfg = w.write_config(&w.service("api", &[], "{command: 'true'}"));
    let state = w.state();
    let o = adeploy(
        &[
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--services",
            "api",
            "--report-format",
            "html,pdf",
        ],
        w.dir.path(),
        &state,
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("'pdf'"), "{}", stderr(&o));
    assert!(!state.exists(), "nothing written");
    assert!(w.order().is_empty(), "nothing deployed");
    let o = adeploy(&["history", "--format", "xml"], w.dir.path(), &state);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn history_renders_the_analytics_as_html_and_json() {
    let w = World::new();
    let ok = w.service("api", &[], "{command: 'true'}");
    let bad = w
        .service("web", &["api"], "{command: 'false'}")
        .replace("timeout_s: 20", "timeout_s: 1");
    let cfg = w.write_config(&(ok + &bad));
    let cfg = cfg.to_str().unwrap();
    let state = w.state();
    let cwd = w.dir.path();
    // Before any deployment: an empty page, not an error.
    let o = adeploy(&["history", "--format", "json"], cwd, &state);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["deployments"], 0);
    for services in [&["api"][..], &["api", "web"], &["api"]] {
        let mut args = vec!["run", "--config", cfg, "--environment", "staging"];
        args.push("--services");
        args.extend_from_slice(services);
        adeploy(&args, cwd, &state);
    }
    adeploy(
        &["run", "--config", cfg, "--services", "api", "--dry-run"],
        cwd,
        &state,
    );

    let o = adeploy(&["history", "--format", "json"], cwd, &state);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["deployments"], 3, "{v}");
    assert_eq!(v["succeeded"], 2, "{v}");
    let web = v["failures_by_service"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f[0] == "web")
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(web[1], 1, "{v}");

    let page = cwd.join("history.html");
    let o = adeploy(
        &["history", "--format", "html", "-o", page.to_str().unwrap()],
        cwd,
        &state,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"), "{}", &html[..80]);
    assert!(html.contains("<svg") && html.contains("balanced"), "charts");

    let o = adeploy(&["history"], cwd, &state);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.starts_with("3 deployments, 2 succeeded (67%)"),
        "{text}"
    );
}

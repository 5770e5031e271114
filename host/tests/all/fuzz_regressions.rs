//! Inputs the fuzz targets in `fuzz/` found, kept as tests: each one broke a
//! property the targets check (no panic; an error is one line naming the
//! file). The exact crashing inputs live in `host/tests/fuzz_crashes/`,
//! named `<target>-crash-<hash prefix>`; each test also has a minimal case.

use std::path::Path;

use adeploy::config::Config;
use adeploy::history::decode_deployment;
use adeploy::plugin::Manifest;

/// What every fuzz target asserts about an error message.
fn assert_one_line_naming(msg: &str, file: &str) {
    assert!(msg.contains(file), "error does not name {file}: {msg:?}");
    assert!(
        !msg.contains(['\n', '\r']),
        "error is not one line: {msg:?}"
    );
}

/// `fuzz/artifacts/manifest/crash-48fe486a...`: a TOML string value spanning
/// lines (`"""...`) as `kind` made the unknown-variant message span lines.
#[test]
fn manifest_unknown_kind_with_newlines_gives_a_one_line_error() {
    let crash = include_bytes!("../fuzz_crashes/manifest-crash-48fe486a");
    // The target's first byte picks the format: `T` (even) is TOML.
    let text = std::str::from_utf8(&crash[1..]).unwrap();
    let err = Manifest::parse(text, Path::new("plugin.toml")).unwrap_err();
    assert_one_line_naming(&err.to_string(), "plugin.toml");

    let err = Manifest::parse("name = \"x\"\nkind = \"a\\nb\"\n", Path::new("x.toml"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "plugin 'x': bad manifest x.toml:2:8: unknown variant `a\\nb`, expected one of `detector`, `strategy`, `hook`, `metric-provider`"
    );
    let err = Manifest::parse("name: y\nkind: \"a\\r\\nb\"\n", Path::new("y.yaml"))
        .unwrap_err()
        .to_string();
    assert_one_line_naming(&err, "y.yaml:2:7");
    assert!(err.contains("unknown variant `a\\r\\nb`"), "{err}");
}

/// `fuzz/artifacts/history_record/crash-1a7c821a...`: a stored record whose
/// `status` holds a carriage return made `HistoryError::Undecodable` span lines.
#[test]
fn undecodable_record_with_control_characters_gives_a_one_line_error() {
    let crash = include_bytes!("../fuzz_crashes/history_record-crash-1a7c821a");
    let db = Path::new("state/deployment_history.db");
    let err = decode_deployment(db, "d1", crash).unwrap_err().to_string();
    assert_one_line_naming(&err, "state/deployment_history.db");
    assert!(err.contains("record deployments/d1"), "{err}");

    let record = br#"{"id":"d1","started_at":"2025-01-01T12:00:00Z","status":"a\nb"}"#;
    let err = decode_deployment(db, "d1", record).unwrap_err().to_string();
    assert_one_line_naming(&err, "state/deployment_history.db");
    assert!(err.contains("unknown variant `a\\nb`"), "{err}");
}

/// Found by the same property on the config target's error type: a quoted
/// key or value with a newline in a config error.
#[test]
fn config_errors_quoting_newlines_are_one_line() {
    let file = Path::new("my.yaml");
    let err = Config::from_layers("thresholds:\n  \"a\\nb\": 1\n", file)
        .unwrap_err()
        .to_string();
    assert_one_line_naming(&err, "my.yaml:2:3");
    assert!(err.contains("unknown field `a\\nb`"), "{err}");
    let err = Config::from_layers(
        "services:\n  \"x\\ny\": {deploy: d, depends_on: [\"z\\rw\"]}\n",
        file,
    )
    .unwrap_err()
    .to_string();
    assert_one_line_naming(&err, "my.yaml");
    assert!(err.contains("unknown service 'z\\rw'"), "{err}");
}

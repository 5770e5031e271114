//! The versions a deployment puts out, and the ones they replace.
//!
//! A service's version is `services.<name>.version`, overridden per
//! deployment by [`DeploymentRequest::versions`] (`run --set-version`). The
//! version it replaces is not configured but remembered: the version of the
//! service's step in the newest deployment that succeeded. Both are exported
//! to the service's commands (`ADEPLOY_VERSION`, `ADEPLOY_PREVIOUS_VERSION`),
//! filled into health expectations and analysis queries, and recorded on
//! every step, so a report says what went out and what a rollback returned
//! to.

use std::collections::BTreeMap;

use crate::config::{Config, Environment};
use crate::history::{DeploymentRecord, StepStatus};

/// One service's versions in a deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ServiceVersion {
    /// What this deployment puts out (none: the service declares no version).
    pub version: Option<String>,
    /// The last version deployed successfully (none: never, or never with a
    /// version).
    pub previous: Option<String>,
}

/// The versions of the requested services in `config` (the deployment's
/// own, with the request's overrides already set and checked), and the
/// previous ones from `past` (newest first) in `environment`.
pub(crate) fn resolve(
    config: &Config,
    services: &[String],
    environment: Environment,
    past: &[DeploymentRecord],
) -> BTreeMap<String, ServiceVersion> {
    services
        .iter()
        .map(|name| {
            let v = ServiceVersion {
                version: config.version_of(name).map(str::to_string),
                previous: previous_version(name, environment, past),
            };
            (name.clone(), v)
        })
        .collect()
}

/// The version of `service` in the newest successful deployment of it to
/// `environment` that recorded one.
pub(crate) fn previous_version(
    service: &str,
    environment: Environment,
    past: &[DeploymentRecord],
) -> Option<String> {
    past.iter()
        .filter(|r| r.success == Some(true) && !r.dry_run && r.environment == environment.as_str())
        .find_map(|r| {
            r.steps
                .iter()
                .filter(|s| s.service == service && s.status == StepStatus::Succeeded)
                .find_map(|s| s.version.clone())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{DeploymentStatus, StepRecord};

    fn record(id: &str, ok: bool, service: &str, version: Option<&str>) -> DeploymentRecord {
        let mut r = DeploymentRecord::running(id, chrono::Utc::now());
        r.environment = "staging".into();
        let mut step = StepRecord::pending(service, None, 1);
        step.status = if ok {
            StepStatus::Succeeded
        } else {
            StepStatus::Failed
        };
        step.version = version.map(str::to_string);
        r.steps = vec![step];
        r.finish(
            if ok {
                DeploymentStatus::Succeeded
            } else {
                DeploymentStatus::RolledBack
            },
            chrono::Utc::now(),
        );
        r
    }

    #[test]
    fn the_previous_version_is_the_newest_successful_one() {
        let past = vec![
            record("d4", false, "api", Some("1.3")),
            record("d3", true, "web", Some("9.0")),
            record("d2", true, "api", Some("1.2")),
            record("d1", true, "api", Some("1.1")),
        ];
        let staging = Environment::Staging;
        assert_eq!(
            previous_version("api", staging, &past).as_deref(),
            Some("1.2")
        );
        assert_eq!(
            previous_version("web", staging, &past).as_deref(),
            Some("9.0")
        );
        assert_eq!(previous_version("db", staging, &past), None);
        assert_eq!(
            previous_version("api", Environment::Production, &past),
            None
        );
        let unversioned = vec![record("d1", true, "api", None)];
        assert_eq!(previous_version("api", staging, &unversioned), None);
    }

    #[test]
    fn overrides_win_and_the_previous_version_comes_from_the_history() {
        let mut config = Config::from_layers(
            "services:\n  api: {deploy: 'true', version: '1.0'}\n  web: {deploy: 'true'}\n",
            std::path::Path::new("c.yaml"),
        )
        .unwrap();
        config.set_versions(&["web=2.0".parse().unwrap()]).unwrap();
        let services = vec!["api".to_string(), "web".to_string()];
        let past = [record("d1", true, "api", Some("0.9"))];
        let v = resolve(&config, &services, Environment::Staging, &past);
        assert_eq!(v["api"].version.as_deref(), Some("1.0"));
        assert_eq!(v["api"].previous.as_deref(), Some("0.9"));
        assert_eq!(v["web"].version.as_deref(), Some("2.0"));
        assert_eq!(v["web"].previous, None);
        let e = config
            .set_versions(&["nope=1".parse().unwrap()])
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("--set-version nope: unknown service"),
            "{e}"
        );
    }
}

//! `environments.<env>`: the settings that differ per environment.
//!
//! The seed asks to "customize thresholds for each environment type" and to
//! "enable experimental features only in development". A config says so in
//! one place:
//!
//! ```yaml
//! environments:
//!   production:
//!     thresholds: { high_cpu: 60 }
//!     resource_limits: { aggressive: { concurrency: 2 } }
//!   development:
//!     experimental: { enable_canary_deployments: true }
//! ```
//!
//! Why overrides and not whole sections: an environment usually changes one
//! or two values; repeating every threshold per environment would let the
//! copies drift. What an environment does not say comes from the top-level
//! section. The engine asks for the [`EffectiveSettings`] once the
//! environment is detected and names every override it applied in the
//! decision log (`environment_settings`) and in `diagnostics`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{
    Alerts, Config, ConfigError, Environment, Experimental, Hooks, ResourceLimits, Thresholds,
};

/// The settings of one environment: the top-level sections with that
/// environment's overrides applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EffectiveSettings {
    pub environment: Environment,
    pub thresholds: Thresholds,
    pub resource_limits: BTreeMap<String, ResourceLimits>,
    pub experimental: Experimental,
    pub alerts: Alerts,
    pub hooks: Hooks,
    /// What the environment changed, in key order.
    pub overrides: Vec<Override>,
}

/// One setting an environment changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Override {
    /// The key it changes, e.g. `thresholds.high_cpu`.
    pub key: String,
    /// Where it is set, e.g. `environments.production.thresholds.high_cpu`.
    pub source: String,
    /// The value that applies in this environment.
    pub value: serde_json::Value,
    /// The top-level value it replaces (`null` for a new strategy entry).
    pub default: serde_json::Value,
}

impl std::fmt::Display for Override {
    /// `thresholds.high_cpu = 60 (default 80)`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} = {}", self.key, self.value)?;
        if !self.default.is_null() {
            write!(f, " (default {})", self.default)?;
        }
        Ok(())
    }
}

impl EffectiveSettings {
    /// `config` with these settings in place of its top-level `thresholds`,
    /// `resource_limits`, `experimental`, `alerts` and `hooks`: what a
    /// deployment to [`EffectiveSettings::environment`] reads, so every
    /// reader of those sections sees the environment's values without
    /// knowing about environments.
    pub fn apply_to(&self, config: &mut Config) {
        config.thresholds = self.thresholds.clone();
        config.resource_limits = self.resource_limits.clone();
        config.experimental = self.experimental.clone();
        config.alerts = self.alerts.clone();
        config.hooks = self.hooks.clone();
    }
}

/// Records `value` over `*slot` when given, with the override it makes.
fn apply<T: Clone + Serialize>(
    slot: &mut T,
    value: Option<&T>,
    key: String,
    env: Environment,
    out: &mut Vec<Override>,
) {
    if let Some(v) = value {
        out.push(Override {
            source: format!("environments.{env}.{key}"),
            key,
            value: serde_json::to_value(v).unwrap_or_default(),
            default: serde_json::to_value(&*slot).unwrap_or_default(),
        });
        *slot = v.clone();
    }
}

impl Config {
    /// The settings that apply in `env`: `thresholds`, `resource_limits`,
    /// `experimental`, `alerts` and `hooks` with `environments.<env>` applied.
    /// An environment without an entry gets the top-level sections unchanged
    /// (and no overrides).
    pub fn for_environment(&self, env: Environment) -> EffectiveSettings {
        let mut s = EffectiveSettings {
            environment: env,
            thresholds: self.thresholds.clone(),
            resource_limits: self.resource_limits.clone(),
            experimental: self.experimental.clone(),
            alerts: self.alerts.clone(),
            hooks: self.hooks.clone(),
            overrides: Vec::new(),
        };
        let Some(e) = self.environments.get(&env) else {
            return s;
        };
        let out = &mut s.overrides;
        let t = &e.thresholds;
        let th = &mut s.thresholds;
        apply(
            &mut th.high_cpu,
            t.high_cpu.as_ref(),
            "thresholds.high_cpu".into(),
            env,
            out,
        );
        apply(
            &mut th.critical_memory,
            t.critical_memory.as_ref(),
            "thresholds.critical_memory".into(),
            env,
            out,
        );
        apply(
            &mut th.max_deployment_time,
            t.max_deployment_time.as_ref(),
            "thresholds.max_deployment_time".into(),
            env,
            out,
        );
        apply(
            &mut th.min_free_disk_percent,
            t.min_free_disk_percent.as_ref(),
            "thresholds.min_free_disk_percent".into(),
            env,
            out,
        );
        for (strategy, l) in &e.resource_limits {
            let known = s.resource_limits.contains_key(strategy);
            let entry = s.resource_limits.entry(strategy.clone()).or_default();
            for (field, slot, value) in [
                ("cpu_limit", &mut entry.cpu_limit, l.cpu_limit),
                ("memory_limit", &mut entry.memory_limit, l.memory_limit),
            ] {
                let before = *slot;
                apply(
                    slot,
                    value.as_ref(),
                    format!("resource_limits.{strategy}.{field}"),
                    env,
                    out,
                );
                if !known
                    && let Some(o) = out.last_mut()
                    && o.default == serde_json::json!(before)
                {
                    o.default = serde_json::Value::Null;
                }
            }
            let before = entry.concurrency;
            apply(
                &mut entry.concurrency,
                l.concurrency.as_ref(),
                format!("resource_limits.{strategy}.concurrency"),
                env,
                out,
            );
            if !known
                && let Some(o) = out.last_mut()
                && o.default == serde_json::json!(before)
            {
                o.default = serde_json::Value::Null;
            }
        }
        let x = &e.experimental;
        let ex = &mut s.experimental;
        apply(
            &mut ex.enable_predictive_scaling,
            x.enable_predictive_scaling.as_ref(),
            "experimental.enable_predictive_scaling".into(),
            env,
            out,
        );
        apply(
            &mut ex.enable_canary_deployments,
            x.enable_canary_deployments.as_ref(),
            "experimental.enable_canary_deployments".into(),
            env,
            out,
        );
        apply(
            &mut ex.enable_rollback_prediction,
            x.enable_rollback_prediction.as_ref(),
            "experimental.enable_rollback_prediction".into(),
            env,
            out,
        );
        apply(
            &mut s.alerts.consecutive_failures,
            e.alerts.consecutive_failures.as_ref(),
            "alerts.consecutive_failures".into(),
            env,
            out,
        );
        apply(
            &mut s.hooks.pre_deployment_scripts,
            e.hooks.pre_deployment_scripts.as_ref(),
            "hooks.pre_deployment_scripts".into(),
            env,
            out,
        );
        apply(
            &mut s.hooks.post_deployment_scripts,
            e.hooks.post_deployment_scripts.as_ref(),
            "hooks.post_deployment_scripts".into(),
            env,
            out,
        );
        s
    }

    /// True when some environment (or the top level) turns the experimental
    /// canary strategy on: the plugin set must register it before the
    /// environment is known, and the selector then offers it only where the
    /// effective setting is on.
    pub fn canary_anywhere(&self) -> bool {
        self.experimental.enable_canary_deployments
            || self
                .environments
                .values()
                .any(|e| e.experimental.enable_canary_deployments == Some(true))
    }

    /// Checks every environment's effective settings with the rules of the
    /// top-level sections; errors point at the environment's key.
    pub(super) fn validate_environments(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        for (env, e) in &self.environments {
            let err = |keys: &[&str], message: String| {
                let mut full = vec!["environments", env.as_str()];
                full.extend_from_slice(keys);
                super::error_at(path, text, &full, message)
            };
            for (strategy, l) in &e.resource_limits {
                if !self.resource_limits.contains_key(strategy)
                    && (l.cpu_limit.is_none()
                        || l.memory_limit.is_none()
                        || l.concurrency.is_none())
                {
                    return Err(err(
                        &["resource_limits", strategy],
                        format!(
                            "`{strategy}` has no top-level resource_limits entry, so this one needs cpu_limit, memory_limit and concurrency"
                        ),
                    ));
                }
                let effective = self.for_environment(*env);
                if let Some(limits) = effective.resource_limits.get(strategy)
                    && let Err((field, message)) = super::check_limits(limits)
                {
                    return Err(err(&["resource_limits", strategy, field], message));
                }
            }
            let t = &e.thresholds;
            for (field, v) in [
                ("high_cpu", t.high_cpu),
                ("critical_memory", t.critical_memory),
                ("min_free_disk_percent", t.min_free_disk_percent),
            ] {
                if let Some(v) = v
                    && !(v.is_finite() && v >= 0.0)
                {
                    return Err(err(
                        &["thresholds", field],
                        format!("must be a percentage, got {v}"),
                    ));
                }
            }
            if e.thresholds.max_deployment_time == Some(0) {
                return Err(err(
                    &["thresholds", "max_deployment_time"],
                    "must be at least 1 (minutes)".to_string(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
environments:
  production:
    thresholds:
      high_cpu: 60
    resource_limits:
      aggressive: { concurrency: 2 }
    experimental:
      enable_rollback_prediction: true
    hooks:
      post_deployment_scripts: ['./smoke.sh']
  development:
    experimental: { enable_canary_deployments: true }
    resource_limits:
      canary: { cpu_limit: 0.5, memory_limit: 0.5, concurrency: 1 }
";

    #[test]
    fn an_environment_changes_only_what_it_names() {
        let cfg = Config::from_layers(TEXT, Path::new("c.yaml")).unwrap();
        let prod = cfg.for_environment(Environment::Production);
        assert_eq!(prod.thresholds.high_cpu, 60.0);
        assert_eq!(
            prod.thresholds.critical_memory,
            cfg.thresholds.critical_memory
        );
        assert_eq!(prod.resource_limits["aggressive"].concurrency, 2);
        assert_eq!(prod.resource_limits["aggressive"].cpu_limit, 0.9, "kept");
        assert!(prod.experimental.enable_rollback_prediction);
        assert!(!prod.experimental.enable_canary_deployments);
        assert_eq!(prod.hooks.post_deployment_scripts, ["./smoke.sh"]);
        let shown: Vec<String> = prod.overrides.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "thresholds.high_cpu = 60.0 (default 80.0)",
                "resource_limits.aggressive.concurrency = 2 (default 8)",
                "experimental.enable_rollback_prediction = true (default false)",
                "hooks.post_deployment_scripts = [\"./smoke.sh\"] (default [])",
            ]
        );
        assert_eq!(
            prod.overrides[0].source,
            "environments.production.thresholds.high_cpu"
        );

        let dev = cfg.for_environment(Environment::Development);
        assert!(dev.experimental.enable_canary_deployments);
        assert_eq!(dev.resource_limits["canary"].concurrency, 1);
        assert!(
            dev.overrides
                .iter()
                .any(|o| o.key == "resource_limits.canary.cpu_limit" && o.default.is_null())
        );
        assert!(cfg.canary_anywhere());

        let staging = cfg.for_environment(Environment::Staging);
        assert!(staging.overrides.is_empty());
        assert_eq!(staging.thresholds, cfg.thresholds);
        assert_eq!(staging.resource_limits, cfg.resource_limits);
    }

    #[test]
    fn bad_environment_settings_name_file_line_column() {
        let position = |text: &str, needle: &str| {
            text.lines()
                .enumerate()
                .find_map(|(i, l)| l.find(needle).map(|c| (i + 1, c + 1)))
                .unwrap()
        };
        let cases = [
            (
                "environments:\n  prod:\n    thresholds: { high_cpu: 60 }\n",
                "prod",
                "environments: unknown variant `prod`, expected one of `local`, `development`, `staging`, `production`",
            ),
            (
                "environments:\n  production:\n    thresholds: { hgih_cpu: 60 }\n",
                "hgih_cpu",
                "environments.production.thresholds: unknown field `hgih_cpu`, expected one of `high_cpu`, `critical_memory`, `max_deployment_time`, `min_free_disk_percent`",
            ),
            (
                "environments:\n  production:\n    approvals: {}\n",
                "approvals",
                "environments.production: unknown field `approvals`, expected one of `thresholds`, `resource_limits`, `experimental`, `alerts`, `hooks`, `analysis`",
            ),
            (
                "environments:\n  staging:\n    resource_limits:\n      balanced:\n        cpu_limit: 1.5\n",
                "cpu_limit",
                "environments.staging.resource_limits.balanced.cpu_limit: must be a fraction in (0, 1], got 1.5",
            ),
            (
                "environments:\n  staging:\n    resource_limits:\n      blue-green: { concurrency: 2 }\n",
                "blue-green",
                "environments.staging.resource_limits.blue-green: `blue-green` has no top-level resource_limits entry, so this one needs cpu_limit, memory_limit and concurrency",
            ),
        ];
        for (text, at, message) in cases {
            let err = Config::from_layers(text, Path::new("c.yaml"))
                .unwrap_err()
                .to_string();
            let (line, column) = position(text, at);
            // serde_yaml reports a map key's error at the key.
            assert_eq!(err, format!("c.yaml:{line}:{column}: {message}"), "{text}");
        }
    }
}

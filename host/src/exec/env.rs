//! The environment of a service's commands: the `ADEPLOY_*` context
//! variables, then the service's own `env` (which may override them).
//!
//! One function builds it for deploy, rollback and health commands (and
//! the engine passes the same list to [`super::RunOptions::env`], where the
//! health checks' `${ADEPLOY_*}` placeholders are looked up), so what a
//! command sees and what a health check expects cannot drift apart.

use std::path::Path;

use crate::config::Environment;

/// Everything a service's command is told about its deployment.
#[derive(Debug, Clone, Copy)]
pub struct CommandContext<'a> {
    pub deployment_id: &'a str,
    /// The service's name; empty for deployment-level hooks.
    pub service: &'a str,
    pub strategy: &'a str,
    pub environment: Environment,
    /// `small`, `medium` or `large`.
    pub deployment_size: &'a str,
    /// The wave, numbered from 1.
    pub wave: u32,
    /// The inventory host of a fleet step; `None` for a local one.
    pub host: Option<&'a str>,
    /// The host's address (`127.0.0.1` for a local step).
    pub host_address: &'a str,
    pub state_dir: &'a Path,
    /// The version being deployed (`services.<name>.version`, or
    /// `--set-version`), if the service declares one.
    pub version: Option<&'a str>,
    /// The version the history says was last deployed successfully, if any.
    pub previous_version: Option<&'a str>,
}

/// `ADEPLOY_DEPLOYMENT_ID`, `ADEPLOY_SERVICE`, `ADEPLOY_STRATEGY`,
/// `ADEPLOY_ENVIRONMENT`, `ADEPLOY_DEPLOYMENT_SIZE`, `ADEPLOY_WAVE`,
/// `ADEPLOY_HOST` (`localhost` for a local step), `ADEPLOY_HOST_ADDRESS`,
/// `ADEPLOY_STATE_DIR`, and — only when known — `ADEPLOY_VERSION` and
/// `ADEPLOY_PREVIOUS_VERSION`; then `service_env` (secrets resolved), whose
/// entries come later and so win.
pub fn command_env(
    ctx: &CommandContext<'_>,
    service_env: &[(String, String)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("ADEPLOY_DEPLOYMENT_ID".into(), ctx.deployment_id.into()),
        ("ADEPLOY_SERVICE".into(), ctx.service.into()),
        ("ADEPLOY_STRATEGY".into(), ctx.strategy.into()),
        (
            "ADEPLOY_ENVIRONMENT".into(),
            ctx.environment.as_str().into(),
        ),
        ("ADEPLOY_DEPLOYMENT_SIZE".into(), ctx.deployment_size.into()),
        ("ADEPLOY_WAVE".into(), ctx.wave.to_string()),
        (
            "ADEPLOY_HOST".into(),
            ctx.host.unwrap_or("localhost").into(),
        ),
        ("ADEPLOY_HOST_ADDRESS".into(), ctx.host_address.into()),
        (
            "ADEPLOY_STATE_DIR".into(),
            ctx.state_dir.display().to_string(),
        ),
    ];
    if let Some(v) = ctx.version {
        env.push(("ADEPLOY_VERSION".into(), v.into()));
    }
    if let Some(v) = ctx.previous_version {
        env.push(("ADEPLOY_PREVIOUS_VERSION".into(), v.into()));
    }
    env.extend(service_env.iter().cloned());
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::{DeploymentLog, RunOptions, run_command};

    #[tokio::test]
    async fn commands_see_the_context_and_the_versions() {
        let tmp = tempfile::tempdir().unwrap();
        let ctx = CommandContext {
            deployment_id: "deploy_7",
            service: "api",
            strategy: "balanced",
            environment: Environment::Staging,
            deployment_size: "medium",
            wave: 2,
            host: None,
            host_address: "127.0.0.1",
            state_dir: tmp.path(),
            version: Some("1.2.3"),
            previous_version: Some("1.2.2"),
        };
        let env = command_env(&ctx, &[("API_MODE".into(), "fast".into())]);
        let log = DeploymentLog::create(&tmp.path().join("logs"), chrono::Local::now()).unwrap();
        let opts = RunOptions {
            env: &env,
            ..RunOptions::new("api deploy", tmp.path(), &log)
        };
        let script = "echo $ADEPLOY_SERVICE $ADEPLOY_VERSION $ADEPLOY_PREVIOUS_VERSION $ADEPLOY_WAVE $ADEPLOY_HOST $ADEPLOY_ENVIRONMENT $API_MODE";
        let out = run_command(&crate::config::CommandSpec::Shell(script.into()), &opts)
            .await
            .unwrap();
        assert_eq!(out.tail, ["api 1.2.3 1.2.2 2 localhost staging fast"]);

        // Unknown versions are not exported (a script can say ${ADEPLOY_VERSION:-unknown}).
        let bare = command_env(
            &CommandContext {
                version: None,
                previous_version: None,
                ..ctx
            },
            &[],
        );
        assert!(!bare.iter().any(|(k, _)| k.contains("VERSION")), "{bare:?}");
        // The service's own env comes last, so it wins.
        let over = command_env(&ctx, &[("ADEPLOY_VERSION".into(), "mine".into())]);
        let last = over
            .iter()
            .rev()
            .find(|(k, _)| k == "ADEPLOY_VERSION")
            .unwrap();
        assert_eq!(last.1, "mine");
    }
}

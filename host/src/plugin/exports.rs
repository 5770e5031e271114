//! The typed calls into a plugin's exports, each a few lines over
//! [`Plugin::call`](super::Plugin): instantiate from the typed pre, call the
//! export with the plugin's own config, check the answer.

use std::time::Duration;

use super::call::{LiftLimit, TypedPre};
use super::{
    Called, Decision, DeploymentContext, Detection, DetectionRules, HookContext, HookReport, Phase,
    Plugin, PluginError, PluginInfo, PluginKind, Progress, Rollout, validate,
};

/// Host bytes a plan may use per step of the deployment, beyond the base
/// lift limit: a step (service and host strings, 48 bytes) with generous
/// room for the names it repeats and the wave it sits in.
const PLAN_BYTES_PER_STEP: usize = 1024;

impl Plugin {
    pub(super) fn wrong_kind(&self, expected: PluginKind) -> PluginError {
        PluginError::WrongKind {
            plugin: self.name.clone(),
            expected,
            actual: self.kind,
        }
    }

    /// The context as this plugin receives it: with its own config.
    fn with_own_config(&self, ctx: &DeploymentContext) -> DeploymentContext {
        let mut own = ctx.clone();
        own.config.clone_from(&self.config_json);
        own
    }

    /// Instantiates the plugin in a fresh store without calling it, and returns
    /// how long that took: the fixed cost every call pays.
    pub async fn instantiate(&self) -> Result<Duration, PluginError> {
        self.call("instantiate", LiftLimit::BASE, async |store| {
            self.typed.instantiate(store).await
        })
        .await
        .map(|c| c.elapsed)
    }

    /// Calls the plugin's `describe` (bounded: a short name and version, a
    /// description of at most 1 KiB; see `validate::plugin_info`).
    pub async fn describe(&self) -> Result<Called<PluginInfo>, PluginError> {
        let called = self
            .call("describe", LiftLimit::BASE, async |store| {
                self.typed.describe(store).await
            })
            .await?;
        validate::plugin_info(&called.value).map_err(|reason| PluginError::Malformed {
            plugin: self.name.clone(),
            function: "describe",
            reason,
        })?;
        Ok(called)
    }

    /// Calls a detector's `detect` and checks the answer.
    pub async fn detect(&self, rules: &DetectionRules) -> Result<Called<Detection>, PluginError> {
        let TypedPre::Detector(pre) = &self.typed else {
            return Err(self.wrong_kind(PluginKind::Detector));
        };
        self.call_checked(
            "detect",
            LiftLimit::BASE,
            async |store| {
                let i = pre.instantiate_async(&mut *store).await?;
                i.adeploy_plugin_detector()
                    .call_detect(store, rules, &self.config_json)
                    .await
            },
            validate::detection,
        )
        .await
    }

    /// Calls a strategy's `plan` and checks the rollout against the context.
    pub async fn plan(&self, ctx: &DeploymentContext) -> Result<Called<Rollout>, PluginError> {
        let TypedPre::Strategy(pre) = &self.typed else {
            return Err(self.wrong_kind(PluginKind::Strategy));
        };
        let own = self.with_own_config(ctx);
        let steps: usize = ctx.services.iter().map(|s| s.hosts.len().max(1)).sum();
        self.call_checked(
            "plan",
            LiftLimit::with(steps, PLAN_BYTES_PER_STEP),
            async |store| {
                let i = pre.instantiate_async(&mut *store).await?;
                i.adeploy_plugin_strategy().call_plan(store, &own).await
            },
            |rollout| validate::rollout(ctx, rollout),
        )
        .await
    }

    /// Calls a strategy's `on-progress`. An abort or rollback reason longer
    /// than [`MAX_REASON_BYTES`](super::MAX_REASON_BYTES) is cut.
    pub async fn on_progress(
        &self,
        ctx: &DeploymentContext,
        event: &Progress,
    ) -> Result<Called<Decision>, PluginError> {
        let TypedPre::Strategy(pre) = &self.typed else {
            return Err(self.wrong_kind(PluginKind::Strategy));
        };
        let own = self.with_own_config(ctx);
        let mut called = self
            .call("on-progress", LiftLimit::BASE, async |store| {
                let i = pre.instantiate_async(&mut *store).await?;
                i.adeploy_plugin_strategy()
                    .call_on_progress(store, &own, event)
                    .await
            })
            .await?;
        validate::decision(&mut called.value);
        Ok(called)
    }

    /// Calls a hook's `run`.
    pub async fn run_hook(
        &self,
        phase: Phase,
        ctx: &HookContext,
    ) -> Result<Called<HookReport>, PluginError> {
        let TypedPre::Hook(pre) = &self.typed else {
            return Err(self.wrong_kind(PluginKind::Hook));
        };
        let mut own = ctx.clone();
        own.deployment.config.clone_from(&self.config_json);
        self.call_checked(
            "run",
            LiftLimit::BASE,
            async |store| {
                let i = pre.instantiate_async(&mut *store).await?;
                i.adeploy_plugin_hook().call_run(store, phase, &own).await
            },
            validate::hook_report,
        )
        .await
    }
}

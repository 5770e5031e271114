"""{{name}}: an adeploy strategy. `plan` shapes the deployment into waves;
`on_progress` hears about every step and decides what happens next.

WIT in Python: records are dataclasses with snake_case fields, enums are Enum
members, variants are classes such as `Decision_Rollback`, and raising
`componentize_py_types.Err(message)` returns the `err` of a result.
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import strategy as s
from wit_world.imports import host, types


def steps_of(service) -> list:
    if not service.hosts:
        return [s.Step(service=service.name, host=None)]
    return [s.Step(service=service.name, host=h) for h in service.hosts]


class Strategy(exports.Strategy):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(name="{{name}}", version="0.1.0", description="{{description}}")

    def plan(self, ctx: types.DeploymentContext) -> s.Rollout:
        """Two waves: the first service alone, then everything else. The host
        honours depends-on inside a wave, so the order within a wave is free."""
        steps = [step for x in ctx.services for step in steps_of(x)]
        if not steps:
            raise Err("no services to deploy")
        host.log(host.LogLevel.INFO, f"{{name}}: {len(steps)} step(s)")
        waves = [s.Wave(steps=steps[:1], pause_after_s=0)]
        if len(steps) > 1:
            waves.append(s.Wave(steps=steps[1:], pause_after_s=0))
        return s.Rollout(
            waves=waves,
            concurrency=max(ctx.limits.concurrency, 1),
            validation=s.ValidationPolicy(health_checks=True, samples=1, interval_ms=1000, soak_s=0),
            failure=s.FailurePolicy(max_failures=0, rollback_scope=s.RollbackScope.ALL),
            notes=["the first service alone, then the rest"],
        )

    def on_progress(self, ctx: types.DeploymentContext, event: s.Progress) -> s.Decision:
        if event.kind == s.ProgressKind.STEP_FAILED:
            return s.Decision_Rollback(event.message)
        if event.kind == s.ProgressKind.OVER_BUDGET:
            return s.Decision_Pause(10)
        return s.Decision_Continue()

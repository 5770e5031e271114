"""{{name}}: an adeploy hook. The host calls `run` at every phase of a
deployment; raising `Err` before the deployment aborts it, raising it for a
service fails that step (see wit/hook.wit).
"""

from wit_world import exports
from wit_world.exports import hook as h
from wit_world.imports import host, types


class Hook(exports.Hook):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(name="{{name}}", version="0.1.0", description="{{description}}")

    def run(self, phase: h.Phase, ctx: h.HookContext) -> h.HookReport:
        what = f"{phase.name.lower()} of {ctx.deployment.deployment_id} with {ctx.strategy}"
        host.log(host.LogLevel.INFO, f"{{name}}: {what}")
        return h.HookReport(
            message=what,
            details=[types.Detail(key="services", value=str(len(ctx.deployment.services)))],
        )

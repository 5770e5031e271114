"""freeze-hook (Python hook): refuses to deploy during a change freeze.

Before a deployment it checks whether the freeze file exists (the operator's
`freeze_file`, granted under `grants.paths`); if it does, the pre-deployment
hook fails with the file's first line as the reason, which aborts the
deployment before anything runs. Every other phase reports what it saw.

Plugin config (JSON): `freeze_file` (an absolute path). Without it the hook
does nothing. A freeze file the config does not grant fails the
pre-deployment phase: a freeze that cannot be checked is not assumed lifted.

Built by ../build.sh with
`componentize-py -d ../../../wit -w hook-plugin componentize app`.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import hook as h
from wit_world.imports import host, types


def freeze_file(config: str):
    try:
        cfg = json.loads(config) if config.strip() else {}
    except json.JSONDecodeError as e:
        raise Err(f"plugin config is not valid JSON: {e}")
    if not isinstance(cfg, dict):
        raise Err("plugin config must be a JSON object")
    for key in sorted(cfg):
        if key != "freeze_file":
            raise Err(f"unknown config key `{key}` (accepted: freeze_file)")
    path = cfg.get("freeze_file")
    if path is not None and not isinstance(path, str):
        raise Err("config key `freeze_file` must be a path")
    return path


def host_error(e: Err) -> str:
    v = e.value
    return f"{type(v).__name__.split('_')[-1].lower()}: {getattr(v, 'value', v)}"


class Hook(exports.Hook):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="freeze-hook", version="0.1.0", description="refuses to deploy while a freeze file exists"
        )

    def run(self, phase: h.Phase, ctx: h.HookContext) -> h.HookReport:
        path = freeze_file(ctx.deployment.config)
        if path is None:
            return h.HookReport(message="no freeze_file configured", details=[])
        if phase != h.Phase.PRE_DEPLOYMENT:
            return h.HookReport(message=f"{phase.name.lower()}: nothing to check", details=[])
        try:
            frozen = host.path_exists(path)
        except Err as e:
            raise Err(f"cannot check the freeze file {path} ({host_error(e)}); not deploying")
        if not frozen:
            return h.HookReport(
                message="no change freeze", details=[types.Detail(key="freeze_file", value=path)]
            )
        try:
            reason = bytes(host.read_file(path, 512)).decode("utf-8", "replace").strip().splitlines()
        except Err as e:
            reason = [f"unreadable ({host_error(e)})"]
        why = reason[0] if reason else "no reason given"
        host.log(host.LogLevel.WARN, f"change freeze: {why}")
        raise Err(f"change freeze ({path}): {why}")

"""canary (Python): one step first, then a quarter of the rest (at least one),
then the rest; pauses between waves and rolls back once too many steps failed.

The same strategy as ../canary-rust (see its docs for the config keys); plans,
notes and decisions are identical. Built by ../build.sh with
`componentize-py -d ../../../wit -w strategy-plugin componentize app`.

WIT mapping: records are dataclasses with snake_case fields, enums are Enum
members, variants are Decision_* classes, and raising
`componentize_py_types.Err(message)` returns the `err` of a result.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import strategy as s
from wit_world.imports import host, types

DEFAULTS = {"pause_s": 30, "max_failed_percent": 0, "samples": 2, "interval_ms": 1000, "soak_s": 0}


def settings(config: str) -> dict:
    """The config's whole-number keys over the defaults; raises ValueError naming the key."""
    out = dict(DEFAULTS)
    parsed: object = {}
    if config.strip():
        try:
            parsed = json.loads(config)
        except json.JSONDecodeError as e:
            raise ValueError(f"plugin config is not valid JSON: {e}")
    if not isinstance(parsed, dict):
        raise ValueError("plugin config must be a JSON object")
    for key in sorted(parsed):
        if key not in DEFAULTS:
            raise ValueError(f"unknown config key `{key}` (accepted: {', '.join(DEFAULTS)})")
        v = parsed[key]
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 4294967295:
            raise ValueError(f"config key `{key}` must be a whole number, got {json.dumps(v)}")
        out[key] = v
    if out["max_failed_percent"] > 100:
        raise ValueError(
            f"config key `max_failed_percent` must be at most 100, got {out['max_failed_percent']}"
        )
    if out["samples"] == 0:
        raise ValueError("config key `samples` must be at least 1")
    return out


def dependency_order(services: list) -> list:
    """Services in dependency order (stable: the operator's order among equals)."""
    names = {x.name for x in services}
    placed: set = set()
    ordered = []
    while len(ordered) < len(services):
        before = len(ordered)
        for x in services:
            if x.name in placed:
                continue
            if all(d not in names or d in placed for d in x.depends_on):
                placed.add(x.name)
                ordered.append(x)
        if len(ordered) == before:
            stuck = sorted(x.name for x in services if x.name not in placed)
            raise ValueError(f"dependency cycle among services: {', '.join(stuck)}")
    return ordered


def steps_of(service) -> list:
    if not service.hosts:
        return [s.Step(service=service.name, host=None)]
    return [s.Step(service=service.name, host=h) for h in service.hosts]


def wave_sizes(n: int) -> list:
    if n == 0:
        return []
    rest = n - 1
    quarter = (rest + 3) // 4
    return [k for k in (1, quarter, rest - quarter) if k > 0]


class Strategy(exports.Strategy):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="canary",
            version="0.1.0",
            description="one step, a quarter of the rest, then the rest; pauses between waves, "
            "rolls back past a failure threshold",
        )

    def plan(self, ctx: types.DeploymentContext) -> s.Rollout:
        if not ctx.services:
            raise Err("no services to deploy")
        try:
            cfg = settings(ctx.config)
            steps = [step for x in dependency_order(ctx.services) for step in steps_of(x)]
        except ValueError as e:
            raise Err(str(e))
        sizes = wave_sizes(len(steps))
        waves = []
        at = 0
        for i, k in enumerate(sizes):
            pause = cfg["pause_s"] if i < len(sizes) - 1 else 0
            waves.append(s.Wave(steps=steps[at : at + k], pause_after_s=pause))
            at += k
        total = len(steps)
        max_failures = total * cfg["max_failed_percent"] // 100
        host.log(host.LogLevel.DEBUG, f"canary: {total} step(s) in {len(waves)} wave(s)")
        return s.Rollout(
            waves=waves,
            concurrency=max(ctx.limits.concurrency, 1),
            validation=s.ValidationPolicy(
                health_checks=True,
                samples=cfg["samples"],
                interval_ms=cfg["interval_ms"],
                soak_s=cfg["soak_s"],
            ),
            failure=s.FailurePolicy(max_failures=max_failures, rollback_scope=s.RollbackScope.ALL),
            notes=[
                f"canary waves of {', '.join(str(k) for k in sizes)} step(s), "
                f"{cfg['pause_s']} s pause between waves",
                f"roll back when more than {cfg['max_failed_percent']}% of the settled steps failed "
                f"(at most {max_failures} of {total})",
            ],
        )

    def on_progress(self, ctx: types.DeploymentContext, event: s.Progress) -> s.Decision:
        try:
            cfg = settings(ctx.config)
        except ValueError as e:
            return s.Decision_Abort(str(e))
        if event.kind in (s.ProgressKind.STEP_FAILED, s.ProgressKind.WAVE_FINISHED):
            settled = event.succeeded + event.failed
            limit = cfg["max_failed_percent"]
            if event.failed > 0 and event.failed * 100 > limit * settled:
                return s.Decision_Rollback(
                    f"wave {event.wave + 1}: {event.failed} of {settled} settled step(s) failed, "
                    f"more than max_failed_percent {limit}"
                )
            return s.Decision_Continue()
        if event.kind == s.ProgressKind.OVER_BUDGET:
            return s.Decision_Pause(10)
        return s.Decision_Continue()

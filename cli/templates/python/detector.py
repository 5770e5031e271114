"""{{name}}: an adeploy detector. It gathers evidence through the host
imports (each needs a grant) and says which environment it points at. This
one reads the APP_ENV variable (granted by plugins.{{name}}.grants.env).

A host import that fails raises `componentize_py_types.Err`; its `value` is
the host-error variant, e.g. `HostError_Denied("...")`.
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import detector as d
from wit_world.imports import host, types

NAMES = {
    "local": types.Environment.LOCAL,
    "dev": types.Environment.DEVELOPMENT,
    "development": types.Environment.DEVELOPMENT,
    "stage": types.Environment.STAGING,
    "staging": types.Environment.STAGING,
    "prod": types.Environment.PRODUCTION,
    "production": types.Environment.PRODUCTION,
}


class Detector(exports.Detector):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(name="{{name}}", version="0.1.0", description="{{description}}")

    def detect(self, rules: d.DetectionRules, config: str) -> d.Detection:
        try:
            value = host.env_var("APP_ENV")
        except Err as e:
            if not isinstance(e.value, host.HostError_Denied):
                raise Err(f"reading APP_ENV: {e.value}")
            return d.Detection(environment=None, confidence=0.0, evidence=[],
                               notes=[f"APP_ENV not readable: {e.value.value}"])
        env = NAMES.get(value.strip().lower()) if value is not None else None
        if env is None:
            return d.Detection(environment=None, confidence=0.0, evidence=[], notes=[])
        return d.Detection(
            environment=env,
            confidence=1.0,
            evidence=[d.Evidence(method="env-var", environment=env, weight=rules.weights.env_var,
                                 detail=f"APP_ENV={value}")],
            notes=[],
        )

"""{{name}}: an adeploy metric provider. The host calls `query` for the
samples of one series over a time window, and judges them itself
(thresholds, comparison with a baseline); `check` validates a query for
`--dry-run` (see wit/metric-provider.wit). This one reads the query text as
a number and returns it at every instant of the window: replace it with a
call to your monitoring system through `host.http_fetch` (granted by
`plugins.{{name}}.grants.network`).
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import metric_provider as mp
from wit_world.imports import host, types


def value(request: mp.MetricQuery) -> float:
    try:
        v = float(request.query.strip())
    except ValueError:
        raise Err(mp.ProviderError_InvalidQuery(f"{request.query!r} is not a number"))
    if v != v or v in (float("inf"), float("-inf")):
        raise Err(mp.ProviderError_InvalidQuery(f"{request.query!r} is not a finite number"))
    return v


class MetricProvider(exports.MetricProvider):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(name="{{name}}", version="0.1.0", description="{{description}}")

    def query(self, request: mp.MetricQuery) -> list[mp.Sample]:
        v = value(request)
        w = request.window
        host.log(host.LogLevel.DEBUG, f"{{name}}: {request.metric} = {v}")
        if w.step_ms == 0:
            return [mp.Sample(timestamp_ms=w.end_ms, value=v)]
        return [
            mp.Sample(timestamp_ms=t, value=v)
            for t in range(w.start_ms, w.end_ms + 1, w.step_ms)
        ][:11000]

    def check(self, request: mp.MetricQuery) -> list[types.Detail]:
        return [types.Detail(key="value", value=str(value(request)))]

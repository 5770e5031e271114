"""json-metrics (Python metric provider): reads metrics from a JSON endpoint.

The plugin fetches `url` from its config (through the host's `http-fetch`, so
the endpoint's host:port needs `grants.network`) and reads the metric at the
query's path, keys separated by dots (`api.error_rate`). The value there is
either a number (the current value: one sample at the end of the window) or a
list of `[timestamp_ms, value]` pairs (a series: the samples inside the
window, in time order). For example, with

    {"api": {"error_rate": 0.01, "latency_ms": [[1764230400000, 120.5], ...]}}

`api.error_rate` gives one sample and `api.latency_ms` a series.

Plugin config (JSON): `url` (required), `timeout_ms` (default: the call's
deadline less 250 ms). Errors: a path that is not in the document, or not a
number or series, is an invalid query; an unreachable endpoint or a 5xx answer
is unavailable; a missing grant is denied; a bad config is bad-config.

Built by ../build.sh with
`componentize-py -d ../../../wit -w metric-provider-plugin componentize app`.
"""

import json
import math

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import metric_provider as mp
from wit_world.imports import host, types

MAX_SAMPLES = 11000


def settings(config: str):
    try:
        cfg = json.loads(config) if config.strip() else {}
    except json.JSONDecodeError as e:
        raise Err(mp.ProviderError_BadConfig(f"plugin config is not valid JSON: {e}"))
    if not isinstance(cfg, dict):
        raise Err(mp.ProviderError_BadConfig("plugin config must be a JSON object"))
    for key in sorted(cfg):
        if key not in ("url", "timeout_ms"):
            raise Err(mp.ProviderError_BadConfig(f"unknown config key `{key}` (accepted: url, timeout_ms)"))
    url = cfg.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise Err(mp.ProviderError_BadConfig("config key `url` must be an http:// or https:// URL"))
    timeout = cfg.get("timeout_ms")
    if timeout is not None and (not isinstance(timeout, int) or isinstance(timeout, bool) or timeout <= 0):
        raise Err(mp.ProviderError_BadConfig("config key `timeout_ms` must be a whole number above 0"))
    return url, timeout


def fetch(url: str, timeout_ms: int):
    """The endpoint's JSON document, or the provider error that stopped it."""
    try:
        answer = host.http_fetch(
            host.HttpRequest(method="GET", url=url, headers=[("accept", "application/json")], body=None, timeout_ms=timeout_ms)
        )
    except Err as e:
        v = e.value
        kind = type(v).__name__.split("_")[-1]
        if kind == "Denied":
            raise Err(mp.ProviderError_Denied(v.value))
        if kind == "Invalid":
            raise Err(mp.ProviderError_BadConfig(f"{url}: {v.value}"))
        word = {"Timeout": "timed out: ", "NotFound": "not found: "}.get(kind, "")
        raise Err(mp.ProviderError_Unavailable(f"{url}: {word}{v.value}"))
    if answer.status >= 500:
        raise Err(mp.ProviderError_Unavailable(f"{url} answered {answer.status}"))
    if answer.status == 404:
        raise Err(mp.ProviderError_BadConfig(f"{url} does not exist (404): check config key `url`"))
    if answer.status != 200:
        raise Err(mp.ProviderError_Failed(f"{url} answered {answer.status}"))
    try:
        return json.loads(bytes(answer.body).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise Err(mp.ProviderError_Failed(f"{url} did not answer JSON: {e}"))


def lookup(document, path: str):
    """The value at a dotted path; an invalid-query error names what is missing."""
    if not path.strip():
        raise Err(mp.ProviderError_InvalidQuery("the query is empty: give a path such as api.error_rate"))
    value = document
    walked = []
    for key in path.strip().split("."):
        if not isinstance(value, dict) or key not in value:
            where = ".".join(walked) or "the document"
            keys = ", ".join(sorted(value)) if isinstance(value, dict) else "none"
            raise Err(mp.ProviderError_InvalidQuery(f"no key `{key}` in {where} (keys: {keys})"))
        value = value[key]
        walked.append(key)
    return value


def number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def samples(value, window: mp.TimeWindow, path: str):
    if number(value):
        if not math.isfinite(value):
            return []
        return [mp.Sample(timestamp_ms=window.end_ms, value=float(value))]
    if isinstance(value, list):
        out = []
        for point in value:
            if not (isinstance(point, list) and len(point) == 2 and number(point[0]) and number(point[1])):
                raise Err(mp.ProviderError_InvalidQuery(f"`{path}` is a list, but not of [timestamp_ms, value] pairs"))
            t, v = int(point[0]), float(point[1])
            if window.start_ms <= t <= window.end_ms and math.isfinite(v):
                out.append((t, v))
        out.sort()
        series, last = [], None
        for t, v in out:
            if t != last:
                series.append(mp.Sample(timestamp_ms=t, value=v))
                last = t
        return series[:MAX_SAMPLES]
    raise Err(mp.ProviderError_InvalidQuery(f"`{path}` is neither a number nor a list of [timestamp_ms, value] pairs"))


class MetricProvider(exports.MetricProvider):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="json-metrics", version="0.1.0", description="reads metrics from a JSON endpoint"
        )

    def query(self, request: mp.MetricQuery) -> list[mp.Sample]:
        url, timeout = settings(request.config)
        budget = max(100, request.deadline_ms - 250)
        document = fetch(url, min(timeout or budget, budget))
        return samples(lookup(document, request.query), request.window, request.query)

    def check(self, request: mp.MetricQuery) -> list[types.Detail]:
        url, timeout = settings(request.config)
        budget = max(100, request.deadline_ms - 250)
        value = lookup(fetch(url, min(timeout or budget, budget)), request.query)
        kind = "number" if number(value) else "series"
        samples(value, request.window, request.query)
        return [types.Detail(key="kind", value=kind)]

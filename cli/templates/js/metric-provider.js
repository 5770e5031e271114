// {{name}}: an adeploy metric provider. The host calls `query` for the
// samples of one series over a time window, and judges them itself
// (thresholds, comparison with a baseline); `check` validates a query for
// `--dry-run` (see wit/metric-provider.wit). This one reads the query text
// as a number and returns it at every instant of the window: replace it
// with a call to your monitoring system through `httpFetch` (granted by
// `plugins.{{name}}.grants.network`). Errors are thrown as
// `{ tag: "invalid-query" | "unavailable" | "denied" | "bad-config" | "failed", val: "why" }`;
// timestamps are BigInt.

import { log } from "adeploy:plugin/host@0.1.0";

function value(request) {
  const v = Number(request.query.trim());
  if (request.query.trim() === "" || !Number.isFinite(v)) {
    throw { tag: "invalid-query", val: `${JSON.stringify(request.query)} is not a number` };
  }
  return v;
}

export const metricProvider = {
  describe() {
    return { name: "{{name}}", version: "0.1.0", description: "{{description}}" };
  },

  query(request) {
    const v = value(request);
    const { startMs, endMs, stepMs } = request.window;
    log("debug", `{{name}}: ${request.metric} = ${v}`);
    if (stepMs === 0n) {
      return [{ timestampMs: endMs, value: v }];
    }
    const samples = [];
    for (let t = startMs; t <= endMs && samples.length < 11000; t += stepMs) {
      samples.push({ timestampMs: t, value: v });
    }
    return samples;
  },

  check(request) {
    return [{ key: "value", value: String(value(request)) }];
  },
};

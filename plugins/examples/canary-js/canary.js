// canary (JavaScript): one step first, then a quarter of the rest (at least
// one), then the rest; pauses between waves and rolls back once too many
// steps failed. The same strategy as ../canary-rust (see its docs for the
// config keys); plans, notes and decisions are identical.
//
// Built by ../build.sh with `jco componentize` against the repository's wit/.
// WIT mapping: records are objects with camelCase fields, enums are strings,
// variants are {tag, val}, u64 is a BigInt, and a thrown string becomes the
// `err` of a result.

import { log } from "adeploy:plugin/host@0.1.0";

const DEFAULTS = { pause_s: 30, max_failed_percent: 0, samples: 2, interval_ms: 1000, soak_s: 0 };

// The config's whole-number keys over the defaults; throws a message naming the key.
function settings(config) {
  const s = { ...DEFAULTS };
  let parsed = {};
  if (config.trim() !== "") {
    try {
      parsed = JSON.parse(config);
    } catch (e) {
      throw `plugin config is not valid JSON: ${e.message}`;
    }
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw "plugin config must be a JSON object";
  }
  for (const key of Object.keys(parsed).sort()) {
    if (!(key in DEFAULTS)) {
      throw `unknown config key \`${key}\` (accepted: ${Object.keys(DEFAULTS).join(", ")})`;
    }
    const v = parsed[key];
    if (!Number.isInteger(v) || v < 0 || v > 4294967295) {
      throw `config key \`${key}\` must be a whole number, got ${JSON.stringify(v)}`;
    }
    s[key] = v;
  }
  if (s.max_failed_percent > 100) {
    throw `config key \`max_failed_percent\` must be at most 100, got ${s.max_failed_percent}`;
  }
  if (s.samples === 0) {
    throw "config key `samples` must be at least 1";
  }
  return s;
}

// Services in dependency order (stable: the operator's order among equals).
function dependencyOrder(services) {
  const names = new Set(services.map((s) => s.name));
  const placed = new Set();
  const ordered = [];
  while (ordered.length < services.length) {
    const before = ordered.length;
    for (const s of services) {
      if (placed.has(s.name)) continue;
      if (s.dependsOn.every((d) => !names.has(d) || placed.has(d))) {
        placed.add(s.name);
        ordered.push(s);
      }
    }
    if (ordered.length === before) {
      const stuck = services.map((s) => s.name).filter((n) => !placed.has(n)).sort();
      throw `dependency cycle among services: ${stuck.join(", ")}`;
    }
  }
  return ordered;
}

function stepsOf(service) {
  if (service.hosts.length === 0) return [{ service: service.name, host: undefined }];
  return service.hosts.map((h) => ({ service: service.name, host: h }));
}

function waveSizes(n) {
  if (n === 0) return [];
  const rest = n - 1;
  const quarter = Math.ceil(rest / 4);
  return [1, quarter, rest - quarter].filter((k) => k > 0);
}

export const strategy = {
  describe() {
    return {
      name: "canary",
      version: "0.1.0",
      description:
        "one step, a quarter of the rest, then the rest; pauses between waves, rolls back past a failure threshold",
    };
  },

  plan(ctx) {
    if (ctx.services.length === 0) throw "no services to deploy";
    const s = settings(ctx.config);
    const steps = dependencyOrder(ctx.services).flatMap(stepsOf);
    const sizes = waveSizes(steps.length);
    let at = 0;
    const waves = sizes.map((k, i) => {
      const wave = { steps: steps.slice(at, at + k), pauseAfterS: i < sizes.length - 1 ? s.pause_s : 0 };
      at += k;
      return wave;
    });
    const total = steps.length;
    const maxFailures = Math.floor((total * s.max_failed_percent) / 100);
    log("debug", `canary: ${total} step(s) in ${waves.length} wave(s)`);
    return {
      waves,
      concurrency: Math.max(ctx.limits.concurrency, 1),
      validation: { healthChecks: true, samples: s.samples, intervalMs: s.interval_ms, soakS: s.soak_s },
      failure: { maxFailures, rollbackScope: "all" },
      notes: [
        `canary waves of ${sizes.join(", ")} step(s), ${s.pause_s} s pause between waves`,
        `roll back when more than ${s.max_failed_percent}% of the settled steps failed (at most ${maxFailures} of ${total})`,
      ],
    };
  },

  onProgress(ctx, event) {
    let s;
    try {
      s = settings(ctx.config);
    } catch (e) {
      return { tag: "abort", val: String(e) };
    }
    switch (event.kind) {
      case "step-failed":
      case "wave-finished": {
        const settled = event.succeeded + event.failed;
        if (event.failed > 0 && event.failed * 100 > s.max_failed_percent * settled) {
          return {
            tag: "rollback",
            val: `wave ${event.wave + 1}: ${event.failed} of ${settled} settled step(s) failed, more than max_failed_percent ${s.max_failed_percent}`,
          };
        }
        return { tag: "continue" };
      }
      case "over-budget":
        return { tag: "pause", val: 10 };
      default:
        return { tag: "continue" };
    }
  },
};

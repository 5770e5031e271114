// {{name}}: an adeploy strategy. `plan` shapes the deployment into waves;
// `onProgress` hears about every step and decides what happens next.
//
// WIT in JavaScript: records are objects with camelCase fields, enums are
// strings ("step-failed"), variants are {tag, val}, options are undefined or
// a value, u64 is a BigInt, and throwing a string returns the `err` of a result.

import { log } from "adeploy:plugin/host@0.1.0";

function stepsOf(service) {
  if (service.hosts.length === 0) return [{ service: service.name, host: undefined }];
  return service.hosts.map((host) => ({ service: service.name, host }));
}

export const strategy = {
  describe() {
    return { name: "{{name}}", version: "0.1.0", description: "{{description}}" };
  },

  // Two waves: the first service alone, then everything else. The host
  // honours depends-on inside a wave, so the order within a wave is free.
  plan(ctx) {
    const steps = ctx.services.flatMap(stepsOf);
    if (steps.length === 0) throw "no services to deploy";
    log("info", `{{name}}: ${steps.length} step(s)`);
    const waves = [{ steps: steps.slice(0, 1), pauseAfterS: 0 }];
    if (steps.length > 1) waves.push({ steps: steps.slice(1), pauseAfterS: 0 });
    return {
      waves,
      concurrency: Math.max(ctx.limits.concurrency, 1),
      validation: { healthChecks: true, samples: 1, intervalMs: 1000, soakS: 0 },
      failure: { maxFailures: 0, rollbackScope: "all" },
      notes: ["the first service alone, then the rest"],
    };
  },

  onProgress(_ctx, event) {
    switch (event.kind) {
      case "step-failed":
        return { tag: "rollback", val: event.message };
      case "over-budget":
        return { tag: "pause", val: 10 };
      default:
        return { tag: "continue" };
    }
  },
};

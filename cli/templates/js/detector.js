// {{name}}: an adeploy detector. It gathers evidence through the host
// imports (each needs a grant) and says which environment it points at. This
// one reads the APP_ENV variable (granted by plugins.{{name}}.grants.env).
//
// A host import that fails throws; the error's `payload` is the host-error
// variant, e.g. {tag: "denied", val: "..."}.

import { envVar } from "adeploy:plugin/host@0.1.0";

const NAMES = { local: "local", dev: "development", development: "development", stage: "staging", staging: "staging", prod: "production", production: "production" };

export const detector = {
  describe() {
    return { name: "{{name}}", version: "0.1.0", description: "{{description}}" };
  },

  detect(rules, _config) {
    let value;
    try {
      value = envVar("APP_ENV");
    } catch (e) {
      const err = e.payload ?? { tag: "failed", val: String(e) };
      if (err.tag !== "denied") throw `reading APP_ENV: ${err.tag}: ${err.val}`;
      return { environment: undefined, confidence: 0, evidence: [], notes: [`APP_ENV not readable: ${err.val}`] };
    }
    const env = value === undefined ? undefined : NAMES[value.trim().toLowerCase()];
    if (env === undefined) return { environment: undefined, confidence: 0, evidence: [], notes: [] };
    return {
      environment: env,
      confidence: 1.0,
      evidence: [{ method: "env-var", environment: env, weight: rules.weights.envVar, detail: `APP_ENV=${value}` }],
      notes: [],
    };
  },
};

// env-file (JavaScript detector): reads the environment's name from a file
// the operator names, e.g. /etc/adeploy/environment containing `staging`.
//
// Plugin config (JSON): `file` (required to detect anything: an absolute
// path, which the config must also grant under `grants.paths`) and `weight`
// (how much the evidence counts, default 1.0; the built-in detector's methods
// weigh 0.1 to 1.0, so a weight of 5 lets the file decide).
//
// A missing grant, a missing file or a name that is not an environment is a
// note, never an error: detection goes on with the other detectors.

import { readFile } from "adeploy:plugin/host@0.1.0";

const ENVIRONMENTS = ["local", "development", "staging", "production"];

function none(notes) {
  return { environment: undefined, confidence: 0, evidence: [], notes };
}

export const detector = {
  describe() {
    return { name: "env-file", version: "0.1.0", description: "reads the environment's name from a granted file" };
  },

  detect(_rules, config) {
    let cfg;
    try {
      cfg = config.trim() === "" ? {} : JSON.parse(config);
    } catch (e) {
      throw `plugin config is not valid JSON: ${e.message}`;
    }
    if (cfg === null || typeof cfg !== "object" || Array.isArray(cfg)) throw "plugin config must be a JSON object";
    for (const key of Object.keys(cfg).sort()) {
      if (key !== "file" && key !== "weight") throw `unknown config key \`${key}\` (accepted: file, weight)`;
    }
    if (cfg.file === undefined) return none(["no `file` configured: nothing to read"]);
    if (typeof cfg.file !== "string") throw "config key `file` must be a path";
    const weight = cfg.weight === undefined ? 1.0 : cfg.weight;
    if (typeof weight !== "number" || !(weight > 0)) throw "config key `weight` must be a positive number";

    let bytes;
    try {
      bytes = readFile(cfg.file, 256);
    } catch (e) {
      // A host error arrives as an exception whose payload is the host-error variant.
      const err = e.payload ?? e;
      return none([`cannot read ${cfg.file}: ${err.tag ?? "error"}: ${err.val ?? String(err)}`]);
    }
    const name = new TextDecoder().decode(bytes).trim().toLowerCase();
    if (!ENVIRONMENTS.includes(name)) {
      return none([`${cfg.file} names "${name}", which is not an environment (${ENVIRONMENTS.join(", ")})`]);
    }
    return {
      environment: name,
      confidence: 1.0,
      evidence: [{ method: "env-file", environment: name, weight, detail: `${cfg.file} says "${name}"` }],
      notes: [],
    };
  },
};

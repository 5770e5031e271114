// {{name}}: an adeploy hook. The host calls `run` at every phase of a
// deployment; throwing before the deployment aborts it, throwing for a
// service fails that step (see wit/hook.wit).

import { log } from "adeploy:plugin/host@0.1.0";

export const hook = {
  describe() {
    return { name: "{{name}}", version: "0.1.0", description: "{{description}}" };
  },

  run(phase, ctx) {
    const what = `${phase} of ${ctx.deployment.deploymentId} with ${ctx.strategy}`;
    log("info", `{{name}}: ${what}`);
    return { message: what, details: [{ key: "services", value: String(ctx.deployment.services.length) }] };
  },
};

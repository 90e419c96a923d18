import type { InvocationContext } from "@azure/functions";
import * as df from "durable-functions";
import type { OrchestrationClient } from "../../core/orchestrations.js";

/** Durable Functions' client behind the core's orchestration port. */
export function orchestrationClient(context: InvocationContext): OrchestrationClient {
  const client = df.getClient(context);
  return {
    async start(orchestrator, instanceId, input) {
      await client.startNew(orchestrator, { instanceId, input });
    },
    async status(instanceId) {
      try {
        const status = await client.getStatus(instanceId, { showInput: false });
        if (!status?.runtimeStatus) return undefined;
        return {
          runtimeStatus: String(status.runtimeStatus),
          customStatus: status.customStatus,
          output: status.output,
        };
      } catch (error) {
        // The client reports an unknown instance as an error that names the extension's 404.
        if (/\bHTTP 404\b/.test((error as Error).message)) return undefined;
        throw error;
      }
    },
  };
}

export const durableClientInput = df.input.durableClient();

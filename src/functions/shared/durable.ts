import type { InvocationContext } from "@azure/functions";
import * as df from "durable-functions";
import type { OrchestrationClient } from "../../core/backup/backup-service.js";

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
        return { runtimeStatus: String(status.runtimeStatus), customStatus: status.customStatus };
      } catch {
        return undefined;
      }
    },
    async raiseEvent(instanceId, eventName, data) {
      await client.raiseEvent(instanceId, eventName, data);
    },
  };
}

export const durableClientInput = df.input.durableClient();

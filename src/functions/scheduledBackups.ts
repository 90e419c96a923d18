import { app, type InvocationContext, type Timer } from "@azure/functions";
import { getServices } from "../core/services.js";
import { durableClientInput, orchestrationClient } from "./shared/durable.js";
import { contextLogger } from "./shared/http.js";

/** Every five minutes: start the scheduled backups that fell due (missed slots run once). */
export async function scheduledBackups(timer: Timer, context: InvocationContext): Promise<void> {
  const { backups } = await getServices();
  const started = await backups.startDue(new Date(), orchestrationClient(context));
  if (started.length > 0 || timer.isPastDue) {
    contextLogger(context).info("Scheduled backups started", {
      started: started.join(","),
      pastDue: timer.isPastDue,
    });
  }
}

app.timer("scheduledBackups", {
  schedule: "0 */5 * * * *",
  extraInputs: [durableClientInput],
  handler: scheduledBackups,
});

import { app } from "@azure/functions";
import { checkHealth } from "../core/health.js";
import { getServices } from "../core/services.js";
import { httpHandler, json } from "./shared/http.js";

export const health = httpHandler(async () => {
  const result = await checkHealth(getServices);
  return json(result.ok ? 200 : 503, result);
});

app.http("health", { route: "health", methods: ["GET"], authLevel: "function", handler: health });

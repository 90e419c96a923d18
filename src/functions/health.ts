import { checkHealth } from "../core/health.js";
import { getServices } from "../core/services.js";
import { httpHandler, json } from "./shared/http.js";
import { httpEndpoint } from "./shared/routes.js";

export const health = httpHandler(async () => {
  const result = await checkHealth(getServices);
  return json(result.ok ? 200 : 503, result);
});

httpEndpoint("health", { route: "health", methods: ["GET"], authLevel: "function", handler: health });

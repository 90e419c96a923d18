import { app } from "@azure/functions";
import { getRestoreServices } from "../core/restore/restore-services.js";
import { durableClientInput, orchestrationClient } from "./shared/durable.js";
import { httpHandler, json, readJsonBody } from "./shared/http.js";

// Restores from a backup run: start (or plan: dryRun), list an identity's, follow one (report at the end).

export const startRestore = httpHandler(async (request, context) => {
  const body = await readJsonBody(request);
  const { restores } = await getRestoreServices();
  const result = await restores.start(request.params.id ?? "", body, orchestrationClient(context));
  if (result.dryRun) return json(200, { dryRun: true, plan: result.plan });
  const statusUrl = `/api/restores/${result.restore.restoreId}`;
  return json(
    202,
    { restoreId: result.restore.restoreId, statusUrl, restore: result.restore },
    { location: statusUrl },
  );
});

export const listRestores = httpHandler(async (request) => {
  const { restores } = await getRestoreServices();
  return json(200, { restores: await restores.list(request.params.id ?? "") });
});

export const getRestore = httpHandler(async (request, context) => {
  const { restores } = await getRestoreServices();
  return json(200, await restores.get(request.params.restoreId ?? "", orchestrationClient(context)));
});

app.http("startRestore", {
  route: "identities/{id}/restores",
  methods: ["POST"],
  authLevel: "function",
  extraInputs: [durableClientInput],
  handler: startRestore,
});
app.http("listRestores", {
  route: "identities/{id}/restores",
  methods: ["GET"],
  authLevel: "function",
  handler: listRestores,
});
app.http("getRestore", {
  route: "restores/{restoreId}",
  methods: ["GET"],
  authLevel: "function",
  extraInputs: [durableClientInput],
  handler: getRestore,
});

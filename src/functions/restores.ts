import { getRestoreServices } from "../core/restore/restore-services.js";
import { durableClientInput, orchestrationClient } from "./shared/durable.js";
import { httpHandler, json, readJsonBody } from "./shared/http.js";
import { httpEndpoint } from "./shared/routes.js";

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

export const listRestores = httpHandler(async (request, context) => {
  const { restores } = await getRestoreServices();
  return json(200, { restores: await restores.list(request.params.id ?? "", orchestrationClient(context)) });
});

export const getRestore = httpHandler(async (request, context) => {
  const { restores } = await getRestoreServices();
  return json(200, await restores.get(request.params.restoreId ?? "", orchestrationClient(context)));
});

httpEndpoint("startRestore", {
  route: "identities/{id}/restores",
  methods: ["POST"],
  authLevel: "function",
  extraInputs: [durableClientInput],
  handler: startRestore,
});
httpEndpoint("listRestores", {
  route: "identities/{id}/restores",
  methods: ["GET"],
  authLevel: "function",
  extraInputs: [durableClientInput],
  handler: listRestores,
});
httpEndpoint("getRestore", {
  route: "restores/{restoreId}",
  methods: ["GET"],
  authLevel: "function",
  extraInputs: [durableClientInput],
  handler: getRestore,
});

import { getServices } from "../core/services.js";
import { durableClientInput, orchestrationClient } from "./shared/durable.js";
import { httpHandler, json, readJsonBody } from "./shared/http.js";
import { httpEndpoint } from "./shared/routes.js";

// Backups of an identity: start (one at a time), list, follow, cancel.

export const startBackup = httpHandler(async (request, context) => {
  // No body means "everything"; a JSON null is not an empty body and is refused by the schema.
  const body = await readJsonBody(request, { optional: true });
  const options = body === undefined ? {} : body;
  const { backups } = await getServices();
  const run = await backups.start(request.params.id ?? "", options, orchestrationClient(context));
  const statusUrl = `/api/backups/${run.runId}`;
  return json(202, { runId: run.runId, statusUrl, cancelUrl: statusUrl, run }, { location: statusUrl });
});

export const listBackups = httpHandler(async (request, context) => {
  const { backups } = await getServices();
  return json(200, { runs: await backups.list(request.params.id ?? "", orchestrationClient(context)) });
});

export const getBackup = httpHandler(async (request, context) => {
  const { backups } = await getServices();
  return json(200, await backups.get(request.params.runId ?? "", orchestrationClient(context)));
});

export const cancelBackup = httpHandler(async (request, context) => {
  const { backups } = await getServices();
  const run = await backups.cancel(request.params.runId ?? "", orchestrationClient(context));
  return json(202, { runId: run.runId, status: "cancelling", statusUrl: `/api/backups/${run.runId}` });
});

httpEndpoint("startBackup", {
  route: "identities/{id}/backups",
  methods: ["POST"],
  authLevel: "function",
  extraInputs: [durableClientInput],
  handler: startBackup,
});
httpEndpoint("listBackups", {
  route: "identities/{id}/backups",
  methods: ["GET"],
  authLevel: "function",
  extraInputs: [durableClientInput],
  handler: listBackups,
});
httpEndpoint("getBackup", {
  route: "backups/{runId}",
  methods: ["GET"],
  authLevel: "function",
  extraInputs: [durableClientInput],
  handler: getBackup,
});
httpEndpoint("cancelBackup", {
  route: "backups/{runId}",
  methods: ["DELETE"],
  authLevel: "function",
  extraInputs: [durableClientInput],
  handler: cancelBackup,
});

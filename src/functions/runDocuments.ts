import { getRunDocuments } from "../core/run-documents.js";
import { durableClientInput, orchestrationClient } from "./shared/durable.js";
import { httpHandler, jsonStream } from "./shared/http.js";
import { httpEndpoint } from "./shared/routes.js";

// A run's manifest and a restore's report, read through the API instead of with a Blob client.

export const getBackupManifest = httpHandler(async (request, context) => {
  const documents = await getRunDocuments();
  return jsonStream(await documents.manifest(request.params.runId ?? "", orchestrationClient(context)));
});

export const getRestoreReport = httpHandler(async (request, context) => {
  const documents = await getRunDocuments();
  return jsonStream(await documents.report(request.params.restoreId ?? "", orchestrationClient(context)));
});

httpEndpoint("getBackupManifest", {
  route: "backups/{runId}/manifest",
  methods: ["GET"],
  authLevel: "function",
  extraInputs: [durableClientInput],
  handler: getBackupManifest,
});
httpEndpoint("getRestoreReport", {
  route: "restores/{restoreId}/report",
  methods: ["GET"],
  authLevel: "function",
  extraInputs: [durableClientInput],
  handler: getRestoreReport,
});

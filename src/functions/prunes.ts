import { getServices } from "../core/services.js";
import { durableClientInput, orchestrationClient } from "./shared/durable.js";
import { httpHandler, json, readJsonBody } from "./shared/http.js";
import { httpEndpoint } from "./shared/routes.js";

// Prunes of an identity's backups by its retention policy: start one (or preview it: dryRun),
// list an identity's, follow one (its report at the end).

export const startPrune = httpHandler(async (request, context) => {
  const body = await readJsonBody(request, { optional: true });
  const { prunes } = await getServices();
  const result = await prunes.start(request.params.id ?? "", body, orchestrationClient(context));
  if (result.dryRun) return json(200, { dryRun: true, ...result.preview });
  const statusUrl = `/api/prunes/${result.prune.pruneId}`;
  return json(
    202,
    { pruneId: result.prune.pruneId, statusUrl, prune: result.prune },
    { location: statusUrl },
  );
});

export const listPrunes = httpHandler(async (request, context) => {
  const { prunes } = await getServices();
  return json(200, { prunes: await prunes.list(request.params.id ?? "", orchestrationClient(context)) });
});

export const getPrune = httpHandler(async (request, context) => {
  const { prunes } = await getServices();
  return json(200, await prunes.get(request.params.pruneId ?? "", orchestrationClient(context)));
});

httpEndpoint("startPrune", {
  route: "identities/{id}/prune",
  methods: ["POST"],
  authLevel: "function",
  extraInputs: [durableClientInput],
  handler: startPrune,
});
httpEndpoint("listPrunes", {
  route: "identities/{id}/prunes",
  methods: ["GET"],
  authLevel: "function",
  extraInputs: [durableClientInput],
  handler: listPrunes,
});
httpEndpoint("getPrune", {
  route: "prunes/{pruneId}",
  methods: ["GET"],
  authLevel: "function",
  extraInputs: [durableClientInput],
  handler: getPrune,
});

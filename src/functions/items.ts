import type { HttpRequest } from "@azure/functions";
import { getServices } from "../core/services.js";
import { httpHandler, json } from "./shared/http.js";
import { httpEndpoint } from "./shared/routes.js";

// Finding things in the backups: search every item ever captured, an item's versions and one of
// their files, what changed between two versions or two runs; and rebuilding the index.

/** The query string as an object, for the core's schema (unknown parameters are refused there). */
function queryOf(request: HttpRequest): Record<string, string> {
  return Object.fromEntries(request.query.entries());
}

export const searchItems = httpHandler(async (request) => {
  const { history } = await getServices();
  return json(200, await history.search(request.params.id ?? "", queryOf(request)));
});

export const itemVersions = httpHandler(async (request) => {
  const { history } = await getServices();
  return json(200, await history.versions(request.params.id ?? "", request.params.itemId ?? ""));
});

export const itemVersionFile = httpHandler(async (request) => {
  const { history } = await getServices();
  const file = await history.file(
    request.params.id ?? "",
    request.params.itemId ?? "",
    request.params.version ?? "",
    request.params.path ?? "",
  );
  return {
    status: 200,
    body: file.body,
    headers: {
      "content-type": file.contentType,
      "content-length": String(file.size),
      "content-disposition": `inline; filename*=UTF-8''${encodeURIComponent(file.fileName)}`,
      "x-content-type-options": "nosniff",
    },
  };
});

export const itemDiff = httpHandler(async (request) => {
  const { history } = await getServices();
  return json(
    200,
    await history.diffVersions(request.params.id ?? "", request.params.itemId ?? "", queryOf(request)),
  );
});

export const runDiff = httpHandler(async (request) => {
  const { history } = await getServices();
  return json(200, await history.diffRuns(request.params.runId ?? "", queryOf(request)));
});

export const rebuildIndex = httpHandler(async (request) => {
  const { history } = await getServices();
  return json(200, await history.rebuild(request.params.id ?? ""));
});

httpEndpoint("searchItems", {
  route: "identities/{id}/items",
  methods: ["GET"],
  authLevel: "function",
  handler: searchItems,
});
httpEndpoint("itemVersions", {
  route: "identities/{id}/items/{itemId}/versions",
  methods: ["GET"],
  authLevel: "function",
  handler: itemVersions,
});
httpEndpoint("itemVersionFile", {
  route: "identities/{id}/items/{itemId}/versions/{version}/files/{*path}",
  methods: ["GET"],
  authLevel: "function",
  handler: itemVersionFile,
});
httpEndpoint("itemDiff", {
  route: "identities/{id}/items/{itemId}/diff",
  methods: ["GET"],
  authLevel: "function",
  handler: itemDiff,
});
httpEndpoint("runDiff", {
  route: "backups/{runId}/diff",
  methods: ["GET"],
  authLevel: "function",
  handler: runDiff,
});
httpEndpoint("rebuildIndex", {
  route: "identities/{id}/index/rebuild",
  methods: ["POST"],
  authLevel: "function",
  handler: rebuildIndex,
});

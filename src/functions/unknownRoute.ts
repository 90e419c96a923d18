import { app, type HttpMethod } from "@azure/functions";
import { MethodNotAllowedError, NotFoundError } from "../core/errors.js";
import { httpHandler } from "./shared/http.js";
import { allowedMethods } from "./shared/routes.js";

/**
 * Every request no endpoint took: a JSON 405 (with `Allow`) when the path is served with other
 * methods, else a JSON 404 — instead of the host's empty 404.
 */
export const unknownRoute = httpHandler(async (request) => {
  const path = request.params.path ?? "";
  const allowed = allowedMethods(path);
  if (allowed.length > 0) throw new MethodNotAllowedError(request.method, `/api/${path}`, allowed);
  throw new NotFoundError(`No endpoint at ${request.method} /api/${path}`);
});

// Without `methods` the library would register GET and POST only.
const EVERY_METHOD: HttpMethod[] = [
  "GET",
  "POST",
  "PUT",
  "PATCH",
  "DELETE",
  "HEAD",
  "OPTIONS",
  "TRACE",
  "CONNECT",
];

// Azure tries HTTP routes in the order of their function names (case-insensitive), not by how
// specific they are, and the first route that matches the path and method wins: the "zz" keeps
// this catch-all behind every endpoint (test/e2e/unknown-routes.test.ts checks it stays last).
app.http("zzUnknownRoute", {
  route: "{*path}",
  methods: EVERY_METHOD,
  authLevel: "function",
  handler: unknownRoute,
});

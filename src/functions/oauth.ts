import { toView } from "../core/identities/identity.js";
import { getServices } from "../core/services.js";
import { baseUrlOf, httpHandler, json } from "./shared/http.js";
import { httpEndpoint } from "./shared/routes.js";

// The oauth2-user sign-in: start returns the portal's authorize URL; the portal sends the
// admin's browser back to the callback, which stores the refresh token.

export const startOAuth = httpHandler(async (request) => {
  const services = await getServices();
  const redirectUri = `${baseUrlOf(request, services.config.publicBaseUrl)}/api/oauth/callback`;
  return json(200, await services.oauth.start(request.params.id ?? "", redirectUri));
});

export const oauthCallback = httpHandler(async (request) => {
  const services = await getServices();
  const query = request.query;
  const identity = await services.oauth.complete({
    state: query.get("state"),
    code: query.get("code"),
    error: query.get("error_description") ?? query.get("error"),
  });
  const view = toView(identity);
  if ((request.headers.get("accept") ?? "").includes("text/html")) {
    const who = identity.auth.type === "oauth2-user" ? (identity.auth.username ?? "") : "";
    return {
      status: 200,
      headers: { "content-type": "text/html; charset=utf-8" },
      body: `<!doctype html><title>Signed in</title><p>${escapeHtml(identity.name)} is connected${who ? ` as ${escapeHtml(who)}` : ""}. You can close this window.</p>`,
    };
  }
  return json(200, view);
});

function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

httpEndpoint("startOAuth", {
  route: "identities/{id}/oauth/start",
  methods: ["POST"],
  authLevel: "function",
  handler: startOAuth,
});
// The portal redirects a browser here, which cannot carry a function key.
httpEndpoint("oauthCallback", {
  route: "oauth/callback",
  methods: ["GET"],
  authLevel: "anonymous",
  handler: oauthCallback,
});

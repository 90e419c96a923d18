import { verifyPortalAccess } from "../core/identities/verify.js";
import { getServices } from "../core/services.js";
import { httpHandler, json } from "./shared/http.js";
import { httpEndpoint } from "./shared/routes.js";

/** "Save and Verify": sign in to the portal, read the org and the user, record the outcome. */
export const verifyIdentity = httpHandler(async (request) => {
  const services = await getServices();
  const identity = await services.identities.get(request.params.id ?? "");
  let result: Awaited<ReturnType<typeof verifyPortalAccess>>;
  try {
    result = await verifyPortalAccess(identity, await services.portalFor(identity));
  } catch (error) {
    // Missing sign-in (oauth2-user never connected) is a verification outcome, not a crash.
    const { code, message } = error as { code?: string; message: string };
    result = {
      ok: false,
      at: new Date().toISOString(),
      warnings: [],
      error: { code: code ?? "ERR_VERIFY", message },
    };
  }
  await services.identities.record(identity.id, (next) => {
    next.lastVerifiedAt = result.at;
    next.lastVerification = result;
  });
  return json(200, result);
});

httpEndpoint("verifyIdentity", {
  route: "identities/{id}/verify",
  methods: ["POST"],
  authLevel: "function",
  handler: verifyIdentity,
});

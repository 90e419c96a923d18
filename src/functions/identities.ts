import { NotFoundError } from "../core/errors.js";
import { toView } from "../core/identities/identity.js";
import { getServices } from "../core/services.js";
import { httpHandler, json, readJsonBody } from "./shared/http.js";
import { httpEndpoint } from "./shared/routes.js";

// "Manage Identities": list, create, read, update (If-Match), delete.

export const listIdentities = httpHandler(async () => {
  const { identities } = await getServices();
  return json(200, { identities: await identities.list() });
});

export const createIdentity = httpHandler(async (request) => {
  const body = await readJsonBody(request);
  const { identities } = await getServices();
  const identity = await identities.create(body);
  return json(201, toView(identity), {
    location: `/api/identities/${identity.id}`,
    etag: identity.etag,
  });
});

export const getIdentity = httpHandler(async (request) => {
  const { identities } = await getServices();
  const identity = await identities.get(request.params.id ?? "");
  return json(200, toView(identity), { etag: identity.etag });
});

export const updateIdentity = httpHandler(async (request) => {
  const body = await readJsonBody(request);
  const { identities } = await getServices();
  const identity = await identities.update(
    request.params.id ?? "",
    body,
    request.headers.get("if-match") ?? undefined,
  );
  return json(200, toView(identity), { etag: identity.etag });
});

export const deleteIdentity = httpHandler(async (request) => {
  const { identities } = await getServices();
  const id = request.params.id ?? "";
  if (!id) throw new NotFoundError("Identity not found");
  await identities.delete(id);
  return { status: 204 };
});

httpEndpoint("listIdentities", {
  route: "identities",
  methods: ["GET"],
  authLevel: "function",
  handler: listIdentities,
});
httpEndpoint("createIdentity", {
  route: "identities",
  methods: ["POST"],
  authLevel: "function",
  handler: createIdentity,
});
httpEndpoint("getIdentity", {
  route: "identities/{id}",
  methods: ["GET"],
  authLevel: "function",
  handler: getIdentity,
});
httpEndpoint("updateIdentity", {
  route: "identities/{id}",
  methods: ["PATCH"],
  authLevel: "function",
  handler: updateIdentity,
});
httpEndpoint("deleteIdentity", {
  route: "identities/{id}",
  methods: ["DELETE"],
  authLevel: "function",
  handler: deleteIdentity,
});

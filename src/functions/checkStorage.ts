import { getServices } from "../core/services.js";
import { checkStorage as runStorageCheck, storageCheckHttpStatus } from "../core/storage/storage-check.js";
import { httpHandler, json, readJsonBody } from "./shared/http.js";
import { httpEndpoint } from "./shared/routes.js";

/** "Check Azure Credentials": writes and deletes a probe blob with the given credentials. */
export const checkStorage = httpHandler(async (request) => {
  const body = await readJsonBody(request);
  const services = await getServices();
  const result = await runStorageCheck(body, {
    allowInsecureLoopback: services.config.allowInsecureLoopback,
    credential: services.credential(),
  });
  return json(storageCheckHttpStatus(result), result);
});

httpEndpoint("checkStorage", {
  route: "storage/check",
  methods: ["POST"],
  authLevel: "function",
  handler: checkStorage,
});

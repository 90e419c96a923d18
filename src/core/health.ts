import { errorMessage } from "./errors.js";
import type { Services } from "./services.js";

export interface HealthCheck {
  name: "configuration" | "appStorage" | "secretStore";
  ok: boolean;
  reason?: string;
}

/** Configuration, the app's table storage and the secret store, each with the reason when not reachable. */
export async function checkHealth(
  load: () => Promise<Services>,
): Promise<{ ok: boolean; checks: HealthCheck[] }> {
  let services: Services;
  try {
    services = await load();
  } catch (error) {
    return { ok: false, checks: [{ name: "configuration", ok: false, reason: errorMessage(error) }] };
  }
  const checks: HealthCheck[] = [{ name: "configuration", ok: true }];
  const probe = async (name: HealthCheck["name"], run: () => Promise<unknown>) => {
    try {
      await run();
      checks.push({ name, ok: true });
    } catch (error) {
      checks.push({ name, ok: false, reason: errorMessage(error) });
    }
  };
  await probe("appStorage", () => services.identities.list());
  await probe("secretStore", () => services.secrets.check());
  return { ok: checks.every((c) => c.ok), checks };
}

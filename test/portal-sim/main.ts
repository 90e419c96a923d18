/** `npm run portal-sim`: one simulated org on PORTAL_SIM_PORT (default 7090) until Ctrl-C. */
import "../../tools/require-node.js";
import { startPortalSim } from "./index.js";
import type { SimSize } from "./shape.js";

const size = (process.env.PORTAL_SIM_SIZE ?? "small") as SimSize;
if (!["empty", "tiny", "small", "large"].includes(size)) {
  process.stderr.write(`PORTAL_SIM_SIZE must be empty | tiny | small | large, not ${size}\n`);
  process.exit(2);
}
const kind = process.env.PORTAL_SIM_KIND === "enterprise" ? "enterprise" : "online";
// ArcGIS Online answers a client in Azure in tens of milliseconds, not 0: this adds that delay to
// every answer, so a local run shows how concurrency and pacing behave against a real portal.
const latencyMs = Number(process.env.PORTAL_SIM_LATENCY_MS ?? 0);
if (!Number.isFinite(latencyMs) || latencyMs < 0 || latencyMs > 60_000) {
  process.stderr.write(
    `PORTAL_SIM_LATENCY_MS must be a number of milliseconds from 0 to 60000, not ${process.env.PORTAL_SIM_LATENCY_MS}\n`,
  );
  process.exit(2);
}
const sim = await startPortalSim({
  size,
  kind,
  port: Number(process.env.PORTAL_SIM_PORT ?? 7090),
  seed: Number(process.env.PORTAL_SIM_SEED ?? 1),
  requestUnitsPerMinute: Number(process.env.PORTAL_SIM_RU_PER_MIN ?? 10_000),
  latencyMs,
});
process.stdout.write(
  [
    `portal: ${sim.orgUrl}`,
    `admin: ${sim.admin.username} ${sim.admin.password}`,
    `oauth: ${sim.oauthApp.clientId} ${sim.oauthApp.clientSecret}`,
    `sharing: ${sim.sharingUrl}`,
    `org: ${sim.orgId} (${kind}, ${size}, ${sim.model.itemCount()} items, ${sim.model.users.length} users, ${latencyMs} ms latency)`,
    "",
  ].join("\n"),
);
const stop = async () => {
  await sim.close();
  process.exit(0);
};
process.on("SIGINT", () => void stop());
process.on("SIGTERM", () => void stop());

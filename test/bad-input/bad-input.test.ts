import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { mapWithConcurrency } from "../../src/core/concurrency.js";
import { type AppHarness, startAppHarness } from "../support/app-harness.js";
import { type Endpoint, fillRoute, registeredEndpoints, routeParams } from "./endpoints.js";
import {
  BAD_IDS,
  bodyProbes,
  identityProbes,
  type Probe,
  queryProbes,
  storageEndpointProbes,
} from "./probes.js";

// Every endpoint, fed what a careless or hostile client sends: each must answer a 4xx JSON error
// that names the field (or the body, or the resource), within a bounded time per request.

/** A request that does not answer within this long counts as a hang. */
const PER_REQUEST_MS = 5_000;

const endpoints = await registeredEndpoints();
let app: AppHarness;
let ids: Record<string, string>;
const tally = { tried: 0, rejected: 0 };

beforeAll(async () => {
  app = await startAppHarness();
  const created = await app.createIdentity();
  expect(created.status).toBe(201);
  // Well-formed ids that exist (the identity) or not (runs): a bad body must be the reason.
  ids = {
    id: created.body.id,
    runId: "b-0000000000000-aaaaaa",
    restoreId: "r-0000000000000-aaaaaa",
    pruneId: "p-0000000000000-aaaaaa",
    itemId: "0123456789abcdef0123456789abcdef",
    version: "v1700000000000",
    path: "data.json",
  };
});

afterAll(async () => {
  console.log(
    `Bad-input probes: ${tally.tried} tried / ${tally.rejected} rejected with a 4xx naming the field`,
  );
  await app?.close();
});

interface Outcome {
  probe: Probe;
  status: number | "no answer";
  error?: { code?: string; message?: string; field?: string };
  text?: string;
}

async function send(endpoint: Endpoint, probe: Probe): Promise<Outcome> {
  const url = `${app.host.baseUrl}/api/${probe.path ?? fillRoute(endpoint.route, ids)}${probe.query ?? ""}`;
  try {
    const response = await fetch(url, {
      method: endpoint.method,
      headers: probe.body === undefined ? {} : { "content-type": "application/json" },
      ...(probe.body === undefined ? {} : { body: probe.body }),
      signal: AbortSignal.timeout(PER_REQUEST_MS),
    });
    const text = await response.text();
    let error: Outcome["error"];
    try {
      error = (JSON.parse(text) as { error?: Outcome["error"] }).error;
    } catch {
      // not JSON: counted as not naming anything
    }
    return { probe, status: response.status, text, ...(error ? { error } : {}) };
  } catch {
    return { probe, status: "no answer" };
  }
}

/** A 4xx (the expected one, if given) whose JSON error names what the probe spoiled, and no secret. */
function rejectedAsExpected({ probe, status, error, text = "" }: Outcome): boolean {
  if (typeof status !== "number" || status < 400 || status > 499) return false;
  if (probe.status !== undefined && status !== probe.status) return false;
  if (!error?.code || !error.message) return false;
  if (secrets().some((secret) => text.includes(secret))) return false;
  if (probe.field !== undefined) return error.field === probe.field;
  return probe.mentions !== undefined && error.message.toLowerCase().includes(probe.mentions.toLowerCase());
}

/** What the probes carry that no answer may show. */
function secrets(): string[] {
  const accountKey = /AccountKey=([^;]+)/.exec(app.storageConnectionString)?.[1] ?? "";
  return [app.sim.admin.password, accountKey];
}

function probesFor(endpoint: Endpoint): Probe[] {
  const key = `${endpoint.method} ${endpoint.route}`;
  const base = BODIES[key]?.();
  const probes: Probe[] = [];
  for (const param of routeParams(endpoint.route)) {
    for (const bad of BAD_IDS) {
      probes.push({
        label: `${param} = ${bad.label}`,
        path: fillRoute(endpoint.route, { ...ids, [param]: bad.value }),
        // A valid body, so the path parameter is the one thing wrong.
        ...(base ? { body: JSON.stringify(base) } : {}),
        mentions: PARAM_NAMES[param] ?? param,
      });
    }
  }
  if (base) probes.push(...bodyProbes(base));
  if (base && (key === "POST identities" || key === "PATCH identities/{id}")) {
    probes.push(...identityProbes(base), ...storageEndpointProbes(base, "storage", app));
  }
  if (base && key === "POST storage/check") probes.push(...storageEndpointProbes(base, "", app));
  if (key === "GET oauth/callback") probes.push(...queryProbes());
  return probes;
}

/** What names the resource of a path parameter in a "not found" message. */
const PARAM_NAMES: Record<string, string> = {
  id: "identity",
  runId: "run",
  restoreId: "restore",
  pruneId: "prune",
  itemId: "item",
  version: "version",
  path: "file",
};

/** Every field of a retention policy, so that each is probed. */
const VALID_RETENTION = {
  keepLast: 10,
  keepDaily: 7,
  keepWeekly: 4,
  keepMonthly: 24,
  keepYearly: 3,
  keepWithinDays: 30,
  keepDeletedDays: 365,
};

/** A valid body of each endpoint that takes one; the probes spoil one thing at a time. */
const BODIES: Record<string, () => Record<string, unknown>> = {
  "POST identities": () => ({
    name: "Simulated org",
    kind: "arcgis-online",
    portalUrl: app.sim.orgUrl,
    auth: { type: "builtin", username: app.sim.admin.username, password: app.sim.admin.password },
    storage: { type: "azure-blob", container: "bad-input", connectionString: app.storageConnectionString },
    schedule: { cron: "0 0 2 * * *", enabled: true },
    maxOrgBudgetShare: 0.5,
    retention: VALID_RETENTION,
  }),
  "PATCH identities/{id}": () => ({
    name: "Renamed",
    schedule: { cron: "0 0 3 * * *", enabled: false },
    maxOrgBudgetShare: 0.25,
    retention: VALID_RETENTION,
  }),
  "POST storage/check": () => ({
    type: "azure-blob",
    container: "bad-input",
    connectionString: app.storageConnectionString,
    createIfMissing: true,
  }),
  "POST identities/{id}/backups": () => ({
    name: "nightly",
    filter: { types: ["Web Map"], tags: ["parks"] },
  }),
  "POST identities/{id}/prune": () => ({ dryRun: true }),
  "POST identities/{id}/restores": () => ({
    runId: "b-0000000000000-aaaaaa",
    target: { mode: "new", owner: "jsmith", folder: "Restored" },
    dryRun: true,
  }),
};

/** Endpoints that take nothing a client could spoil: no path parameter, body or query. */
const NO_INPUT = new Set(["GET identities", "GET health"]);
/** POST endpoints whose body is ignored (only their path parameter is input). */
const BODY_IGNORED = new Set([
  "POST identities/{id}/verify",
  "POST identities/{id}/oauth/start",
  "POST identities/{id}/index/rebuild",
]);

/** A new endpoint must say what input it takes: a body (BODIES), a query, or only its path. */
function isPlanned({ method, route }: Endpoint): boolean {
  const key = `${method} ${route}`;
  if (NO_INPUT.has(key) || BODY_IGNORED.has(key) || BODIES[key] || key === "GET oauth/callback") return true;
  return (method === "GET" || method === "DELETE") && routeParams(route).length > 0;
}

describe("bad input to every endpoint is a 4xx naming the field, in bounded time", () => {
  test("every registered endpoint is probed, or known to take no input", () => {
    expect(endpoints.length).toBeGreaterThan(15);
    expect(endpoints.filter((endpoint) => !isPlanned(endpoint))).toEqual([]);
  });

  test.each(endpoints.filter((e) => !NO_INPUT.has(`${e.method} ${e.route}`)))(
    "$method /api/$route",
    async (endpoint) => {
      const probes = probesFor(endpoint);
      expect(probes.length).toBeGreaterThan(0);
      expect(await unrejected(endpoint, probes)).toEqual([]);
    },
  );

  test("any other path: traversal and odd characters are a JSON 404", async () => {
    // Only encoded traversal reaches the app: fetch resolves plain dot segments before sending.
    const probes: Probe[] = [
      "..%2F..%2Fetc%2Fpasswd",
      "identities%2F..%2F..%2Fhealth",
      "%00",
      "%ED%A0%80",
    ].map((path) => ({ label: path, path, mentions: "endpoint", status: 404 }));
    expect(await unrejected({ method: "GET", route: "" }, probes)).toEqual([]);
  });
});

/** Sends the probes (a few at a time), counts them, and returns those not rejected as expected. */
async function unrejected(endpoint: Endpoint, probes: Probe[]) {
  const outcomes = await mapWithConcurrency(probes, 4, (probe) => send(endpoint, probe));
  const failures = outcomes.filter((outcome) => !rejectedAsExpected(outcome));
  tally.tried += outcomes.length;
  tally.rejected += outcomes.length - failures.length;
  return failures.map(({ probe, status, error }) => ({ probe: probe.label, status, error }));
}

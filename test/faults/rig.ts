/**
 * Fault proxies around the app's dependencies, and what a scenario cost in requests.
 *
 * Blob: the identity's connection string names a proxy in front of Azurite as its BlobEndpoint
 * (the app's own Durable state and tables stay on Azurite directly). Portal: the identity's
 * portalUrl is a proxy in front of the simulator, whose file-data redirects are rewritten to a
 * second proxy in front of its storage host. Feature-service URLs come inside item JSON and name
 * the simulator itself, so that traffic gets the simulator's own fault rules, every n-th request.
 */
import { inject, test } from "vitest";
import { connectionStringFor, DEV_ACCOUNT_NAME } from "../../tools/azurite.js";
import type { FaultRule, PortalSim } from "../portal-sim/index.js";
import { type FaultProxy, type ProxyFaultRule, startFaultProxy } from "../support/fault-proxy.js";

/** The long form: a larger org and higher fault shares (FAULTS_FULL=1). */
export const FULL = process.env.FAULTS_FULL === "1";

/** A quick-form share of requests, doubled in the long form. */
export const share = (quick: number): number => (FULL ? Math.min(1, quick * 2) : quick);

/** That share as scenario names give it. */
export const pct = (quick: number): string => `${Math.round(share(quick) * 100)}%`;

/** How long one backup or restore may take (a bound, not an expectation). */
export const RUN_TIMEOUT_MS = FULL ? 900_000 : 150_000;

export type Identity = { id: string; container: string };

/**
 * Registers each scenario as one test, `test.fails` while `knownFailures` names it (with its
 * cause): a scenario today's code does not survive stays in the suite, its checks unchanged.
 */
export function scenarioTests(knownFailures: Record<string, string>) {
  return (name: string, body: () => Promise<void>): void => {
    (knownFailures[name] ? test.fails : test)(name, { timeout: RUN_TIMEOUT_MS + 60_000 }, body);
  };
}

export interface ServiceFault {
  action: "status" | "reset" | "truncate" | "latency";
  /** Every n-th matching request to the simulator's feature services. */
  every: number;
  status?: number;
  latencyMs?: number;
  /** Tested against the simulator's route names; default every feature-service route. */
  routes?: RegExp;
}

export interface FaultScenario {
  name: string;
  /** Requests to Blob storage. */
  blob?: ProxyFaultRule[];
  /** Sharing REST requests. */
  portal?: ProxyFaultRule[];
  /** Item-data downloads from the simulator's storage host. */
  files?: ProxyFaultRule[];
  services?: ServiceFault;
}

export interface Traffic {
  /** Requests the app sent to Blob and to the portal (its storage host and services included). */
  requests: number;
  /** Faults injected: by the proxies, and by the simulator's service rule. */
  injected: number;
}

const ALL_SERVICE_ROUTES = /^services\//;

/** A proxy in front of the test run's Azurite blob endpoint, and a connection string through it. */
export async function startBlobProxy(seed: number): Promise<{ proxy: FaultProxy; connectionString: string }> {
  const azurite = inject("azurite");
  const proxy = await startFaultProxy({
    target: new URL(azurite.blobEndpoint).origin,
    flavour: "blob",
    seed,
  });
  const connectionString = connectionStringFor({
    blobEndpoint: `${proxy.origin}/${DEV_ACCOUNT_NAME}`,
    queueEndpoint: azurite.queueEndpoint,
    tableEndpoint: azurite.tableEndpoint,
  });
  return { proxy, connectionString };
}

/** Proxies in front of one simulated org: its portal and its file-storage host. */
export interface PortalProxies {
  sim: PortalSim;
  portal: FaultProxy;
  files: FaultProxy;
  /** The org URL to register: the simulator's, through the portal proxy. */
  portalUrl: string;
  close(): Promise<void>;
}

export async function startPortalProxies(sim: PortalSim, seed: number): Promise<PortalProxies> {
  const files = await startFaultProxy({ target: sim.storageUrl, flavour: "blob", seed: seed + 1 });
  const simOrigin = new URL(sim.orgUrl).origin;
  const portal = await startFaultProxy({
    target: simOrigin,
    flavour: "portal",
    seed,
    rewriteLocations: { [sim.storageUrl]: files.origin },
  });
  return {
    sim,
    portal,
    files,
    portalUrl: sim.orgUrl.replace(simOrigin, portal.origin),
    async close() {
      await portal.close();
      await files.close();
    },
  };
}

/** Arms a scenario's faults and zeroes every count, so `traffic` measures one run. */
export function arm(blob: FaultProxy, org: PortalProxies, scenario: FaultScenario): void {
  blob.setRules(scenario.blob ?? []);
  org.portal.setRules(scenario.portal ?? []);
  org.files.setRules(scenario.files ?? []);
  org.sim.setFaults(scenario.services ? [simRuleFor(scenario.services)] : []);
  for (const proxy of [blob, org.portal, org.files]) proxy.reset();
  org.sim.stats.reset();
}

export function disarm(blob: FaultProxy, org: PortalProxies): void {
  arm(blob, org, { name: "none" });
}

function simRuleFor(fault: ServiceFault): FaultRule {
  return {
    match: fault.routes ?? ALL_SERVICE_ROUTES,
    action: fault.action,
    every: fault.every,
    ...(fault.status !== undefined ? { status: fault.status } : {}),
    ...(fault.latencyMs !== undefined ? { latencyMs: fault.latencyMs } : {}),
  };
}

/**
 * Requests of the run just ended. Whatever reached the simulator is in its stats (through a
 * proxy or not); a proxy adds the requests it answered itself.
 */
export function traffic(blob: FaultProxy, org: PortalProxies, scenario: FaultScenario): Traffic {
  const answeredByProxies = [org.portal, org.files].reduce((sum, proxy) => {
    const counts = proxy.counts();
    return sum + counts.received - counts.forwarded;
  }, 0);
  const injected = [blob, org.portal, org.files].reduce(
    (sum, proxy) => sum + Object.values(proxy.counts().injected).reduce((a, b) => a + b, 0),
    0,
  );
  const services = scenario.services;
  // The simulator's rule fires on every n-th request it matches.
  const simInjected = services
    ? Math.floor(org.sim.stats.count(services.routes ?? ALL_SERVICE_ROUTES) / services.every)
    : 0;
  return {
    requests: blob.counts().received + answeredByProxies + org.sim.stats.count(),
    injected: injected + simInjected,
  };
}

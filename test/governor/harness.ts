import type { TableClient } from "@azure/data-tables";
import { GOVERNOR_TABLE } from "../../src/core/arcgis/governor/index.js";
import { PortalClient, type RequestPacer, type TokenProvider } from "../../src/core/arcgis/portal-client.js";
import { openAppTable } from "../../src/core/tables/table-client.js";
import { type PortalSim, type PortalSimOptions, startPortalSim } from "../portal-sim/index.js";
import { tokenFor } from "../portal-sim/test-helpers.js";

export interface MeteredSim {
  sim: PortalSim;
  /** …/FeatureServer/0 of a layer with `features` features. */
  layerUrl: string;
  tokens: TokenProvider;
}

/** An Online org with one hosted feature service whose first layer holds `features` features. */
export async function startMeteredSim(
  options: { features: number; budget: number; coolOffMs: number; windowMs: number } & Pick<
    PortalSimOptions,
    "latencyMs" | "kind"
  >,
): Promise<MeteredSim> {
  const sim = await startPortalSim({
    size: "empty",
    seed: 42,
    kind: options.kind ?? "online",
    latencyMs: options.latencyMs ?? 2,
    requestUnitsPerMinute: options.budget,
    coolOffMs: options.coolOffMs,
    requestUnitsWindowMs: options.windowMs,
    overrides: { items: { featureService: 1 }, bigLayerFeatures: options.features },
  });
  const service = [...sim.model.items()].find((item) => item.type === "Feature Service");
  if (!service?.url) throw new Error("the simulator made no feature service");
  const token = await tokenFor(sim);
  return {
    sim,
    layerUrl: `${service.url}/0`,
    tokens: { getToken: async () => token, invalidate: () => {} },
  };
}

/** What a client's fetch saw: each metered response's cost and time, and 429s in both forms. */
export interface FetchLog {
  spends: { t: number; units: number }[];
  /** When each request left (redirect hops included). */
  sent: { t: number; url: string }[];
  /** When each 429 (either form) came back. */
  throttledAt: number[];
  /** Most requests to ArcGIS Server (`/rest/services/`) in flight at once. */
  maxInFlight: number;
  throttled: number;
  /** Highest sum of costs in any window of `windowMs` (by response time). */
  peak(windowMs: number): number;
}

/** Highest sum of units in any window of `windowMs`, of spends in time order. */
export function peakSpend(spends: readonly { t: number; units: number }[], windowMs: number): number {
  let best = 0;
  let sum = 0;
  let tail = 0;
  for (const spend of spends) {
    sum += spend.units;
    while ((spends[tail]?.t ?? 0) <= spend.t - windowMs) sum -= spends[tail++]?.units ?? 0;
    best = Math.max(best, sum);
  }
  return best;
}

/**
 * A fetch that logs costs and 429s in both forms (the portal client itself tells the pacer; an
 * `onThrottled` given here is for pacers used without a portal client).
 */
export function loggingFetch(onThrottled?: (url: string, retryAfterMs: number | undefined) => void): {
  fetch: typeof fetch;
  log: FetchLog;
} {
  const spends: { t: number; units: number }[] = [];
  const log: FetchLog = {
    spends,
    sent: [],
    throttledAt: [],
    maxInFlight: 0,
    throttled: 0,
    peak: (windowMs) => peakSpend(spends, windowMs),
  };
  let inFlight = 0;
  const wrapped: typeof fetch = async (input, init) => {
    const url = String(input);
    const metered = url.includes("/rest/services/");
    log.sent.push({ t: Date.now(), url });
    if (metered) log.maxInFlight = Math.max(log.maxInFlight, ++inFlight);
    let response: Response;
    try {
      response = await fetch(input, init);
    } finally {
      if (metered) inFlight--;
    }
    const cost = Number(response.headers.get("x-esri-query-request-units") ?? Number.NaN);
    if (Number.isFinite(cost)) spends.push({ t: Date.now(), units: cost });
    if (response.status === 429) {
      log.throttled++;
      log.throttledAt.push(Date.now());
    } else if (response.status === 200 && response.headers.get("content-type")?.includes("json")) {
      const text = await response.clone().text();
      if (/"error"\s*:\s*\{\s*"code"\s*:\s*429/.test(text)) {
        log.throttled++;
        log.throttledAt.push(Date.now());
        const retryAfter = Number(response.headers.get("retry-after") ?? Number.NaN);
        onThrottled?.(url, Number.isFinite(retryAfter) ? retryAfter * 1000 : undefined);
      }
    }
    return response;
  };
  return { fetch: wrapped, log };
}

/** What a pacer let go, in order, and where in that order it was first told of a 429. */
export interface PacerLog {
  /** When (Date.now(), the governor's clock) and what the pacer let go, in order. */
  released: { t: number; url: string }[];
  /** How many it had let go when first told of a 429; undefined while it was not. */
  releasedBeforeThrottle: number | undefined;
}

/** A pacer that logs what the given one lets go, for checks on the order of events. */
export function recordingPacer(pacer: RequestPacer): { pacer: RequestPacer; log: PacerLog } {
  const log: PacerLog = { released: [], releasedBeforeThrottle: undefined };
  const throttled = () => {
    log.releasedBeforeThrottle ??= log.released.length;
  };
  return {
    log,
    pacer: {
      beforeRequest: async (url, params) => {
        await pacer.beforeRequest(url, params);
        log.released.push({ t: Date.now(), url });
      },
      afterResponse: (observation) => {
        if (observation.throttled) throttled();
        pacer.afterResponse(observation);
      },
      onThrottled: (url, retryAfterMs) => {
        throttled();
        pacer.onThrottled?.(url, retryAfterMs);
      },
    },
  };
}

export function portalClient(
  metered: MeteredSim,
  options: { pacer?: RequestPacer; fetch?: typeof fetch; maxRetries?: number } = {},
): PortalClient {
  return new PortalClient({
    sharingUrl: metered.sim.sharingUrl,
    tokens: metered.tokens,
    baseDelayMs: 50,
    maxDelayMs: 1_000,
    ...options,
  });
}

/**
 * Pages the layer (`resultOffset`), `concurrency` queries at a time; returns the features read.
 * With `onError` a failed page is reported and skipped; without, the first failure rejects.
 */
export async function pageLayer(
  client: PortalClient,
  layerUrl: string,
  options: { features: number; pageSize: number; concurrency: number; onError?: (error: unknown) => void },
): Promise<number> {
  const offsets: number[] = [];
  for (let offset = 0; offset < options.features; offset += options.pageSize) offsets.push(offset);
  let next = 0;
  let read = 0;
  const worker = async () => {
    while (next < offsets.length) {
      const offset = offsets[next++] as number;
      try {
        const page = await client.json<{ features?: unknown[] }>(`${layerUrl}/query`, {
          where: "1=1",
          outFields: "*",
          returnGeometry: false,
          orderByFields: "OBJECTID",
          resultOffset: offset,
          resultRecordCount: options.pageSize,
        });
        read += page.features?.length ?? 0;
      } catch (error) {
        if (!options.onError) throw error;
        options.onError(error);
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  return read;
}

/** Samples the simulator's meter while a workload runs. */
export function sampleUsage(sim: PortalSim, everyMs = 5): { stop(): { peak: number; samples: number } } {
  let peak = 0;
  let samples = 0;
  const timer = setInterval(() => {
    peak = Math.max(peak, sim.requestUnits().usage);
    samples++;
  }, everyMs);
  return {
    stop() {
      clearInterval(timer);
      return { peak, samples };
    },
  };
}

/** The app's governor table on the given storage (created once). */
export function governorTable(connectionString: string): Promise<TableClient> {
  return openAppTable({ connectionString }, GOVERNOR_TABLE, () => {
    throw new Error("a connection string needs no credential");
  });
}

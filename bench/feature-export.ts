import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { BlobServiceClient } from "@azure/storage-blob";
import type { InventoryRecord } from "../src/core/backup/inventory.js";
import { recordOf } from "../test/feature-data/support.js";
import { startAzurite } from "../tools/azurite.js";
import type { BenchResult, BenchSection } from "./types.js";

/**
 * Hosted feature data export (issue #7): one layer of 1,000,000 features with 10,000 attachments
 * (quick: 100,000 / 1,000) served by the portal simulator in this process.
 *
 * Each measurement runs in its own child process talking to the simulator over HTTP, so the
 * simulator's own memory and CPU never count against the exporter, and the baseline pays the
 * same transport: the "raw" child is a bare loop of the simulator's cheapest query (object id
 * ranges, same page size, body read and dropped), the "export" child runs `exportItem` with
 * `createFeatureDataExporter` into Azurite (on disk, so stored blobs do not grow its memory).
 * Peak RSS is the child's own (`process.resourceUsage().maxRSS`), imports and sign-in included
 * (the child runs TypeScript through tsx, whose loader alone adds ~40 MB over plain node), at two
 * layer sizes to show it does not grow with the layer; it is also given above the child's RSS
 * once everything is imported and signed in, and sampled per phase (pages, NDJSON upload,
 * attachments, finish).
 */
export const benchFeatureExport: BenchSection = async ({ quick }) => {
  const features = quick ? 100_000 : 1_000_000;
  const attachmentCount = quick ? 1_000 : 10_000;
  const small = quick ? 10_000 : 100_000;
  const rounds = quick ? 3 : 2;
  const work = await mkdtemp(path.join(tmpdir(), "bench-features-"));
  const azurite = await startAzurite({ location: path.join(work, "azurite") });
  try {
    const big = await measure({
      features,
      attachments: attachmentCount,
      azurite: azurite.connectionString,
      work,
      rounds,
    });
    const flat = await measure({
      features: small,
      attachments: Math.round(attachmentCount / 10),
      azurite: azurite.connectionString,
      work,
      rounds: 1,
      exportOnly: true,
    });
    const first = big.exports[0] as ExportReport;
    const bestExport = best(big.exports.map((e) => e.features / e.pagesSeconds));
    const bestEndToEnd = best(big.exports.map((e) => e.features / e.featuresSeconds));
    const bestRaw = best(big.raws.map((r) => r.features / r.seconds));
    const peakKb = Math.max(...big.exports.map((e) => e.maxRssKb));
    const smallPeakKb = Math.max(...flat.exports.map((e) => e.maxRssKb));
    const mb = (kb: number) => Math.round(kb / 1024);
    const perThousand = (cpu: number, n: number) => round((cpu * 1000 * 1000) / n);
    const result: BenchResult = {
      name: "feature-export",
      metrics: {
        features,
        attachments: first.attachments,
        pageSize: big.pageSize,
        rounds,
        "raw query features/s (bare loop, best)": Math.round(bestRaw),
        "raw query features/s (each round)": big.raws
          .map((r) => Math.round(r.features / r.seconds))
          .join(" "),
        "export features/s (fetch, verify, NDJSON to cache; best)": Math.round(bestExport),
        "export features/s (each round)": big.exports
          .map((e) => Math.round(e.features / e.pagesSeconds))
          .join(" "),
        "export features/s incl. blob upload (best)": Math.round(bestEndToEnd),
        "raw child CPU ms per 1000 features": perThousand(
          best(big.raws.map((r) => -r.cpuSeconds)) * -1,
          features,
        ),
        "export child CPU ms per 1000 features (features phase)": perThousand(
          Math.min(...big.exports.map((e) => e.pagesCpuSeconds)),
          features,
        ),
        "attachments/s": Math.round(first.attachments / first.attachmentsSeconds),
        "export total s (round 1, with attachments)": round(first.totalSeconds),
        "NDJSON MB": Math.round(first.ndjsonBytes / 1e6),
        [`peak RSS MB at ${small} features`]: mb(smallPeakKb),
        [`peak RSS MB at ${features} features`]: mb(peakKb),
        [`peak RSS MB above the child's post-import baseline at ${small}`]: mb(
          smallPeakKb - (flat.exports[0] as ExportReport).baselineRssKb,
        ),
        [`peak RSS MB above the child's post-import baseline at ${features}`]: mb(
          peakKb - first.baselineRssKb,
        ),
        "RSS MB after imports and sign-in, before export": mb(first.baselineRssKb),
        [`peak RSS MB by phase at ${features} (pages/upload/attachments/finish)`]: Object.values(
          first.phaseRssKb,
        )
          .map(mb)
          .join(" / "),
        [`peak RSS MB by phase at ${small} (pages/upload/attachments/finish)`]: Object.values(
          (flat.exports[0] as ExportReport).phaseRssKb,
        )
          .map(mb)
          .join(" / "),
        "raw child peak RSS MB": mb(Math.max(...big.raws.map((r) => r.maxRssKb))),
      },
      ratios: [
        {
          name: "export / raw query features per second",
          value: bestExport / bestRaw,
          target: 0.8,
          higherIsBetter: true,
        },
        { name: "export incl. upload / raw query features per second", value: bestEndToEnd / bestRaw },
        {
          name: `peak RSS MB at ${features} features`,
          value: mb(peakKb),
          target: 256,
          higherIsBetter: false,
        },
        { name: `peak RSS growth ${small} -> ${features} features (MB)`, value: mb(peakKb - smallPeakKb) },
      ],
    };
    return result;
  } finally {
    await azurite.stop();
    await rm(work, { recursive: true, force: true });
  }
};

function best(values: number[]): number {
  return Math.max(...values);
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}

interface ExportReport {
  status: string;
  error?: string;
  features: number;
  attachments: number;
  ndjsonBytes: number;
  pagesSeconds: number;
  featuresSeconds: number;
  attachmentsSeconds: number;
  totalSeconds: number;
  pagesCpuSeconds: number;
  baselineRssKb: number;
  /** Sampled peak RSS while pages are fetched, while the NDJSON uploads, during attachments, after. */
  phaseRssKb: { pages: number; upload: number; attachments: number; finish: number };
  maxRssKb: number;
  cpuSeconds: number;
}

interface RawReport {
  features: number;
  seconds: number;
  maxRssKb: number;
  cpuSeconds: number;
}

interface ChildConfig {
  mode: "raw" | "export";
  sharingUrl: string;
  username: string;
  password: string;
  serviceUrl: string;
  layerId: number;
  features: number;
  pageSize: number;
  azurite: string;
  container: string;
  cacheDirectory: string;
  record: InventoryRecord;
}

/** Builds a simulator with one big layer, then runs the raw loop and the exporter against it. */
async function measure(options: {
  features: number;
  attachments: number;
  azurite: string;
  work: string;
  rounds: number;
  exportOnly?: boolean;
}): Promise<{ pageSize: number; raws: RawReport[]; exports: ExportReport[] }> {
  const { startPortalSim } = await import("../test/portal-sim/index.js");
  const { bufferSource, prngSource } = await import("../test/portal-sim/prng.js");
  const sim = await startPortalSim({
    seed: 77,
    size: "empty",
    overrides: {
      items: { featureService: 1 },
      featuresPerLayer: 10,
      bigLayerFeatures: options.features,
      attachmentsPerFeature: 0,
    },
    requestUnitsPerMinute: 1e12,
  });
  try {
    const item = [...sim.model.items()].find((i) => i.type === "Feature Service");
    if (!item?.url) throw new Error("the simulator has no feature service");
    const index = sim.model.indexOf(item.id) as number;
    const def = sim.model.pinService(index);
    const layer = def?.layers[0];
    if (!def || !layer || layer.store.count() !== options.features)
      throw new Error("unexpected simulator shape");
    // Attachments spread evenly: mostly small photos, every 50th empty, every 500th 1 MB.
    const every = Math.max(1, Math.floor(options.features / options.attachments));
    for (let n = 0; n < options.attachments; n++) {
      const oid = 1 + n * every;
      const size = n % 50 === 0 ? 0 : n % 500 === 1 ? 1024 * 1024 : 2_000 + ((n * 7919) % 30_000);
      layer.store.setAttachments(oid, [
        {
          id: n + 1,
          globalId: `00000000-0000-4000-8000-${String(n + 1).padStart(12, "0")}`,
          name: `photo ${oid}.jpg`,
          contentType: "image/jpeg",
          size,
          keywords: "",
          source: size === 0 ? bufferSource(new Uint8Array(0)) : prngSource(n + 1, size),
        },
      ]);
    }
    const base = {
      sharingUrl: sim.sharingUrl,
      username: sim.admin.username,
      password: sim.admin.password,
      serviceUrl: item.url,
      layerId: layer.id,
      features: options.features,
      pageSize: layer.maxRecordCount,
      azurite: options.azurite,
    };
    const raws: RawReport[] = [];
    const exports: ExportReport[] = [];
    // Raw and export alternate, so a busy machine weighs on both alike; later rounds go without
    // attachments (their index is then empty) to keep the run short.
    for (let round = 0; round < options.rounds; round++) {
      if (round === 1)
        for (let n = 0; n < options.attachments; n++) layer.store.setAttachments(1 + n * every, []);
      if (!options.exportOnly) {
        raws.push(
          await child<RawReport>({
            ...base,
            mode: "raw",
            container: "",
            cacheDirectory: "",
            record: recordOf(item),
          }),
        );
      }
      const container = `bench-${randomBytes(4).toString("hex")}`;
      const containerClient = BlobServiceClient.fromConnectionString(options.azurite).getContainerClient(
        container,
      );
      await containerClient.create();
      const exported = await child<ExportReport>({
        ...base,
        mode: "export",
        container,
        cacheDirectory: path.join(options.work, `cache-${container}`),
        record: recordOf(item),
      });
      await containerClient.delete();
      if (exported.status !== "exported")
        throw new Error(`export failed: ${exported.error ?? exported.status}`);
      const wantAttachments = round === 0 ? options.attachments : 0;
      if (exported.features !== options.features || exported.attachments !== wantAttachments) {
        throw new Error(
          `export incomplete: ${exported.features} features, ${exported.attachments} attachments`,
        );
      }
      exports.push(exported);
    }
    return { pageSize: layer.maxRecordCount, raws, exports };
  } finally {
    await sim.close();
  }
}

const THIS_FILE = fileURLToPath(import.meta.url);

function child<T>(config: ChildConfig): Promise<T> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ["--import", "tsx", THIS_FILE], {
      env: { ...process.env, FEATURE_BENCH_CHILD: JSON.stringify(config) },
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    proc.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString("utf8");
    });
    proc.on("error", reject);
    proc.on("close", (code) => {
      const line = out.split("\n").find((l) => l.startsWith("RESULT "));
      if (code !== 0 || !line) {
        reject(new Error(`bench child (${config.mode}) exited with ${code}: ${out.slice(-2000)}`));
        return;
      }
      resolve(JSON.parse(line.slice("RESULT ".length)) as T);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Child side

async function runChild(config: ChildConfig): Promise<void> {
  const report = config.mode === "raw" ? await rawLoop(config) : await exportChild(config);
  process.stdout.write(`RESULT ${JSON.stringify(report)}\n`);
}

async function signIn(config: ChildConfig) {
  const { PortalClient } = await import("../src/core/arcgis/portal-client.js");
  const { UsernamePasswordTokenProvider } = await import("../src/core/arcgis/token-providers.js");
  const tokenClient = new PortalClient({ sharingUrl: config.sharingUrl });
  const tokens = new UsernamePasswordTokenProvider(tokenClient, {
    username: config.username,
    password: config.password,
    referer: tokenClient.referer,
  });
  return {
    portal: new PortalClient({ sharingUrl: config.sharingUrl, tokens }),
    tokens,
    referer: tokenClient.referer,
  };
}

/** The simulator's own query throughput: object id ranges of one page each, bodies dropped. */
async function rawLoop(config: ChildConfig): Promise<RawReport> {
  const { tokens, referer } = await signIn(config);
  const token = await tokens.getToken();
  const url = `${config.serviceUrl}/${config.layerId}/query`;
  const cpuAtStart = cpuSeconds();
  const started = performance.now();
  let features = 0;
  for (let lo = 1; lo <= config.features; lo += config.pageSize) {
    const hi = Math.min(config.features, lo + config.pageSize - 1);
    const body = new URLSearchParams({
      where: `OBJECTID >= ${lo} AND OBJECTID <= ${hi}`,
      outFields: "*",
      returnGeometry: "true",
      f: "json",
      token,
    });
    const response = await fetch(url, { method: "POST", body, headers: { referer } });
    const bytes = await response.arrayBuffer();
    if (!response.ok || bytes.byteLength < 100) throw new Error(`raw query failed: HTTP ${response.status}`);
    features += hi - lo + 1;
  }
  return {
    features,
    seconds: (performance.now() - started) / 1000,
    maxRssKb: process.resourceUsage().maxRSS,
    cpuSeconds: cpuSeconds() - cpuAtStart,
  };
}

async function exportChild(config: ChildConfig): Promise<ExportReport> {
  const { BlobBackupStore } = await import("../src/core/storage/blob-backup-store.js");
  const { CacheSpace } = await import("../src/core/backup/cache.js");
  const { exportItem } = await import("../src/core/backup/export-item.js");
  const { createFeatureDataExporter } = await import("../src/core/backup/feature-export.js");
  const { silentLogger } = await import("../src/core/log.js");
  const { portal, tokens } = await signIn(config);
  await tokens.getToken();
  const container = BlobServiceClient.fromConnectionString(config.azurite).getContainerClient(
    config.container,
  );
  const store = new BlobBackupStore(container, "00000000-0000-4000-8000-00000000be7c");
  const baselineRssKb = Math.round(process.memoryUsage().rss / 1024);
  // Peak RSS per phase, sampled: where the memory goes if it grows.
  let phase: keyof ExportReport["phaseRssKb"] = "pages";
  const phaseRssKb: ExportReport["phaseRssKb"] = { pages: 0, upload: 0, attachments: 0, finish: 0 };
  const sampler = setInterval(() => {
    phaseRssKb[phase] = Math.max(phaseRssKb[phase], Math.round(process.memoryUsage.rss() / 1024));
  }, 25);
  const started = performance.now();
  let pagesDone = started;
  let pagesCpu = 0;
  const cpuAtStart = cpuSeconds();
  let featuresDone = started;
  let attachmentsDone = started;
  let features = 0;
  const exporter = createFeatureDataExporter(portal, {
    onProgress(event) {
      if (event.layerId !== config.layerId) return;
      if (event.phase === "features") {
        features = event.done;
        if (event.done === event.expected && pagesDone === started) {
          pagesDone = performance.now();
          phase = "upload";
          pagesCpu = cpuSeconds() - cpuAtStart;
        }
        if (event.finished) {
          featuresDone = performance.now();
          phase = "attachments";
        }
      } else if (event.finished) {
        attachmentsDone = performance.now();
        phase = "finish";
      }
    },
  });
  const result = await exportItem(
    {
      runId: "b-feature-export",
      portal,
      store,
      cacheDirectory: config.cacheDirectory,
      cacheSpace: new CacheSpace(4 * 1024 * 1024 * 1024),
      log: silentLogger,
      serviceData: exporter,
    },
    config.record,
  );
  const finished = performance.now();
  clearInterval(sampler);
  await rm(config.cacheDirectory, { recursive: true, force: true });
  const ndjson = result.files.find((f) => f.path === `features/${config.layerId}.ndjson`);
  return {
    status: result.status,
    ...(result.error ? { error: `${result.error.code}: ${result.error.message}` } : {}),
    features: result.counts?.[`features:${config.layerId}`] ?? features,
    attachments: result.counts?.[`attachments:${config.layerId}`] ?? 0,
    ndjsonBytes: ndjson?.size ?? 0,
    pagesSeconds: (pagesDone - started) / 1000,
    featuresSeconds: (featuresDone - started) / 1000,
    attachmentsSeconds: (attachmentsDone - featuresDone) / 1000,
    totalSeconds: (finished - started) / 1000,
    pagesCpuSeconds: pagesCpu,
    baselineRssKb,
    phaseRssKb,
    maxRssKb: process.resourceUsage().maxRSS,
    cpuSeconds: cpuSeconds(),
  };
}

function cpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

const childConfig = process.env.FEATURE_BENCH_CHILD;
if (childConfig && process.argv[1] && path.resolve(process.argv[1]) === THIS_FILE) {
  await runChild(JSON.parse(childConfig) as ChildConfig);
}

import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startAzurite } from "../tools/azurite.js";
import type { BenchSection } from "./types.js";

/**
 * The local host's Durable overhead: one orchestration fans out N trivial activities (10,000;
 * quick: 1,000) with 16 concurrent activities, on in-memory Azurite, the host in a child process.
 * Baseline: the same N trivial async calls as one Promise.all in a plain Node process.
 * Reports activities per second and peak RSS (VmHWM) of each process.
 */

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const APP = path.join(REPO, "test/local-host/app");

function peakRssMb(pid: number): Promise<number> {
  return import("node:fs/promises").then(async (fs) => {
    const status = await fs.readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
    const kb = /VmHWM:\s+(\d+)/.exec(status)?.[1];
    return kb ? Number(kb) / 1024 : Number.NaN;
  });
}

async function runBaseline(n: number): Promise<{ seconds: number; peakRssMb: number }> {
  const script = `
    const noop = async (i) => i;
    const started = performance.now();
    const results = await Promise.all(Array.from({ length: ${n} }, (_, i) => noop(i)));
    const seconds = (performance.now() - started) / 1000;
    const status = require("node:fs").readFileSync("/proc/self/status", "utf8");
    const kb = Number(/VmHWM:\\s+(\\d+)/.exec(status)?.[1] ?? "NaN");
    console.log(JSON.stringify({ seconds, peakRssMb: kb / 1024, count: results.length }));
  `;
  const child = spawn(process.execPath, ["--input-type=commonjs", "-e", `(async () => {${script}})()`], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout.on("data", (c) => {
    out += c;
  });
  await new Promise((resolve) => child.once("exit", resolve));
  return JSON.parse(out) as { seconds: number; peakRssMb: number };
}

async function runHost(n: number, connectionString: string): Promise<{ seconds: number; peakRssMb: number }> {
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      "tools/local-host/main.ts",
      "--app-root",
      APP,
      "--entry",
      "src/index.ts",
      "--entry",
      "src/functions/durable.ts",
      "--port",
      "0",
      "--task-hub",
      `Bench${Date.now()}`,
      "--max-activities",
      "16",
      "--no-timers",
    ],
    {
      cwd: REPO,
      env: { ...process.env, AzureWebJobsStorage: connectionString },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let output = "";
  child.stdout.on("data", (c) => {
    output += c;
  });
  child.stderr.on("data", (c) => {
    output += c;
  });
  try {
    const deadline = Date.now() + 60_000;
    let baseUrl: string | undefined;
    while (!baseUrl) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`host did not start:\n${output}`);
      baseUrl = /Listening on (http:\/\/\S+)/.exec(output)?.[1];
      await new Promise((r) => setTimeout(r, 50));
    }
    const started = performance.now();
    // Create-and-wait: the response comes when the orchestration has completed.
    const response = await fetch(
      `${baseUrl}/runtime/webhooks/durabletask/orchestrators/benchFanOut?timeout=600`,
      { method: "POST", body: JSON.stringify({ n }) },
    );
    const result = await response.json();
    const seconds = (performance.now() - started) / 1000;
    if (response.status !== 200 || result !== n) {
      throw new Error(`fan-out did not complete: ${response.status} ${JSON.stringify(result)}\n${output}`);
    }
    return { seconds, peakRssMb: await peakRssMb(child.pid!) };
  } finally {
    child.kill("SIGKILL");
  }
}

export const benchLocalHost: BenchSection = async ({ quick }) => {
  const n = quick ? 1_000 : 10_000;
  const azurite = await startAzurite();
  try {
    const host = await runHost(n, azurite.connectionString);
    const baseline = await runBaseline(n);
    const hostRate = n / host.seconds;
    const baselineRate = n / baseline.seconds;
    return {
      name: "local-host",
      metrics: {
        activities: n,
        hostSeconds: Number(host.seconds.toFixed(3)),
        hostActivitiesPerSecond: Math.round(hostRate),
        hostPeakRssMb: Math.round(host.peakRssMb),
        baselineSeconds: Number(baseline.seconds.toFixed(4)),
        baselineActivitiesPerSecond: Math.round(baselineRate),
        baselinePeakRssMb: Math.round(baseline.peakRssMb),
      },
      ratios: [
        {
          name: "host time / Promise.all time (overhead factor)",
          value: host.seconds / baseline.seconds,
          higherIsBetter: false,
        },
        {
          name: "host peak RSS / baseline peak RSS",
          value: host.peakRssMb / baseline.peakRssMb,
          higherIsBetter: false,
        },
      ],
    };
  } finally {
    await azurite.stop();
  }
};

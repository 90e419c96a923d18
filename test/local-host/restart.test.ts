import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, expect, inject, test } from "vitest";
import { DurableStore } from "../../tools/local-host/durable/store.js";
import { APP_ENV, APP_ROOT, poll } from "./helpers.js";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const HUB = "LocalHostRestart";
const children: ChildProcess[] = [];
const work = mkdtempSync(path.join(tmpdir(), "local-host-restart-"));

afterAll(() => {
  for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
  rmSync(work, { recursive: true, force: true });
});

/** The host as a child process: main.ts under tsx, app loaded from TS sources. */
async function startChild(
  storage: string,
): Promise<{ child: ChildProcess; baseUrl: string; output: () => string }> {
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      "tools/local-host/main.ts",
      "--app-root",
      APP_ROOT,
      "--port",
      "0",
      "--task-hub",
      HUB,
      "--max-activities",
      "16",
      "--no-timers",
    ],
    {
      cwd: REPO,
      env: { ...process.env, ...APP_ENV, AzureWebJobsStorage: storage },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  children.push(child);
  let output = "";
  child.stdout!.on("data", (c) => {
    output += c;
  });
  child.stderr!.on("data", (c) => {
    output += c;
  });
  const baseUrl = await poll(
    () => {
      if (child.exitCode !== null) throw new Error(`host exited:\n${output}`);
      return /Listening on (http:\/\/\S+)/.exec(output)?.[1];
    },
    { timeoutMs: 30_000 },
  );
  return { child, baseUrl, output: () => output };
}

function runs(file: string): number[] {
  try {
    return readFileSync(file, "utf8").split("\n").filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

test("a host killed mid-fan-out resumes on restart without re-running completed activities", async () => {
  const storage = inject("azurite").connectionString;
  const file = path.join(work, "runs.txt");
  const gate = path.join(work, "gate");
  const n = 40;
  const id = "restart-fan-out";

  const first = await startChild(storage);
  const start = await fetch(
    `${first.baseUrl}/runtime/webhooks/durabletask/orchestrators/restartFanOut/${id}`,
    {
      method: "POST",
      body: JSON.stringify({ n, file, gate }),
    },
  );
  expect(start.status).toBe(202);

  // Even items finish at once; odd ones wait for the gate. With 16 slots: 16 done, 16 blocked, 8 queued.
  const store = new DurableStore(storage, HUB);
  const persisted = await poll(
    async () => {
      const loaded = await store.load(id);
      const done = [...(loaded?.history ?? []), ...(loaded?.inbox ?? [])]
        .filter((e) => e.EventType === 5)
        .map((e) => e.TaskScheduledId as number);
      return done.length === 16 ? done : undefined;
    },
    { timeoutMs: 20_000 },
  );
  expect(runs(file).sort((a, b) => a - b)).toEqual([...persisted].sort((a, b) => a - b));

  first.child.kill("SIGKILL");
  await new Promise((resolve) => first.child.once("exit", resolve));
  writeFileSync(gate, "open");

  const second = await startChild(storage);
  const status = await poll(
    async () => {
      const response = await fetch(`${second.baseUrl}/runtime/webhooks/durabletask/instances/${id}`);
      const body = (await response.json()) as { runtimeStatus: string; output: unknown };
      return body.runtimeStatus === "Completed" ? body : undefined;
    },
    { timeoutMs: 30_000 },
  );
  expect(status.output).toBe((n * (n - 1)) / 2);
  expect(second.output()).toContain("resuming 1 unfinished orchestration instance(s)");

  // Every activity ran exactly once across both processes.
  const all = runs(file);
  expect(all).toHaveLength(n);
  expect(new Set(all).size).toBe(n);
  second.child.kill("SIGTERM");
  await new Promise((resolve) => second.child.once("exit", resolve));
  expect(second.output()).toContain("SIGTERM: shutting down");
}, 90_000);

import { format } from "node:util";
import { afterAll, beforeAll, describe, expect, type MockInstance, test, vi } from "vitest";
import { AuthState } from "../portal-sim/auth.js";
import { type AppHarness, startAppHarness } from "../support/app-harness.js";

/**
 * Everything the app logs during a real backup, read the way Application Insights would: no secret in
 * any line, run lines carry their ids, and the monitoring events (docs/deploy.md "Monitoring event
 * contract") come out once per run as single JSON lines with every field.
 */

const RUN_COMPLETED_FIELDS = {
  runId: "string",
  identityId: "string",
  identityName: "string",
  status: "string",
  itemsTotal: "number",
  itemsExported: "number",
  itemsUnchanged: "number",
  itemsFailed: "number",
  bytes: "number",
  durationMs: "number",
} as const;
const ITEM_FAILED_FIELDS = {
  runId: "string",
  identityId: "string",
  itemId: "string",
  code: "string",
  reason: "string",
};
const RUN_STATUSES = ["completed", "completed-with-failures", "failed", "cancelled"];
/** Messages the backup writes about a run (besides any line that names a runId or an itemId). */
const RUN_MESSAGES = [
  "BackupRunCompleted",
  "BackupItemFailed",
  "Backup started",
  "Backup cancel requested",
  "Inventory taken",
  "Item exported",
  "Layer captured",
];
/** The simulator's token shape: `AAST<urlKey>.` (Online) or `ENT<urlKey>.`, then 24 random bytes, base64url. */
const SIM_TOKEN = /\b(?:AAST|ENT)[A-Za-z0-9]+\.R?[A-Za-z0-9_-]{32}/;

interface Captured {
  source: string;
  line: string;
}

const captured: Captured[] = [];
const spies: MockInstance[] = [];
const issuedTokens = new Set<string>();
let app: AppHarness;

function record(source: string, text: string) {
  for (const line of text.split(/\r?\n/)) if (line.trim()) captured.push({ source, line });
}

function captureProcessOutput() {
  for (const stream of [process.stdout, process.stderr] as const) {
    const name = stream === process.stdout ? "stdout" : "stderr";
    const original = stream.write.bind(stream) as (...args: unknown[]) => boolean;
    spies.push(
      vi.spyOn(stream, "write").mockImplementation(((chunk: unknown, ...rest: unknown[]) => {
        record(name, typeof chunk === "string" ? chunk : Buffer.from(chunk as Uint8Array).toString("utf8"));
        return original(chunk, ...rest);
      }) as typeof stream.write),
    );
  }
  // Swallowed: at info level a backup writes a line per item, which would drown the test output.
  for (const method of ["log", "info", "warn", "error", "debug", "trace"] as const) {
    spies.push(
      vi.spyOn(console, method).mockImplementation((...args: unknown[]) => {
        record(`console.${method}`, format(...args));
      }),
    );
  }
}

function captureIssuedTokens() {
  const issue = AuthState.prototype.issue;
  spies.push(
    vi.spyOn(AuthState.prototype, "issue").mockImplementation(function (this: AuthState, ...args) {
      const issued = issue.apply(this, args);
      issuedTokens.add(issued.token);
      return issued;
    }),
  );
  const issueRefresh = AuthState.prototype.issueRefresh;
  spies.push(
    vi.spyOn(AuthState.prototype, "issueRefresh").mockImplementation(function (this: AuthState, ...args) {
      const issued = issueRefresh.apply(this, args);
      issuedTokens.add(issued.refreshToken);
      return issued;
    }),
  );
}

/** Every captured line: the process output and the host's log (function and host lines). */
function allLines(): Captured[] {
  return [...captured, ...app.logs.map((line) => ({ source: "host", line }))];
}

type Structured = Record<string, unknown> & { message: string };

/**
 * The structured lines: a whole-line JSON object (the core logger, what App Insights reads with
 * parse_json(message)), or `message {json}` as an HTTP handler's context logger writes it.
 */
function structuredLines(): (Structured & { source: string; raw: string })[] {
  const out: (Structured & { source: string; raw: string })[] = [];
  for (const { source, line } of allLines()) {
    const body = line.replace(/^\[[\w-]+\] (?:(?:warning|error): )?/, "");
    const parsed = parseObject(body) ?? parseTrailingObject(body);
    if (parsed && typeof parsed.message === "string") out.push({ ...parsed, source, raw: line });
  }
  return out;
}

function parseObject(text: string): Structured | undefined {
  if (!text.startsWith("{")) return undefined;
  try {
    const value = JSON.parse(text);
    return value && typeof value === "object" && !Array.isArray(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

function parseTrailingObject(text: string): Structured | undefined {
  const brace = text.indexOf(" {");
  if (brace < 0) return undefined;
  const properties = parseObject(text.slice(brace + 1));
  return properties ? { ...properties, message: text.slice(0, brace) } : undefined;
}

/** The contract events exactly as App Insights would see them: a whole line that parses as JSON. */
function events(name: string): Structured[] {
  return captured
    .filter(({ line }) => line.includes(name))
    .map(({ line }) => parseObject(line))
    .filter((e): e is Structured => e?.message === name);
}

async function runBackup(identityId: string) {
  const started = await app.call("POST", `/api/identities/${identityId}/backups`, {});
  expect(started.status, started.text).toBe(202);
  const runId = started.body.runId as string;
  await app.host.waitForInstance(runId, { timeoutMs: 90_000 });
  return (await app.call("GET", `/api/backups/${runId}`)).body;
}

const runs: Record<string, unknown>[] = [];
let identityId: string;
let victimId: string;
const wrongPassword = `wrong-${Math.random().toString(36).slice(2)}-pw`;
const wrongAccountKey = Buffer.from("not the account key, 64 bytes long ........................").toString(
  "base64",
);

beforeAll(async () => {
  captureProcessOutput();
  captureIssuedTokens();
  app = await startAppHarness({ sim: { size: "tiny", seed: 31 }, env: { LOG_LEVEL: "info" } });

  // Check Azure Credentials: a good one and one with a wrong key.
  const container = await app.container();
  const check = await app.call("POST", "/api/storage/check", {
    type: "azure-blob",
    container: container.containerName,
    connectionString: app.storageConnectionString,
  });
  expect(check.status, check.text).toBe(200);
  await app.call("POST", "/api/storage/check", {
    type: "azure-blob",
    container: container.containerName,
    connectionString: app.storageConnectionString.replace(
      /AccountKey=[^;]+/,
      `AccountKey=${wrongAccountKey}`,
    ),
  });

  const created = await app.createIdentity();
  expect(created.status, created.text).toBe(201);
  identityId = created.body.id;
  const verified = await app.call("POST", `/api/identities/${identityId}/verify`);
  expect(verified.status, verified.text).toBe(200);
  expect(verified.body.ok).toBe(true);

  // An identity with a wrong password: the failing sign-in must not log it either.
  const wrong = await app.createIdentity({
    extra: { auth: { type: "builtin", username: app.sim.admin.username, password: wrongPassword } },
  });
  if (wrong.status === 201) await app.call("POST", `/api/identities/${wrong.body.id}/verify`);

  // Run 1: one item keeps failing. Run 2: clean. Run 3: cancelled.
  const victim =
    [...app.sim.model.items()].find((i) => i.type === "Web Map") ?? [...app.sim.model.items()][0]!;
  victimId = victim.id;
  app.sim.setFaults([{ match: `**/content/items/${victimId}/data`, action: "status", status: 403 }]);
  try {
    runs.push(await runBackup(identityId));
  } finally {
    app.sim.setFaults([]);
  }
  runs.push(await runBackup(identityId));
  app.sim.mutate.editItem(victimId, { title: "Edited after the second run" });
  app.sim.setFaults([{ match: "sharing/content/items/**", action: "latency", latencyMs: 200 }]);
  try {
    const started = await app.call("POST", `/api/identities/${identityId}/backups`, {});
    expect(started.status, started.text).toBe(202);
    const cancel = await app.call("DELETE", `/api/backups/${started.body.runId}`);
    expect(cancel.status, cancel.text).toBe(202);
    await app.host.waitForInstance(started.body.runId, { timeoutMs: 90_000 });
    runs.push((await app.call("GET", `/api/backups/${started.body.runId}`)).body);
  } finally {
    app.sim.setFaults([]);
  }
}, 300_000);

afterAll(async () => {
  await app?.close();
  for (const spy of spies) spy.mockRestore();
});

describe("what the app logs during a backup", () => {
  test("the runs ended as set up and the capture saw the app's lines", () => {
    expect(runs.map((r) => r.status)).toEqual(["completed-with-failures", "completed", "cancelled"]);
    expect(issuedTokens.size).toBeGreaterThan(0);
    expect(captured.some((c) => c.source === "console.info")).toBe(true);
    expect(app.logs.length).toBeGreaterThan(0);
  });

  test("no line holds the admin password, the storage account key or a portal token", () => {
    const accountKey = /AccountKey=([^;]+)/.exec(app.storageConnectionString)?.[1];
    expect(accountKey).toBeTruthy();
    const secrets = new Map<string, string>([
      ["admin password", app.sim.admin.password],
      ["wrong password", wrongPassword],
      ["storage account key", accountKey!],
      ["wrong storage account key", wrongAccountKey],
      ["storage connection string", app.storageConnectionString],
    ]);
    for (const token of issuedTokens) secrets.set(`portal token ${token.slice(0, 8)}…`, token);
    const leaks: string[] = [];
    for (const { source, line } of allLines()) {
      for (const [name, secret] of secrets) {
        const forms = new Set([secret, encodeURIComponent(secret), JSON.stringify(secret).slice(1, -1)]);
        if ([...forms].some((form) => line.includes(form)))
          leaks.push(`${name} in ${source}: ${line.slice(0, 300)}`);
      }
      if (SIM_TOKEN.test(line)) leaks.push(`token-shaped text in ${source}: ${line.slice(0, 300)}`);
    }
    expect(leaks).toEqual([]);
  });

  test("every line about a run carries runId and identityId; every BackupItemFailed an itemId", () => {
    const lines = structuredLines();
    const aboutRuns = lines.filter(
      (l) => RUN_MESSAGES.includes(l.message) || l.runId !== undefined || l.itemId !== undefined,
    );
    expect(aboutRuns.length).toBeGreaterThan(10);
    const missing = aboutRuns
      .filter(
        (l) => !(typeof l.runId === "string" && l.runId && typeof l.identityId === "string" && l.identityId),
      )
      .map((l) => `${l.source}: ${l.raw.slice(0, 300)}`);
    expect(missing).toEqual([]);

    const failed = lines.filter((l) => l.message === "BackupItemFailed");
    expect(failed.length).toBeGreaterThan(0);
    expect(failed.filter((l) => typeof l.itemId !== "string" || !l.itemId).map((l) => l.raw)).toEqual([]);
  });

  test("BackupItemFailed: one JSON line per failed item with the contract's fields", () => {
    const failed = events("BackupItemFailed");
    expect(failed).toHaveLength(1);
    const [event] = failed;
    for (const [field, type] of Object.entries(ITEM_FAILED_FIELDS))
      expect(typeof event?.[field], field).toBe(type);
    expect(event).toMatchObject({
      level: "warn",
      runId: runs[0]?.runId,
      identityId,
      itemId: victimId,
      code: "ERR_PORTAL_FORBIDDEN",
    });
    expect(String(event?.reason)).not.toBe("");
  });

  test("BackupRunCompleted: exactly one JSON line per run, with every field of the contract", () => {
    const completed = events("BackupRunCompleted");
    for (const run of runs) {
      const mine = completed.filter((e) => e.runId === run.runId);
      expect(mine, `BackupRunCompleted for ${run.runId} (${run.status})`).toHaveLength(1);
      const event = mine[0]!;
      for (const [field, type] of Object.entries(RUN_COMPLETED_FIELDS)) {
        expect(typeof event[field], `${field} of ${run.status}`).toBe(type);
      }
      expect(RUN_STATUSES).toContain(event.status);
      expect(event).toMatchObject({
        level: "info",
        identityId,
        identityName: "Simulated org",
        status: run.status,
        itemsTotal: run.itemsTotal,
        itemsExported: run.itemsExported,
        itemsUnchanged: run.itemsUnchanged,
        itemsFailed: run.itemsFailed,
        bytes: run.bytes,
      });
      expect(event.durationMs as number).toBeGreaterThanOrEqual(0);
    }
    expect(completed).toHaveLength(runs.length);
    // The runs' numbers, as the workbook sums them.
    expect(completed.find((e) => e.runId === runs[0]?.runId)).toMatchObject({ itemsFailed: 1 });
    expect(completed.find((e) => e.runId === runs[0]?.runId)?.bytes as number).toBeGreaterThan(0);
  });
});

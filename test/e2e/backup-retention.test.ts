import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { newRunId } from "../../src/core/backup/layout.js";
import { newRunRecord, type RunRecord } from "../../src/core/backup/runs.js";
import { getServices } from "../../src/core/services.js";
import { type AppHarness, startAppHarness } from "../support/app-harness.js";

// An identity's retention policy over HTTP: set on create, shown on the identity, replaced or
// removed by PATCH, and applied to each run of GET /api/identities/{id}/backups with its reasons.

const DAY_MS = 86_400_000;

let app: AppHarness;

beforeAll(async () => {
  app = await startAppHarness();
});

afterAll(async () => {
  await app?.close();
});

/** A run record as a backup leaves it, written directly: runs months apart cannot be waited for. */
async function recordRun(
  identityId: string,
  status: RunRecord["status"],
  startedAt: string,
  endedAt?: string,
) {
  const { runs } = await getServices();
  const runId = newRunId("b", Date.parse(startedAt));
  const withManifest = status === "completed" || status === "completed-with-failures";
  await runs.create(
    newRunRecord({
      runId,
      identityId,
      name: "recorded",
      trigger: "schedule",
      status,
      startedAt,
      endedAt: endedAt ?? new Date(Date.parse(startedAt) + 3_600_000).toISOString(),
      ...(withManifest ? { manifest: `${identityId}/runs/${runId}/manifest.json` } : {}),
    }),
  );
  return runId;
}

async function listedRetention(identityId: string) {
  const listed = await app.call("GET", `/api/identities/${identityId}/backups`);
  expect(listed.status, listed.text).toBe(200);
  return (
    listed.body.runs as Array<{ startedAt: string; retention: { keep: boolean; reasons: string[] } }>
  ).map((run) => [run.startedAt, run.retention.keep, run.retention.reasons]);
}

describe("retention policy", () => {
  test("the list says for each run whether the policy keeps it and by which rule", async () => {
    const created = await app.createIdentity({
      extra: { retention: { keepLast: 1, keepDaily: 2, keepMonthly: 2 } },
    });
    expect(created.status, created.text).toBe(201);
    const id = created.body.id as string;
    // keepDeletedDays has its default once a policy is given.
    const policy = { keepLast: 1, keepDaily: 2, keepMonthly: 2, keepDeletedDays: 365 };
    expect(created.body.retention).toEqual(policy);
    expect((await app.call("GET", `/api/identities/${id}`)).body.retention).toEqual(policy);

    const failedEnd = new Date(Date.now() - DAY_MS).toISOString();
    await recordRun(id, "failed", new Date(Date.parse(failedEnd) - 60_000).toISOString(), failedEnd);
    await recordRun(id, "completed", "2025-03-10T02:00:00.000Z");
    await recordRun(id, "completed", "2025-03-10T01:00:00.000Z");
    await recordRun(id, "failed", "2025-03-09T12:00:00.000Z");
    await recordRun(id, "completed-with-failures", "2025-03-09T02:00:00.000Z");
    await recordRun(id, "completed", "2025-02-20T02:00:00.000Z");
    await recordRun(id, "completed", "2025-01-15T02:00:00.000Z");

    const until = new Date(Date.parse(failedEnd) + 7 * DAY_MS).toISOString();
    const listed = await listedRetention(id);
    expect(listed[0]?.slice(1)).toEqual([true, [`failed: kept for diagnosis until ${until}`]]);
    expect(listed.slice(1)).toEqual([
      ["2025-03-10T02:00:00.000Z", true, ["last 1", "daily 2025-03-10", "monthly 2025-03"]],
      ["2025-03-10T01:00:00.000Z", false, []],
      ["2025-03-09T12:00:00.000Z", false, []],
      ["2025-03-09T02:00:00.000Z", true, ["daily 2025-03-09"]],
      ["2025-02-20T02:00:00.000Z", true, ["monthly 2025-02"]],
      ["2025-01-15T02:00:00.000Z", false, []],
    ]);

    // PATCH replaces the whole policy (keepDeletedDays back to its default) …
    const replaced = await app.call("PATCH", `/api/identities/${id}`, {
      retention: { keepYearly: 1, keepDeletedDays: 30 },
    });
    expect(replaced.status, replaced.text).toBe(200);
    expect(replaced.body.retention).toEqual({ keepYearly: 1, keepDeletedDays: 30 });
    expect((await listedRetention(id)).filter(([, keep]) => keep).length).toBe(2);

    // … a policy that keeps no run is refused, naming the field …
    const keepsNothing = await app.call("PATCH", `/api/identities/${id}`, { retention: { keepLast: 0 } });
    expect(keepsNothing.status).toBe(400);
    expect(keepsNothing.body.error.field).toBe("retention");

    // … and null removes it: every run is kept again.
    const removed = await app.call("PATCH", `/api/identities/${id}`, { retention: null });
    expect(removed.status, removed.text).toBe(200);
    expect(removed.body).not.toHaveProperty("retention");
    const kept = await listedRetention(id);
    expect(kept).toHaveLength(7);
    expect(kept.every(([, keep, reasons]) => keep && JSON.stringify(reasons) === '["no policy"]')).toBe(true);
  });

  test("a backup that ran to its end counts as complete: its record names its manifest", async () => {
    const created = await app.createIdentity({ extra: { retention: { keepLast: 1 } } });
    const id = created.body.id as string;
    const started = await app.call("POST", `/api/identities/${id}/backups`);
    expect(started.status, started.text).toBe(202);
    const runId = started.body.runId as string;
    await app.host.waitForInstance(runId, { timeoutMs: 60_000 });
    const listed = await app.call("GET", `/api/identities/${id}/backups`);
    expect(listed.body.runs[0]).toMatchObject({
      runId,
      status: "completed",
      retention: { keep: true, reasons: ["last 1"] },
    });
  });

  test("an identity without a policy keeps every run", async () => {
    const created = await app.createIdentity();
    const id = created.body.id as string;
    expect(created.body).not.toHaveProperty("retention");
    await recordRun(id, "failed", "2020-01-01T02:00:00.000Z");
    expect(await listedRetention(id)).toEqual([["2020-01-01T02:00:00.000Z", true, ["no policy"]]]);
  });
});

import { z } from "zod";
import { mapWithConcurrency } from "../concurrency.js";
import { isImmutabilityRefusal } from "../storage/storage-errors.js";
import { schemaVersion } from "../stored-document.js";
import type { BackupStore } from "./backup-store.js";
import {
  completionMarkerName,
  ITEMS_PREFIX,
  itemVersionPrefix,
  manifestName,
  prunePlanName,
  runPrefix,
} from "./layout.js";
import { type ManifestItem, readManifest, runResults } from "./manifest.js";
import { evaluateRetention, isCompleteRun } from "./retention.js";
import type { RetentionPolicy } from "./retention-policy.js";
import type { RunRecord, RunStore } from "./runs.js";

const DAY_MS = 86_400_000;

/** What a prune does with one run: keeps it, trims it to the deleted items it holds, or forgets it. */
export const pruneDecisionSchema = z.object({
  runId: z.string(),
  startedAt: z.string(),
  status: z.string(),
  action: z.enum(["keep", "trim", "forget"]),
  reasons: z.array(z.string()),
  /** Where the run's items are read from: its batch results, or (a trimmed run) its manifest. */
  itemsFrom: z.enum(["results", "manifest"]),
  /** trim: the ids of the deleted items this run was the last to see, kept until `heldUntil`. */
  heldItems: z.array(z.string()).optional(),
  heldUntil: z.string().optional(),
});
export type PruneDecision = z.infer<typeof pruneDecisionSchema>;

/** `prunes/<pruneId>/plan.json`: written first, so each step of a prune (and its retries) agrees. */
export const prunePlanSchema = z.object({
  schemaVersion: schemaVersion(1),
  kind: z.literal("arcgis-org-backup/prune-plan"),
  pruneId: z.string().nullable(),
  identityId: z.string(),
  createdAt: z.string(),
  keepDeletedDays: z.number().int().nonnegative(),
  runs: z.array(pruneDecisionSchema),
});
export type PrunePlan = z.infer<typeof prunePlanSchema>;

/** Blobs a sweep deleted (or, in a dry run, would delete) and those an immutability policy kept. */
export interface SweepCounts {
  blobsDeleted: number;
  bytesDeleted: number;
  blobsKeptByPolicy: number;
  bytesKeptByPolicy: number;
  /** A few names kept by policy, for the report. */
  keptByPolicySample: string[];
}

/** What the step for forgotten and trimmed runs did. */
export interface RunCounts {
  runsForgotten: number;
  runsTrimmed: number;
  runBlobsDeleted: number;
  runBytesDeleted: number;
  runBlobsKeptByPolicy: number;
}

const SAMPLE = 20;
/** Deletes in flight, and unreferenced blobs gathered from the listing before they are deleted. */
const DELETERS = 8;
const DELETE_BATCH = 500;

/**
 * Decides each run's fate: the identity's policy (see retention.ts), plus the runs a running
 * restore reads, plus `keepDeletedDays`: an item that the newest complete run no longer has was
 * deleted from the org; the newest run that still saw it holds its last version. When that run is
 * otherwise forgotten and ended less than keepDeletedDays ago, it is trimmed instead: its manifest
 * keeps only those items (a restore from it still works) until the days are up.
 */
export async function planPrune(options: {
  store: BackupStore;
  runs: readonly RunRecord[];
  policy: RetentionPolicy;
  restoresInUse: ReadonlySet<string>;
  now: Date;
  pruneId: string | null;
  identityId: string;
}): Promise<PrunePlan> {
  const { store, runs, policy, now } = options;
  const verdicts = evaluateRetention(runs, policy, now);
  const decisions: PruneDecision[] = runs.map((run, index) => {
    const reasons = [...(verdicts[index]?.reasons ?? [])];
    if (options.restoresInUse.has(run.runId)) reasons.push("read by a running restore");
    return {
      runId: run.runId,
      startedAt: run.startedAt,
      status: run.status,
      action: reasons.length > 0 ? "keep" : "forget",
      reasons,
      itemsFrom: run.heldForDeletedItems ? "manifest" : "results",
    };
  });
  await holdDeletedItems(store, runs, decisions, policy.keepDeletedDays, now);
  return {
    schemaVersion: 1,
    kind: "arcgis-org-backup/prune-plan",
    pruneId: options.pruneId,
    identityId: options.identityId,
    createdAt: now.toISOString(),
    keepDeletedDays: policy.keepDeletedDays,
    runs: decisions,
  };
}

/**
 * Turns forgotten runs that last saw a since-deleted item (within keepDeletedDays) into trims.
 * Runs are walked newest first; an item's first sighting is its last one in time.
 */
async function holdDeletedItems(
  store: BackupStore,
  runs: readonly RunRecord[],
  decisions: PruneDecision[],
  keepDeletedDays: number,
  now: Date,
): Promise<void> {
  const newestFirst = runs
    .map((run, index) => ({ run, decision: decisions[index] as PruneDecision }))
    .filter(({ run }) => run.status !== "running" && run.manifest)
    .sort((a, b) => Date.parse(b.run.startedAt) - Date.parse(a.run.startedAt));
  const newestComplete = newestFirst.find(({ run }) => isCompleteRun(run));
  if (!newestComplete || keepDeletedDays === 0) return;
  const seen = new Set<string>();
  for await (const item of itemsOfRun(store, newestComplete.decision)) seen.add(item.itemId);
  const newestAt = Date.parse(newestComplete.run.startedAt);
  for (const { run, decision } of newestFirst) {
    // A newer run is a cancelled or failed one: what only it saw was created, not deleted.
    if (decision === newestComplete.decision || Date.parse(run.startedAt) > newestAt) continue;
    const until = Date.parse(run.endedAt ?? run.startedAt) + keepDeletedDays * DAY_MS;
    const holds = decision.action === "forget" && until > now.getTime();
    const held: string[] = [];
    for await (const item of itemsOfRun(store, decision)) {
      if (seen.has(item.itemId)) continue;
      seen.add(item.itemId);
      if (holds && item.status !== "failed" && item.versionPath) held.push(item.itemId);
    }
    if (held.length === 0) continue;
    decision.action = "trim";
    decision.heldItems = held;
    decision.heldUntil = new Date(until).toISOString();
    decision.reasons.push(
      `last saw ${held.length} deleted item(s): kept for them until ${decision.heldUntil}`,
    );
  }
}

/** A run's items as its manifest lists them, streamed from its batch results (or a trimmed manifest). */
export async function* itemsOfRun(
  store: BackupStore,
  decision: Pick<PruneDecision, "runId" | "itemsFrom">,
): AsyncGenerator<ManifestItem> {
  if (decision.itemsFrom === "manifest") {
    yield* (await readManifest(store, decision.runId))?.items ?? [];
    return;
  }
  for await (const result of runResults(store, decision.runId)) {
    yield {
      ...result,
      versionPath: result.version ? itemVersionPrefix(result.itemId, result.version) : null,
    };
  }
}

/**
 * Every blob of `items/` that a kept run names, or a trimmed run names for an item it holds: each
 * file's blob (maybe one an earlier version stored: versions share files) and each version's
 * completion marker. Reference counting by blob: a blob stays while any of these names it.
 */
export async function referencedBlobs(store: BackupStore, plan: PrunePlan): Promise<Set<string>> {
  const marks = new Set<string>();
  for (const decision of plan.runs) {
    if (decision.action === "forget") continue;
    const held = decision.action === "trim" ? new Set(decision.heldItems) : undefined;
    for await (const item of itemsOfRun(store, decision)) {
      if (held && !held.has(item.itemId)) continue;
      if (item.status === "failed" || !item.version) continue;
      marks.add(completionMarkerName(item.itemId, item.version));
      for (const file of item.files) marks.add(file.blob);
    }
  }
  return marks;
}

/** Deletes (or, dry, counts) every blob under `items/` that `marks` does not name. */
export async function sweepItems(store: BackupStore, marks: ReadonlySet<string>, dryRun: boolean) {
  const counts: SweepCounts = {
    blobsDeleted: 0,
    bytesDeleted: 0,
    blobsKeptByPolicy: 0,
    bytesKeptByPolicy: 0,
    keptByPolicySample: [],
  };
  let batch: Array<{ name: string; size: number }> = [];
  const flush = async () => {
    await mapWithConcurrency(batch, DELETERS, async (blob) => {
      const outcome = dryRun ? "deleted" : await store.delete(blob.name);
      if (outcome === "deleted") {
        counts.blobsDeleted++;
        counts.bytesDeleted += blob.size;
      } else if (outcome === "kept-by-policy") {
        counts.blobsKeptByPolicy++;
        counts.bytesKeptByPolicy += blob.size;
        if (counts.keptByPolicySample.length < SAMPLE) counts.keptByPolicySample.push(blob.name);
      }
    });
    batch = [];
  };
  for await (const blob of store.listSized(ITEMS_PREFIX)) {
    if (marks.has(blob.name)) continue;
    batch.push(blob);
    if (batch.length >= DELETE_BATCH) await flush();
  }
  await flush();
  return counts;
}

/**
 * Forgets runs (their folder and their record) and trims runs to the deleted items they hold.
 * Safe to run again: a trim marks the record first, so a second attempt reads the items from the
 * manifest it may have rewritten already; a forgotten folder is deleted blob by blob.
 */
export async function pruneRuns(options: {
  store: BackupStore;
  runs: RunStore;
  plan: PrunePlan;
  dryRun: boolean;
  now: Date;
}): Promise<RunCounts> {
  const { store, plan, dryRun } = options;
  const counts: RunCounts = {
    runsForgotten: 0,
    runsTrimmed: 0,
    runBlobsDeleted: 0,
    runBytesDeleted: 0,
    runBlobsKeptByPolicy: 0,
  };
  for (const decision of plan.runs) {
    if (decision.action === "keep") continue;
    let keep = (_name: string) => false;
    if (decision.action === "trim") {
      if (!dryRun && !(await trimRun(options, decision))) continue;
      const org = `${runPrefix(decision.runId)}org/`;
      keep = (name) => name === manifestName(decision.runId) || name.startsWith(org);
      counts.runsTrimmed++;
    }
    let manifestKept = false;
    for await (const blob of store.listSized(runPrefix(decision.runId))) {
      if (keep(blob.name)) continue;
      const outcome = dryRun ? "deleted" : await store.delete(blob.name);
      if (outcome === "deleted") {
        counts.runBlobsDeleted++;
        counts.runBytesDeleted += blob.size;
      } else if (outcome === "kept-by-policy") {
        counts.runBlobsKeptByPolicy++;
        if (blob.name === manifestName(decision.runId)) manifestKept = true;
      }
    }
    if (decision.action === "forget") {
      counts.runsForgotten++;
      // A manifest that an immutability policy keeps keeps its run listed (and restorable).
      if (!dryRun && !manifestKept) await options.runs.delete(plan.identityId, decision.runId);
    }
  }
  return counts;
}

/**
 * Rewrites a run's manifest to the deleted items it holds (header kept, totals recounted) and
 * records why on the run. False when an immutability policy refused the rewrite: the run then
 * stays whole, and a later prune tries again.
 */
async function trimRun(
  options: { store: BackupStore; runs: RunStore; plan: PrunePlan; now: Date },
  decision: PruneDecision,
): Promise<boolean> {
  const { store, plan } = options;
  const held = new Set(decision.heldItems);
  const until = decision.heldUntil ?? options.now.toISOString();
  const record = await options.runs.update(plan.identityId, decision.runId, (run) => {
    run.heldForDeletedItems ??= {
      items: held.size,
      until,
      pruneId: plan.pruneId ?? "",
      trimmedAt: options.now.toISOString(),
    };
  });
  // Read once: the header is kept, the items cut down to those held.
  const manifest = await readManifest(store, decision.runId);
  if (!manifest) return false;
  const { items: all, ...header } = manifest;
  const items = all.filter((item) => held.has(item.itemId));
  const totals = { items: items.length, exported: 0, unchanged: 0, failed: 0, bytes: 0 };
  for (const item of items) {
    totals[item.status]++;
    totals.bytes += item.bytes;
  }
  const trimmed = {
    ...header,
    totals,
    failures: [],
    trimmed: { at: record.heldForDeletedItems?.trimmedAt ?? options.now.toISOString(), heldUntil: until },
    items,
  };
  try {
    await store.uploadJson(manifestName(decision.runId), trimmed);
  } catch (error) {
    if (isImmutabilityRefusal(error)) return false;
    throw error;
  }
  return true;
}

export async function writePlan(store: BackupStore, plan: PrunePlan): Promise<void> {
  if (plan.pruneId) await store.uploadJson(prunePlanName(plan.pruneId), plan);
}

export async function readPlan(store: BackupStore, pruneId: string): Promise<PrunePlan> {
  const plan = await store.readJson(prunePlanName(pruneId), prunePlanSchema);
  if (!plan) throw new Error(`The plan of prune ${pruneId} is missing`);
  return plan;
}

import { readdirSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT, readRepoFile } from "./bicep.js";

/**
 * The telemetry contract between the app and the alerts/workbook (documented in docs/deploy.md). The app
 * emits these as Application Insights custom events (or traces whose message is the event name) with these
 * customDimensions, and these custom metrics.
 */
const EVENTS = {
  BackupRunCompleted: [
    "runId",
    "identityId",
    "identityName",
    "status",
    "itemsTotal",
    "itemsExported",
    "itemsUnchanged",
    "itemsFailed",
    "bytes",
    "durationMs",
  ],
  BackupItemFailed: ["runId", "identityId", "itemId", "code", "reason"],
} as const;
const METRICS = ["BackupItemsExported", "BackupBytesExported"];
const RUN_STATUSES = ["completed", "completed-with-failures", "failed"];

const QUERY_DIR = "infra/app/queries";
const kqlFiles = readdirSync(path.join(REPO_ROOT, QUERY_DIR))
  .filter((f) => f.endsWith(".kql"))
  .map((f) => ({ name: f, text: readRepoFile(`${QUERY_DIR}/${f}`) }));

/** workbook.json after the substitutions workbook.bicep makes. */
function renderedWorkbook(): { items: { type: number; name: string; content: Record<string, unknown> }[] } {
  const backupRuns = readRepoFile(`${QUERY_DIR}/backup-runs.kql`);
  const escaped = backupRuns
    .replaceAll("\\", "\\\\")
    .replaceAll('"', '\\"')
    .replaceAll("\r", "")
    .replaceAll("\n", "\\n");
  const text = readRepoFile("infra/app/workbook.json")
    .replaceAll("{{BACKUP_RUNS}}", escaped)
    .replaceAll(
      "{{APP_INSIGHTS_ID}}",
      "/subscriptions/x/resourceGroups/y/providers/microsoft.insights/components/z",
    );
  return JSON.parse(text);
}

function workbookQueries(): { name: string; query: string }[] {
  return renderedWorkbook()
    .items.filter((item) => item.type === 3)
    .map((item) => ({ name: item.name, query: String(item.content.query) }));
}

const allQueries = () => [...kqlFiles.map((f) => ({ name: f.name, query: f.text })), ...workbookQueries()];

describe("monitoring contract", () => {
  it("queries read only documented customDimensions and event names", () => {
    const dimensions = new Set<string>(Object.values(EVENTS).flat());
    const problems: string[] = [];
    for (const { name, query } of allQueries()) {
      for (const m of query.matchAll(/customDimensions(?:\.(\w+)|\[["'](\w+)["']\])/g)) {
        const dimension = m[1] ?? m[2]!;
        if (!dimensions.has(dimension)) problems.push(`${name}: customDimensions.${dimension}`);
      }
      for (const m of query.matchAll(/\b(?:name|message) == "(\w+)"/g)) {
        if (!(m[1]! in EVENTS)) problems.push(`${name}: event ${m[1]}`);
      }
      for (const m of query.matchAll(/"(Backup\w+)"/g)) {
        if (!(m[1]! in EVENTS) && !METRICS.includes(m[1]!)) problems.push(`${name}: ${m[1]}`);
      }
      for (const m of query.matchAll(/status (?:==|in) \(?("[^)]*")/g)) {
        for (const s of m[1]!.matchAll(/"([^"]+)"/g)) {
          if (!RUN_STATUSES.includes(s[1]!)) problems.push(`${name}: status ${s[1]}`);
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it("the shared projection reads every BackupRunCompleted dimension", () => {
    const backupRuns = readRepoFile(`${QUERY_DIR}/backup-runs.kql`);
    for (const dimension of EVENTS.BackupRunCompleted)
      expect(backupRuns).toContain(`customDimensions.${dimension}`);
  });

  it("every placeholder in the queries is substituted by the Bicep that loads them", () => {
    const bicep = readRepoFile("infra/app/alerts.bicep") + readRepoFile("infra/app/workbook.bicep");
    const texts = [...kqlFiles.map((f) => f.text), readRepoFile("infra/app/workbook.json")];
    const placeholders = new Set(texts.flatMap((t) => [...t.matchAll(/\{\{(\w+)\}\}/g)].map((m) => m[1]!)));
    expect(placeholders.size).toBeGreaterThan(0);
    for (const placeholder of placeholders) expect(bicep).toContain(`'{{${placeholder}}}'`);
  });

  it("the workbook renders to valid JSON with a titled query per panel", () => {
    const queries = workbookQueries();
    expect(queries.length).toBeGreaterThanOrEqual(5);
    const items = renderedWorkbook().items.filter((item) => item.type === 3);
    expect(items.filter((item) => !item.content.title)).toEqual([]);
    expect(queries.some((q) => q.query.includes("BackupItemFailed"))).toBe(true);
    expect(queries.some((q) => METRICS.every((m) => q.query.includes(m)))).toBe(true);
  });

  it("docs/deploy.md documents every event, dimension, metric and status", () => {
    const docs = readRepoFile("docs/deploy.md");
    const names = [...Object.keys(EVENTS), ...Object.values(EVENTS).flat(), ...METRICS, ...RUN_STATUSES];
    expect(names.filter((n) => !docs.includes(`\`${n}\``))).toEqual([]);
  });
});

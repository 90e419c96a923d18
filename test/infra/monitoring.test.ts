import { readdirSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT, readRepoFile } from "./bicep.js";

/**
 * The telemetry contract between the app and the alerts/workbook (documented in docs/deploy.md). The app
 * writes each event as one JSON log line (`{"level":…,"message":"<event>",…fields}`), which Application
 * Insights stores as a trace whose message is that JSON; the queries parse it with parse_json(message),
 * and read a custom event with the same fields in customDimensions the same way. No custom metrics: the
 * exported items and bytes are summed from BackupRunCompleted.
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
type EventName = keyof typeof EVENTS;
const RUN_STATUSES = ["completed", "completed-with-failures", "failed", "cancelled"];
/** The shared projection of each event: the only queries that read traces / customEvents. */
const PROJECTIONS: Record<EventName, { file: string; placeholder: string }> = {
  BackupRunCompleted: { file: "backup-runs.kql", placeholder: "BACKUP_RUNS" },
  BackupItemFailed: { file: "item-failures.kql", placeholder: "ITEM_FAILURES" },
};

const QUERY_DIR = "infra/app/queries";
const kqlFiles = readdirSync(path.join(REPO_ROOT, QUERY_DIR))
  .filter((f) => f.endsWith(".kql"))
  .map((f) => ({ name: f, text: readRepoFile(`${QUERY_DIR}/${f}`) }));
const projectionFiles = new Set(Object.values(PROJECTIONS).map((p) => p.file));

/** A query file as a JSON string body, the way workbook.bicep escapes it. */
function jsonEscaped(text: string): string {
  return text.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\r", "").replaceAll("\n", "\\n");
}

type Workbook = { items: { type: number; name: string; content: Record<string, unknown> }[] };

/** workbook.json after the substitutions workbook.bicep makes. */
function renderedWorkbook(): Workbook {
  let text = readRepoFile("infra/app/workbook.json");
  for (const { file, placeholder } of Object.values(PROJECTIONS)) {
    text = text.replaceAll(`{{${placeholder}}}`, jsonEscaped(readRepoFile(`${QUERY_DIR}/${file}`)));
  }
  text = text.replaceAll(
    "{{APP_INSIGHTS_ID}}",
    "/subscriptions/x/resourceGroups/y/providers/microsoft.insights/components/z",
  );
  return JSON.parse(text);
}

function panelQueries(workbook: Workbook): { name: string; query: string }[] {
  return workbook.items
    .filter((item) => item.type === 3)
    .map((item) => ({ name: item.name, query: String(item.content.query) }));
}

const workbookQueries = () => panelQueries(renderedWorkbook());
const allQueries = () => [...kqlFiles.map((f) => ({ name: f.name, query: f.text })), ...workbookQueries()];

describe("monitoring contract", () => {
  it("queries read only contract events, fields and statuses, and no custom metrics", () => {
    const fields = new Set<string>(Object.values(EVENTS).flat());
    const problems: string[] = [];
    for (const { name, query } of allQueries()) {
      for (const m of query.matchAll(/\b(payload|customDimensions)(?:\.(\w+)|\[["'](\w+)["']\])/g)) {
        const field = m[2] ?? m[3]!;
        // `message` is the event name inside the JSON line; custom events carry it in `name`.
        if (!fields.has(field) && !(m[1] === "payload" && field === "message"))
          problems.push(`${name}: ${m[1]}.${field}`);
      }
      for (const m of query.matchAll(/(?:\bname|payload\.message\)) == "(\w+)"|\bhas "(\w+)"/g)) {
        if (!((m[1] ?? m[2]!) in EVENTS)) problems.push(`${name}: event ${m[1] ?? m[2]}`);
      }
      for (const m of query.matchAll(/"(Backup\w+)"/g)) {
        if (!(m[1]! in EVENTS)) problems.push(`${name}: ${m[1]}`);
      }
      for (const m of query.matchAll(/status (?:==|in) \(?("[^)]*")/g)) {
        for (const s of m[1]!.matchAll(/"([^"]+)"/g)) {
          if (!RUN_STATUSES.includes(s[1]!)) problems.push(`${name}: status ${s[1]}`);
        }
      }
      if (/customMetrics/.test(query)) problems.push(`${name}: customMetrics`);
    }
    expect(problems).toEqual([]);
  });

  it("each shared projection reads its event from JSON traces (filtered before parsing) and custom events", () => {
    for (const [event, { file }] of Object.entries(PROJECTIONS) as [EventName, { file: string }][]) {
      const text = readRepoFile(`${QUERY_DIR}/${file}`);
      const at = (needle: string) => {
        const index = text.indexOf(needle);
        expect(index, `${file}: ${needle}`).toBeGreaterThanOrEqual(0);
        return index;
      };
      // Cheap term filter on the raw message first, then parse only what is left.
      const traces = at("(traces\n");
      const filter = at(`| where message has "${event}"`);
      const parse = at("| extend payload = parse_json(message)");
      const exact = at(`| where tostring(payload.message) == "${event}")`);
      expect([traces, filter, parse, exact], file).toEqual(
        [traces, filter, parse, exact].sort((a, b) => a - b),
      );
      const events = at("(customEvents\n");
      const byName = at(`| where name == "${event}"`);
      const dimensions = at("| extend payload = customDimensions)");
      expect([events, byName, dimensions], file).toEqual([events, byName, dimensions].sort((a, b) => a - b));
      for (const field of EVENTS[event]) expect(text, `${file}: ${field}`).toContain(`payload.${field})`);
    }
  });

  it("one row per run: backup-runs.kql keeps the latest BackupRunCompleted of each runId", () => {
    const backupRuns = readRepoFile(`${QUERY_DIR}/backup-runs.kql`);
    expect(backupRuns).toMatch(/\| summarize arg_max\(timestamp, [^)]*\) by runId\n/);
  });

  it("only the shared projections read the telemetry tables, and only they parse messages", () => {
    const raw = panelQueries(JSON.parse(readRepoFile("infra/app/workbook.json")));
    const others = [
      ...kqlFiles.filter((f) => !projectionFiles.has(f.name)).map((f) => ({ name: f.name, query: f.text })),
      ...raw,
    ];
    expect(others.length).toBeGreaterThan(0);
    for (const { name, query } of others) {
      expect(query, name).not.toMatch(/\b(traces|customEvents|customMetrics|parse_json)\b/);
    }
  });

  it("every placeholder in the queries is substituted by the Bicep that loads them", () => {
    const bicep = readRepoFile("infra/app/alerts.bicep") + readRepoFile("infra/app/workbook.bicep");
    const texts = [...kqlFiles.map((f) => f.text), readRepoFile("infra/app/workbook.json")];
    const placeholders = new Set(texts.flatMap((t) => [...t.matchAll(/\{\{(\w+)\}\}/g)].map((m) => m[1]!)));
    expect(placeholders.size).toBeGreaterThan(0);
    for (const placeholder of placeholders) expect(bicep).toContain(`'{{${placeholder}}}'`);
    for (const { file } of Object.values(PROJECTIONS))
      expect(readRepoFile("infra/app/workbook.bicep")).toContain(`loadTextContent('queries/${file}')`);
  });

  it("the workbook renders to valid JSON with a titled query per panel", () => {
    const queries = workbookQueries();
    expect(queries.length).toBeGreaterThanOrEqual(5);
    const items = renderedWorkbook().items.filter((item) => item.type === 3);
    expect(items.filter((item) => !item.content.title)).toEqual([]);
    expect(queries.some((q) => q.query.includes("BackupItemFailed"))).toBe(true);
    // Items and bytes exported per day, summed from BackupRunCompleted.
    const raw = panelQueries(JSON.parse(readRepoFile("infra/app/workbook.json")));
    const perDay = (column: string) =>
      raw.some(
        (q) =>
          q.query.includes("{{BACKUP_RUNS}}") &&
          q.query.includes(`sum(${column})`) &&
          q.query.includes("bin(timestamp, 1d)"),
      );
    expect(perDay("itemsExported")).toBe(true);
    expect(perDay("bytes")).toBe(true);
  });

  it("docs/deploy.md documents every event, field, status and shared query", () => {
    const docs = readRepoFile("docs/deploy.md");
    const names = [
      ...Object.keys(EVENTS),
      ...Object.values(EVENTS).flat(),
      ...RUN_STATUSES,
      ...Object.values(PROJECTIONS).map((p) => `infra/app/queries/${p.file}`),
      "parse_json(message)",
    ];
    expect(names.filter((n) => !docs.includes(`\`${n}\``))).toEqual([]);
    // No promise of custom metrics the app does not send.
    expect(docs).not.toMatch(/BackupItemsExported|BackupBytesExported/);
  });
});

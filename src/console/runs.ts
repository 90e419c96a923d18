import { api, manifestHeader, showError } from "./api.js";
import { badge, bytes, h, link, progressBar, replace, table, time } from "./dom.js";
import { chooseIdentity } from "./pick.js";
import { current, hashOf, pause, type Route } from "./route.js";

// Runs of an identity: start a backup, follow a running one (items/s, throttling), cancel it,
// and, once it has ended, the manifest's failures with their codes; the diff of two runs.

export interface RunView {
  runId: string;
  name?: string;
  status: string;
  trigger?: string;
  startedAt: string;
  endedAt?: string;
  itemsTotal?: number;
  itemsExported?: number;
  itemsUnchanged?: number;
  itemsFailed?: number;
  bytes?: number;
  manifest?: string;
  error?: { code: string; message: string };
  traffic?: { requests?: number; retries?: number; throttled?: number };
  retention?: { keep: boolean; reasons: string[] };
  progress?: {
    phase: string;
    itemsDone: number;
    itemsTotal: number;
    exported: number;
    unchanged: number;
    failed: number;
    bytes: number;
    itemsPerSecond: number;
    retries: number;
    throttled: number;
    cancelRequested?: boolean;
  };
}

const COMPLETE = new Set(["completed", "completed-with-failures"]);

export async function listRuns(identityId: string): Promise<RunView[]> {
  return (await api<{ runs: RunView[] }>("GET", `identities/${encodeURIComponent(identityId)}/backups`)).data
    .runs;
}

export async function renderRuns(main: HTMLElement, route: Route): Promise<void> {
  const identityId = route.identityId;
  if (!identityId) return chooseIdentity(main, "runs", "Runs");
  const [runId, diff, against] = route.rest;
  if (runId && diff === "diff" && against) return renderRunDiff(main, identityId, against, runId);
  if (runId) return renderRun(main, route, identityId, runId);
  const outcome = h("div", { class: "outcome-slot" });
  const name = h("input", { name: "runName", placeholder: "name (optional)" });
  const start = async () => {
    try {
      const body = name.value.trim() ? { name: name.value.trim() } : {};
      const { data } = await api<{ runId: string }>(
        "POST",
        `identities/${encodeURIComponent(identityId)}/backups`,
        body,
      );
      location.hash = hashOf("runs", [identityId, data.runId]);
    } catch (error) {
      showError(outcome, error);
    }
  };
  const list = h("div");
  replace(
    main,
    h("h1", {}, "Runs"),
    h(
      "div",
      { class: "buttons" },
      name,
      h("button", { type: "button", class: "primary", onclick: () => void start() }, "Start backup"),
      outcome,
    ),
    list,
  );
  for (;;) {
    const runs = await listRuns(identityId);
    replace(list, runsTable(identityId, runs));
    if (!runs.some((run) => run.status === "running") || !(await pause(route, 3000))) return;
  }
}

function runsTable(identityId: string, runs: RunView[]): HTMLElement {
  if (runs.length === 0) return h("p", { class: "muted" }, "No backup yet.");
  const rows = runs.map((run, i) => {
    const older = runs.slice(i + 1).find((r) => COMPLETE.has(r.status));
    return [
      link(hashOf("runs", [identityId, run.runId]), run.runId),
      run.name ?? "",
      badge(run.status),
      time(run.startedAt),
      time(run.endedAt),
      `${run.itemsExported ?? 0} / ${run.itemsUnchanged ?? 0} / ${run.itemsFailed ?? 0} of ${run.itemsTotal ?? 0}`,
      bytes(run.bytes),
      run.retention ? `${run.retention.keep ? "keep" : "forget"}: ${run.retention.reasons.join(", ")}` : "",
      COMPLETE.has(run.status) && older
        ? link(hashOf("runs", [identityId, run.runId, "diff", older.runId]), "Diff with previous")
        : "",
    ];
  });
  const grid = table(
    [
      "Run",
      "Name",
      "Status",
      "Started",
      "Ended",
      "Exported / unchanged / failed",
      "Uploaded",
      "Retention",
      "",
    ],
    rows,
  );
  grid.querySelectorAll("tbody tr").forEach((row, i) => {
    row.setAttribute("data-run", runs[i]?.runId ?? "");
  });
  return grid;
}

async function renderRun(main: HTMLElement, route: Route, identityId: string, runId: string): Promise<void> {
  const panel = h("div", { class: "run" });
  const outcome = h("div", { class: "outcome-slot" });
  const cancel = async () => {
    try {
      await api("DELETE", `backups/${encodeURIComponent(runId)}`);
    } catch (error) {
      showError(outcome, error);
    }
  };
  replace(
    main,
    h("h1", {}, `Run ${runId}`),
    h("p", {}, link(hashOf("runs", [identityId]), "← all runs")),
    panel,
    outcome,
  );
  let run: RunView;
  for (;;) {
    run = (await api<RunView>("GET", `backups/${encodeURIComponent(runId)}`)).data;
    if (!current(route)) return;
    replace(panel, runSummary(run), run.status === "running" ? runProgress(run, cancel) : null);
    if (run.status !== "running" || !(await pause(route, 1000))) break;
  }
  if (run.status === "running") return;
  main.append(
    h("h2", {}, "Failures"),
    await failuresOf(run),
    h(
      "p",
      {},
      link(hashOf("restore", [identityId], { runId }), "Restore from this run"),
      " · ",
      link(hashOf("browse", [identityId]), "Browse the backups"),
    ),
  );
}

function runSummary(run: RunView): HTMLElement {
  return h(
    "dl",
    { class: "summary" },
    h("dt", {}, "Status"),
    h("dd", {}, badge(run.status), run.error ? ` ${run.error.code}: ${run.error.message}` : ""),
    h("dt", {}, "Started / ended"),
    h("dd", {}, `${time(run.startedAt)} — ${time(run.endedAt) || "running"}`),
    h("dt", {}, "Items"),
    h(
      "dd",
      {},
      `${run.itemsExported ?? 0} exported, ${run.itemsUnchanged ?? 0} unchanged, ${run.itemsFailed ?? 0} failed of ${run.itemsTotal ?? 0}; ${bytes(run.bytes)} uploaded`,
    ),
    h("dt", {}, "Portal traffic"),
    h(
      "dd",
      {},
      `${run.traffic?.requests ?? 0} requests, ${run.traffic?.retries ?? 0} retries, ${run.traffic?.throttled ?? 0} throttled`,
    ),
  );
}

function runProgress(run: RunView, cancel: () => Promise<void>): HTMLElement {
  const progress = run.progress;
  return h(
    "section",
    { class: "live", "aria-live": "polite" },
    h("h2", {}, `Running: ${progress?.phase ?? "starting"}`),
    progressBar(progress?.itemsDone ?? 0, progress?.itemsTotal ?? run.itemsTotal ?? 0),
    h(
      "p",
      { "data-progress": "" },
      `${(progress?.itemsPerSecond ?? 0).toFixed(1)} items/s · ${progress?.exported ?? 0} exported · ${progress?.unchanged ?? 0} unchanged · ${progress?.failed ?? 0} failed · ${bytes(progress?.bytes ?? 0)} · ${progress?.retries ?? 0} retries · ${progress?.throttled ?? 0} throttled`,
    ),
    progress?.cancelRequested
      ? h("p", { class: "muted" }, "Cancelling…")
      : h("button", { type: "button", class: "danger", onclick: () => void cancel() }, "Cancel backup"),
  );
}

interface ManifestHeader {
  failures: Array<{ itemId: string; title?: string; type?: string; code: string; message: string }>;
}

async function failuresOf(run: RunView): Promise<HTMLElement> {
  if (!run.manifest) return h("p", { class: "muted" }, "This run has no manifest.");
  const { failures } = await manifestHeader<ManifestHeader>(run.runId);
  if (failures.length === 0) return h("p", { class: "muted" }, "No item failed.");
  return table(
    ["Code", "Item", "Type", "Item id", "Reason"],
    failures.map((f) => [h("code", {}, f.code), f.title ?? "", f.type ?? "", f.itemId, f.message]),
    { class: "grid failures" },
  );
}

interface RunDiff {
  from: string;
  to: string;
  totals: { added: number; removed: number; changed: number; unchanged: number };
  added: Array<{ itemId: string; title: string; type: string }>;
  removed: Array<{ itemId: string; title: string; type: string }>;
  changed: Array<{
    itemId: string;
    title: string;
    type: string;
    from: string;
    to: string;
    parts: string[];
    fields: string[];
  }>;
}

async function renderRunDiff(
  main: HTMLElement,
  identityId: string,
  older: string,
  newer: string,
): Promise<void> {
  const { data } = await api<RunDiff>(
    "GET",
    `backups/${encodeURIComponent(newer)}/diff?against=${encodeURIComponent(older)}`,
  );
  const item = (i: { itemId: string; title: string; type: string }) =>
    h("li", {}, link(hashOf("browse", [identityId, "item", i.itemId]), i.title), ` (${i.type})`);
  replace(
    main,
    h("h1", {}, "What changed between two runs"),
    h(
      "p",
      {},
      `${data.totals.added} added, ${data.totals.removed} removed, ${data.totals.changed} changed, ${data.totals.unchanged} unchanged`,
    ),
    h(
      "div",
      { class: "side-by-side" },
      h(
        "section",
        {},
        h("h2", {}, `Older: ${data.from}`),
        h("h3", {}, "Only here (removed since)"),
        h("ul", {}, ...data.removed.map(item)),
      ),
      h(
        "section",
        {},
        h("h2", {}, `Newer: ${data.to}`),
        h("h3", {}, "Only here (added since)"),
        h("ul", {}, ...data.added.map(item)),
      ),
    ),
    h("h2", {}, "Changed items"),
    table(
      ["Item", "Type", "Older version", "Newer version", "Parts", "Fields"],
      data.changed.map((c) => [
        link(hashOf("browse", [identityId, "item", c.itemId]), c.title),
        c.type,
        c.from,
        c.to,
        c.parts.join(", "),
        c.fields.join(", "),
      ]),
    ),
  );
}

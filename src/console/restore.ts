import { api, showError } from "./api.js";
import { badge, field, h, inputValue, link, progressBar, replace, select, table, time } from "./dom.js";
import { type IdentityView, listIdentities, portalHome } from "./identities.js";
import { chooseIdentity } from "./pick.js";
import { current, hashOf, pause, type Route } from "./route.js";
import { listRuns } from "./runs.js";

// Restore: items (or a whole run) into a target org, owner, folder and mode; the dry run's plan in
// dependency order; then the restore followed to its report, whose new ids link to the target org.

interface PlanItem {
  itemId: string;
  title: string;
  type: string;
  action: string;
  level: number;
  dependsOn: string[];
  owner: string;
  folder: string | null;
  reason?: { code: string; message: string };
}
interface Plan {
  levels: string[][];
  items: PlanItem[];
  missingGroups: Array<{ title: string }>;
  warnings: string[];
  totals: { items: number; create: number; overwrite: number; skip: number };
}

export async function renderRestore(main: HTMLElement, route: Route): Promise<void> {
  const identityId = route.identityId;
  if (!identityId) return chooseIdentity(main, "restore", "Restore");
  if (route.rest[0]) return followRestore(main, route, identityId, route.rest[0]);
  const [runs, identities] = await Promise.all([listRuns(identityId), listIdentities()]);
  const complete = runs.filter((run) => run.manifest && run.status.startsWith("completed"));
  const wanted = route.query.get("runId") ?? complete[0]?.runId ?? "";
  const runIds = complete.map((run) => run.runId);
  if (wanted && !runIds.includes(wanted)) runIds.unshift(wanted);
  const form = h(
    "form",
    { class: "restore", novalidate: true },
    select("From run", "runId", runIds, wanted),
    h(
      "label",
      { class: "field" },
      h("span", {}, "Item ids (empty: every item of the run)"),
      h("textarea", { name: "itemIds", "data-field": "itemIds", rows: 2 }, route.query.get("itemIds") ?? ""),
    ),
    h(
      "label",
      { class: "field" },
      h("span", {}, "Target org"),
      h(
        "select",
        { name: "target.identityId", "data-field": "target.identityId" },
        ...identities.map((i) => h("option", { value: i.id, selected: i.id === identityId }, i.name)),
      ),
    ),
    field("Owner (optional)", "target.owner"),
    field("Folder (optional)", "target.folder"),
    select("Mode", "target.mode", ["new", "overwrite"], route.query.get("mode") ?? "new"),
  );
  const outcome = h("div", { class: "outcome-slot" });
  const send = async (dryRun: boolean) => {
    replace(outcome, h("p", { class: "muted" }, dryRun ? "Planning…" : "Starting…"));
    try {
      const { data } = await api<{ plan?: Plan; restoreId?: string }>(
        "POST",
        `identities/${encodeURIComponent(identityId)}/restores`,
        { ...restoreBody(form), dryRun },
      );
      if (data.plan) replace(outcome, planView(data.plan));
      if (data.restoreId) location.hash = hashOf("restore", [identityId, data.restoreId]);
    } catch (error) {
      showError(outcome, error, form);
    }
  };
  replace(
    main,
    h("h1", {}, "Restore"),
    form,
    h(
      "div",
      { class: "buttons" },
      h("button", { type: "button", onclick: () => void send(true) }, "Plan (dry run)"),
      h("button", { type: "button", class: "primary", onclick: () => void send(false) }, "Start restore"),
    ),
    outcome,
    h("h2", {}, "Earlier restores"),
    await earlierRestores(identityId),
  );
}

function restoreBody(form: HTMLElement): Record<string, unknown> {
  const itemIds = inputValue(form, "itemIds")
    .split(/[\s,]+/)
    .filter(Boolean);
  const target: Record<string, string> = { mode: inputValue(form, "target.mode") };
  for (const name of ["identityId", "owner", "folder"]) {
    const value = inputValue(form, `target.${name}`);
    if (value) target[name] = value;
  }
  return { runId: inputValue(form, "runId"), ...(itemIds.length ? { itemIds } : {}), target };
}

/** The plan in the order it will run: level by level, each item after what it depends on. */
function planView(plan: Plan): HTMLElement {
  const titles = new Map(plan.items.map((item) => [item.itemId, item.title]));
  const entry = (item: PlanItem) =>
    h(
      "li",
      { "data-item": item.itemId },
      h("strong", {}, item.title),
      ` (${item.type}) — `,
      badge(item.action),
      ` → ${item.owner}${item.folder ? ` / ${item.folder}` : ""}`,
      item.dependsOn.length
        ? h(
            "div",
            { class: "muted" },
            `after: ${item.dependsOn.map((id) => titles.get(id) ?? id).join(", ")}`,
          )
        : null,
      item.reason ? h("div", { class: "muted" }, `${item.reason.code}: ${item.reason.message}`) : null,
    );
  const byLevel = plan.levels.map((ids) => plan.items.filter((item) => ids.includes(item.itemId)));
  const skipped = plan.items.filter((item) => item.level < 0);
  return h(
    "section",
    { class: "plan" },
    h("h2", {}, "Plan"),
    h(
      "p",
      {},
      `${plan.totals.items} items: ${plan.totals.create} to create, ${plan.totals.overwrite} to overwrite, ${plan.totals.skip} skipped`,
    ),
    h(
      "ol",
      { class: "levels" },
      ...byLevel.map((items, level) =>
        h("li", {}, h("span", { class: "muted" }, `Level ${level + 1}`), h("ul", {}, ...items.map(entry))),
      ),
    ),
    skipped.length ? h("div", {}, h("h3", {}, "Skipped"), h("ul", {}, ...skipped.map(entry))) : null,
    plan.missingGroups.length
      ? h("p", {}, `Groups missing in the target: ${plan.missingGroups.map((g) => g.title).join(", ")}`)
      : null,
    ...plan.warnings.map((warning) => h("p", { class: "outcome warning" }, warning)),
  );
}

interface RestoreView {
  restoreId: string;
  runId: string;
  status: string;
  startedAt: string;
  endedAt?: string;
  itemsTotal: number;
  target: { identityId: string; mode: string };
  error?: { code: string; message: string };
  progress?: {
    phase: string;
    level?: number;
    levels?: number;
    itemsTotal?: number;
    itemsDone: number;
    restored: number;
    failed: number;
    skipped: number;
    requests?: number;
    retries?: number;
    throttled?: number;
  };
  report?: Report;
}
interface Report {
  totals: { items: number; restored: number; failed: number; skipped: number };
  items: Array<{
    itemId: string;
    title: string;
    type: string;
    action: string;
    status: string;
    newId: string | null;
    notes: string[];
    error?: { code: string; message: string };
  }>;
  failures: Array<{ itemId: string; title?: string; code: string; message: string }>;
  missingGroups: Array<{ title: string }>;
}

async function earlierRestores(identityId: string): Promise<HTMLElement> {
  const { data } = await api<{ restores: RestoreView[] }>(
    "GET",
    `identities/${encodeURIComponent(identityId)}/restores`,
  );
  if (data.restores.length === 0) return h("p", { class: "muted" }, "None yet.");
  return table(
    ["Restore", "From run", "Status", "Started", "Items"],
    data.restores.map((r) => [
      link(hashOf("restore", [identityId, r.restoreId]), r.restoreId),
      r.runId,
      badge(r.status),
      time(r.startedAt),
      String(r.itemsTotal),
    ]),
  );
}

async function followRestore(
  main: HTMLElement,
  route: Route,
  identityId: string,
  restoreId: string,
): Promise<void> {
  const panel = h("div");
  replace(
    main,
    h("h1", {}, `Restore ${restoreId}`),
    h("p", {}, link(hashOf("restore", [identityId]), "← new restore")),
    panel,
  );
  let restore: RestoreView;
  for (;;) {
    restore = (await api<RestoreView>("GET", `restores/${encodeURIComponent(restoreId)}`)).data;
    if (!current(route)) return;
    if (restore.status !== "running") break;
    const p = restore.progress;
    replace(
      panel,
      h(
        "p",
        {},
        badge("running"),
        ` ${p?.phase ?? "starting"}${p?.level !== undefined ? `, level ${p.level + 1} of ${p.levels ?? "?"}` : ""}`,
      ),
      progressBar(p?.itemsDone ?? 0, p?.itemsTotal ?? restore.itemsTotal),
      h(
        "p",
        { class: "muted" },
        `${p?.restored ?? 0} restored · ${p?.failed ?? 0} failed · ${p?.skipped ?? 0} skipped · ${p?.requests ?? 0} portal requests, ${p?.retries ?? 0} retries, ${p?.throttled ?? 0} throttled`,
      ),
    );
    if (!(await pause(route, 1000))) return;
  }
  const target = (await listIdentities()).find((identity) => identity.id === restore.target.identityId);
  replace(panel, reportView(restore, target));
}

function reportView(restore: RestoreView, target: IdentityView | undefined): HTMLElement {
  const report = restore.report;
  const home = target ? portalHome(target) : undefined;
  if (!report)
    return h(
      "div",
      {},
      badge(restore.status),
      restore.error ? ` ${restore.error.code}: ${restore.error.message}` : "",
    );
  const rows = report.items.map((item) => [
    item.title,
    item.type,
    item.action,
    badge(item.status),
    item.newId && home
      ? h(
          "a",
          {
            href: `${home}/home/item.html?id=${encodeURIComponent(item.newId)}`,
            target: "_blank",
            rel: "noopener",
            "data-new-id": item.newId,
          },
          item.newId,
        )
      : (item.newId ?? ""),
    item.error ? `${item.error.code}: ${item.error.message}` : item.notes.join("; "),
  ]);
  return h(
    "section",
    { class: "report" },
    h(
      "p",
      {},
      badge(restore.status),
      ` ${report.totals.restored} restored, ${report.totals.failed} failed, ${report.totals.skipped} skipped of ${report.totals.items} · into ${target?.name ?? restore.target.identityId} (${restore.target.mode})`,
    ),
    table(["Item", "Type", "Action", "Status", "New id (in the target org)", "Notes"], rows),
    report.missingGroups.length
      ? h("p", {}, `Groups missing in the target: ${report.missingGroups.map((g) => g.title).join(", ")}`)
      : null,
  );
}

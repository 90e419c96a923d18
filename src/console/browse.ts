import { api, apiUrl, showError } from "./api.js";
import { badge, bytes, h, inputValue, link, replace, table, time } from "./dom.js";
import { chooseIdentity } from "./pick.js";
import { hashOf, type Route } from "./route.js";

// Finding things in the backups: search every item ever captured (deleted ones first-class),
// page by page with the API's continuation token; an item's history with thumbnails; the
// difference between two of its versions, side by side.

interface FoundItem {
  itemId: string;
  title: string;
  type: string;
  owner: string;
  folder?: string | null;
  lastRunId: string;
  lastSeenAt: string;
  versions: number;
  deleted: boolean;
}

const PAGE_SIZE = 50;

/** The search's fields: the page's query names them as the API does. */
const SEARCH_FIELDS = [
  ["q", "title, tag or item id"],
  ["type", "type (e.g. Web Map)"],
  ["owner", "owner"],
] as const;

export async function renderBrowse(main: HTMLElement, route: Route): Promise<void> {
  const identityId = route.identityId;
  if (!identityId) return chooseIdentity(main, "browse", "Browse");
  if (route.rest[0] === "item" && route.rest[1]) return renderHistory(main, identityId, route.rest[1]);
  const query = route.query;
  const show = query.get("deleted") ?? "";
  const form = h(
    "form",
    { class: "search", role: "search" },
    ...SEARCH_FIELDS.map(([name, placeholder]) =>
      h("input", { name, placeholder, value: query.get(name) ?? "", "data-field": name }),
    ),
    h("button", { type: "submit", class: "primary" }, "Search"),
  );
  const tabs = h(
    "div",
    { class: "tabs" },
    ...[
      ["true", "Deleted items"],
      ["", "All items"],
      ["false", "Still in the org"],
    ].map(([value, label]) =>
      link(
        hashOf("browse", [identityId], { ...Object.fromEntries(query), deleted: value ?? "" }),
        label ?? "",
        { class: value === show ? "current" : "" },
      ),
    ),
  );
  const results = h("div", { class: "results" });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const next: Record<string, string> = { deleted: show };
    for (const [name] of SEARCH_FIELDS) if (inputValue(form, name)) next[name] = inputValue(form, name);
    location.hash = hashOf("browse", [identityId], next);
  });
  replace(main, h("h1", {}, "Browse the backups"), tabs, form, results);
  const params = new URLSearchParams({ top: query.get("top") ?? String(PAGE_SIZE) });
  for (const [name] of SEARCH_FIELDS) if (query.get(name)) params.set(name, query.get(name) ?? "");
  if (show) params.set("deleted", show);
  await loadPage(results, form, identityId, params);
}

/** One page of results; "Load more" asks the API for the next with its continuation token. */
async function loadPage(
  results: HTMLElement,
  form: HTMLElement,
  identityId: string,
  params: URLSearchParams,
): Promise<void> {
  let data: { items: FoundItem[]; continuationToken?: string };
  try {
    data = (await api<typeof data>("GET", `identities/${encodeURIComponent(identityId)}/items?${params}`))
      .data;
  } catch (error) {
    showError(results, error, form);
    return;
  }
  results.querySelector(".more")?.remove();
  let body = results.querySelector("tbody");
  if (!body) {
    if (data.items.length === 0) {
      replace(results, h("p", { class: "muted" }, "Nothing found."));
      return;
    }
    results.append(table(["Item", "Type", "Owner", "Folder", "Versions", "Last seen", ""], []));
    body = results.querySelector("tbody");
  }
  for (const item of data.items) body?.append(itemRow(identityId, item));
  const token = data.continuationToken;
  if (token) {
    const next = new URLSearchParams(params);
    next.set("continuationToken", token);
    results.append(
      h(
        "button",
        { type: "button", class: "more", onclick: () => void loadPage(results, form, identityId, next) },
        "Load more",
      ),
    );
  }
}

function itemRow(identityId: string, item: FoundItem): HTMLTableRowElement {
  const cells = [
    h(
      "span",
      {},
      link(hashOf("browse", [identityId, "item", item.itemId]), item.title),
      item.deleted ? badge("deleted") : null,
    ),
    item.type,
    item.owner,
    item.folder ?? "",
    String(item.versions),
    h("span", { title: item.lastRunId }, time(item.lastSeenAt)),
    link(hashOf("restore", [identityId], { runId: item.lastRunId, itemIds: item.itemId }), "Restore"),
  ];
  return h("tr", { "data-item": item.itemId }, ...cells.map((cell) => h("td", {}, cell)));
}

interface Version {
  version: string;
  modified: string;
  firstRunId: string;
  runs: string[];
  files: Array<{ path: string; size: number; kind: string }>;
  sharing?: { access: string; groups: string[] };
  changes: { parts: string[]; fields: string[] } | null;
}

async function renderHistory(main: HTMLElement, identityId: string, itemId: string): Promise<void> {
  const base = `identities/${encodeURIComponent(identityId)}/items/${encodeURIComponent(itemId)}`;
  const { data } = await api<{ title: string; type: string; deleted: boolean; versions: Version[] }>(
    "GET",
    `${base}/versions`,
  );
  const diff = h("div", { class: "diff" });
  const rows = data.versions.map((v, i) => {
    const thumbnail = v.files.find((f) => f.kind === "thumbnail");
    return [
      end("from", v.version, i === data.versions.length - 2),
      end("to", v.version, i === data.versions.length - 1),
      thumbnail
        ? h("img", {
            class: "thumb",
            alt: "thumbnail",
            src: apiUrl(
              `${base}/versions/${encodeURIComponent(v.version)}/files/${thumbnail.path.split("/").map(encodeURIComponent).join("/")}`,
            ),
          })
        : "",
      v.version,
      time(v.modified),
      `${v.runs.length} run(s)`,
      v.changes ? v.changes.parts.join(", ") : "first capture",
      `${v.files.length} files, ${bytes(v.files.reduce((sum, f) => sum + f.size, 0))}`,
      v.sharing?.access ?? "",
      link(
        hashOf("restore", [identityId], {
          runId: v.runs[v.runs.length - 1] ?? v.firstRunId,
          itemIds: itemId,
          mode: data.deleted ? "new" : "overwrite",
        }),
        "Restore this version",
      ),
    ];
  });
  const picker = h(
    "form",
    { class: "versions" },
    table(["From", "To", "", "Version", "Modified", "Held by", "Changed", "Files", "Access", ""], rows),
  );
  const compare = h(
    "button",
    { type: "button", class: "primary", onclick: () => void showDiff(diff, base, picker) },
    "Compare the two versions",
  );
  replace(
    main,
    h("h1", {}, data.title, " ", data.deleted ? badge("deleted") : null),
    h("p", { class: "muted" }, `${data.type} · ${itemId}`),
    picker,
    data.versions.length > 1 ? compare : h("p", { class: "muted" }, "One version only."),
    diff,
  );
}

interface VersionDiff {
  from: string;
  to: string;
  parts: string[];
  fields: string[];
  patches?: { item?: Patch[]; data?: Patch[]; resources?: Record<string, Patch[]> };
}
type Patch = { op: string; path: string; value?: unknown };

/** The radio button that picks a version as one end of the comparison. */
function end(name: "from" | "to", version: string, checked: boolean): HTMLInputElement {
  return h("input", { type: "radio", name, value: version, checked, "aria-label": `${name} ${version}` });
}

async function showDiff(target: HTMLElement, base: string, picker: HTMLElement): Promise<void> {
  const checked = (name: string) =>
    picker.querySelector<HTMLInputElement>(`input[name=${name}]:checked`)?.value ?? "";
  replace(target, h("p", { class: "muted" }, "Comparing…"));
  try {
    const query = `from=${encodeURIComponent(checked("from"))}&to=${encodeURIComponent(checked("to"))}`;
    const { data } = await api<VersionDiff>("GET", `${base}/diff?${query}`);
    const [left, right] = await Promise.all([data.from, data.to].map((v) => itemJson(base, v)));
    const fieldRows = data.fields.map((name) => [
      h("code", {}, name),
      h("pre", { class: "old" }, show(left?.[name])),
      h("pre", { class: "new" }, show(right?.[name])),
    ]);
    replace(
      target,
      h("h2", {}, `${data.from} → ${data.to}`),
      h("p", {}, data.parts.length ? `Changed: ${data.parts.join(", ")}` : "No difference."),
      fieldRows.length
        ? table(["Item field", data.from, data.to], fieldRows, { class: "grid side-by-side-table" })
        : null,
      patchTable("Data", data.patches?.data),
      ...Object.entries(data.patches?.resources ?? {}).map(([path, patches]) =>
        patchTable(`Resource ${path}`, patches),
      ),
    );
  } catch (error) {
    showError(target, error, picker);
  }
}

async function itemJson(base: string, version: string): Promise<Record<string, unknown> | undefined> {
  const response = await fetch(apiUrl(`${base}/versions/${encodeURIComponent(version)}/files/item.json`), {
    credentials: "same-origin",
  });
  return response.ok ? ((await response.json()) as Record<string, unknown>) : undefined;
}

function show(value: unknown): string {
  if (value === undefined) return "(absent)";
  const text = typeof value === "string" ? value : JSON.stringify(value, null, 1);
  return text.length > 2000 ? `${text.slice(0, 2000)}…` : text;
}

function patchTable(title: string, patches: Patch[] | undefined): HTMLElement | null {
  if (!patches || patches.length === 0) return null;
  return h(
    "section",
    {},
    h("h3", {}, title),
    table(
      ["Operation", "Path", "New value"],
      patches.map((p) => [p.op, h("code", {}, p.path), h("pre", {}, p.op === "remove" ? "" : show(p.value))]),
    ),
  );
}

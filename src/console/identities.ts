import { api, showError } from "./api.js";
import { badge, failureBox, field, h, inputValue, link, replace, select, table, time } from "./dom.js";
import { hashOf, type Route } from "./route.js";

// "Manage Identities": the list, and one identity's form with Check Azure Credentials and Save and
// Verify as two buttons whose outcomes show beside them, the OAuth sign-in of oauth2-user
// identities, the schedule and the retention policy.

export interface IdentityView {
  id: string;
  name: string;
  kind: string;
  portalUrl: string;
  sharingUrl: string;
  auth: { type: string; username?: string; clientId?: string };
  storage: { type: string; container: string; accountUrl?: string };
  cacheDirectory: string;
  schedule?: { cron: string; enabled: boolean };
  maxOrgBudgetShare: number;
  retention?: Record<string, number>;
  secrets: Record<string, true>;
  etag: string;
  lastVerifiedAt?: string;
  lastVerification?: { ok: boolean; error?: { code: string; message: string } };
}

const RETENTION_FIELDS = [
  "keepLast",
  "keepDaily",
  "keepWeekly",
  "keepMonthly",
  "keepYearly",
  "keepWithinDays",
  "keepDeletedDays",
];

export async function listIdentities(): Promise<IdentityView[]> {
  return (await api<{ identities: IdentityView[] }>("GET", "identities")).data.identities;
}

/** The org's home (where item pages live), from the identity's Sharing REST root. */
export function portalHome(identity: IdentityView): string {
  return identity.sharingUrl.replace(/\/sharing\/rest\/?$/i, "");
}

export async function renderIdentities(main: HTMLElement, route: Route): Promise<void> {
  if (route.identityId === "new") return renderForm(main, undefined);
  if (route.identityId) {
    const answer = await api<IdentityView>("GET", `identities/${encodeURIComponent(route.identityId)}`);
    return renderForm(main, { ...answer.data, etag: answer.headers.get("etag") ?? answer.data.etag });
  }
  const identities = await listIdentities();
  const rows = identities.map((identity) => [
    link(hashOf("identities", [identity.id]), identity.name),
    identity.kind,
    identity.portalUrl,
    identity.auth.type,
    identity.schedule ? `${identity.schedule.cron}${identity.schedule.enabled ? "" : " (off)"}` : "",
    identity.lastVerification
      ? badge(identity.lastVerification.ok ? "verified" : "failed")
      : badge("not verified", "unknown"),
    h(
      "span",
      { class: "actions" },
      link(hashOf("runs", [identity.id]), "Runs"),
      link(hashOf("browse", [identity.id]), "Browse"),
      link(hashOf("restore", [identity.id]), "Restore"),
    ),
  ]);
  replace(
    main,
    h("h1", {}, "Manage Identities"),
    h("p", {}, link("#/identities/new", "New identity", { class: "button" })),
    identities.length === 0
      ? h("p", { class: "muted" }, "No identity yet: add the org to back up.")
      : table(["Name", "Kind", "Portal", "Sign-in", "Schedule", "Verification", ""], rows),
  );
}

function renderForm(main: HTMLElement, identity: IdentityView | undefined): void {
  const state = { identity };
  const form = h("form", { class: "identity", novalidate: true });
  const checkOutcome = h("div", { class: "outcome-slot", "data-outcome": "check" });
  const saveOutcome = h("div", { class: "outcome-slot", "data-outcome": "save" });
  const authType = identity?.auth.type ?? "builtin";
  const secretHint = (name: string) => (identity?.secrets[name] ? "set — leave empty to keep it" : undefined);
  replace(
    form,
    h(
      "fieldset",
      {},
      h("legend", {}, "Organization"),
      field("Name", "name", { value: identity?.name ?? "", required: true }),
      select("Kind", "kind", ["arcgis-online", "arcgis-enterprise"], identity?.kind ?? "arcgis-online"),
      field("Portal URL", "portalUrl", {
        value: identity?.portalUrl ?? "",
        placeholder: "https://myorg.maps.arcgis.com",
      }),
    ),
    authFieldset(identity, authType, secretHint),
    storageFieldset(form, identity, secretHint, checkOutcome),
    scheduleFieldset(identity),
    h(
      "div",
      { class: "buttons" },
      h(
        "button",
        {
          type: "button",
          class: "primary",
          "data-action": "save",
          onclick: () => void saveAndVerify(form, saveOutcome, state),
        },
        "Save and Verify",
      ),
      identity ? oauthButton(identity, saveOutcome) : null,
      identity
        ? h(
            "button",
            { type: "button", class: "danger", onclick: () => void remove(identity, saveOutcome) },
            "Delete",
          )
        : null,
      saveOutcome,
    ),
  );
  form.addEventListener("change", (event) => {
    if ((event.target as HTMLElement).getAttribute("name") === "auth.type") showAuthFields(form);
  });
  replace(main, h("h1", {}, identity ? identity.name : "New identity"), form);
  showAuthFields(form);
}

function storageFieldset(
  form: HTMLElement,
  identity: IdentityView | undefined,
  secretHint: (name: string) => string | undefined,
  checkOutcome: HTMLElement,
): HTMLElement {
  return h(
    "fieldset",
    {},
    h("legend", {}, "Backup storage (Azure Blob)"),
    field("Container", "storage.container", { value: identity?.storage.container ?? "" }),
    field(
      "Connection string",
      "storage.connectionString",
      { type: "password", autocomplete: "off" },
      secretHint("connectionString"),
    ),
    field("Or account URL (managed identity)", "storage.accountUrl", {
      value: identity?.storage.accountUrl ?? "",
    }),
    h(
      "label",
      { class: "check" },
      h("input", { type: "checkbox", name: "createIfMissing" }),
      "Create the container if it is missing",
    ),
    h(
      "div",
      { class: "buttons" },
      h(
        "button",
        { type: "button", "data-action": "check", onclick: () => void checkStorage(form, checkOutcome) },
        "Check Azure Credentials",
      ),
      checkOutcome,
    ),
    field(
      "Cache directory",
      "cacheDirectory",
      { value: identity?.cacheDirectory ?? "" },
      "inside CACHE_ROOT; empty: the default",
    ),
  );
}

function authFieldset(
  identity: IdentityView | undefined,
  authType: string,
  secretHint: (name: string) => string | undefined,
): HTMLElement {
  return h(
    "fieldset",
    {},
    h("legend", {}, "Sign-in to the portal"),
    select("Type", "auth.type", ["builtin", "oauth2-app", "oauth2-user"], authType),
    h(
      "div",
      { "data-auth": "builtin" },
      field("Username", "auth.username", { value: identity?.auth.username ?? "" }),
      field("Password", "auth.password", { type: "password", autocomplete: "off" }, secretHint("password")),
    ),
    h(
      "div",
      { "data-auth": "oauth2-app oauth2-user" },
      field("Client ID", "auth.clientId", { value: identity?.auth.clientId ?? "" }),
    ),
    h(
      "div",
      { "data-auth": "oauth2-app" },
      field(
        "Client secret",
        "auth.clientSecret",
        { type: "password", autocomplete: "off" },
        secretHint("clientSecret"),
      ),
    ),
  );
}

function scheduleFieldset(identity: IdentityView | undefined): HTMLElement {
  return h(
    "fieldset",
    {},
    h("legend", {}, "Schedule and retention"),
    field("Schedule (NCRONTAB, UTC)", "schedule.cron", {
      value: identity?.schedule?.cron ?? "",
      placeholder: "0 0 2 * * *",
    }),
    h(
      "label",
      { class: "check" },
      h("input", {
        type: "checkbox",
        name: "schedule.enabled",
        "data-field": "schedule.enabled",
        checked: identity?.schedule?.enabled ?? true,
      }),
      "Schedule enabled",
    ),
    field("Share of the org's request units", "maxOrgBudgetShare", {
      type: "number",
      step: "0.05",
      min: "0.05",
      max: "1",
      value: identity?.maxOrgBudgetShare ?? "",
    }),
    h(
      "div",
      { class: "retention" },
      ...RETENTION_FIELDS.map((name) =>
        field(name, `retention.${name}`, {
          type: "number",
          min: "0",
          value: identity?.retention?.[name] ?? "",
        }),
      ),
    ),
    h("small", {}, "Retention: empty everywhere keeps every run."),
  );
}

function showAuthFields(form: HTMLElement): void {
  const type = inputValue(form, "auth.type");
  for (const group of form.querySelectorAll<HTMLElement>("[data-auth]")) {
    group.hidden = !(group.dataset.auth ?? "").split(" ").includes(type);
  }
  const oauth = form.querySelector<HTMLElement>("[data-action=oauth]");
  if (oauth) oauth.hidden = type !== "oauth2-user";
}

function storageBody(form: HTMLElement): Record<string, string> {
  const body: Record<string, string> = {
    type: "azure-blob",
    container: inputValue(form, "storage.container"),
  };
  const connectionString = inputValue(form, "storage.connectionString");
  const accountUrl = inputValue(form, "storage.accountUrl");
  if (connectionString) body.connectionString = connectionString;
  if (accountUrl) body.accountUrl = accountUrl;
  return body;
}

async function checkStorage(form: HTMLElement, outcome: HTMLElement): Promise<void> {
  replace(outcome, h("span", { class: "muted" }, "Checking…"));
  const body = {
    ...storageBody(form),
    ...(inputValue(form, "createIfMissing") ? { createIfMissing: true } : {}),
  };
  try {
    const { data } = await api<{
      ok: boolean;
      account?: string;
      container?: string;
      containerCreated?: boolean;
      immutable?: boolean;
      error?: { code: string; message: string };
    }>("POST", "storage/check", body);
    if (data.ok) {
      const notes = [
        data.containerCreated ? "container created" : "",
        data.immutable ? "immutable (WORM)" : "",
      ].filter(Boolean);
      replace(
        outcome,
        h(
          "div",
          { class: "outcome ok", role: "status" },
          `Storage OK: ${data.account ?? ""}/${data.container ?? ""}`,
          notes.length ? ` (${notes.join(", ")})` : "",
        ),
      );
    } else {
      replace(outcome, failureBox(data.error?.message ?? "The check failed", data.error?.code ?? ""));
    }
  } catch (error) {
    showError(outcome, error, form, "storage.");
  }
}

/** The form as the API takes it; on an edit, secrets left empty are left out (kept). */
export function identityBody(form: HTMLElement, existing: IdentityView | undefined): Record<string, unknown> {
  const authType = inputValue(form, "auth.type");
  const auth: Record<string, string> = { type: authType };
  const authFields =
    authType === "builtin"
      ? ["username", "password"]
      : authType === "oauth2-app"
        ? ["clientId", "clientSecret"]
        : ["clientId"];
  for (const name of authFields) {
    const value = inputValue(form, `auth.${name}`);
    if (value) auth[name] = value;
  }
  const body: Record<string, unknown> = {
    name: inputValue(form, "name"),
    kind: inputValue(form, "kind"),
    portalUrl: inputValue(form, "portalUrl"),
    auth,
    storage: storageBody(form),
  };
  const cacheDirectory = inputValue(form, "cacheDirectory");
  if (cacheDirectory) body.cacheDirectory = cacheDirectory;
  const share = inputValue(form, "maxOrgBudgetShare");
  if (share) body.maxOrgBudgetShare = Number(share);
  const cron = inputValue(form, "schedule.cron");
  if (cron) body.schedule = { cron, enabled: Boolean(inputValue(form, "schedule.enabled")) };
  else if (existing?.schedule) body.schedule = null;
  const retention: Record<string, number> = {};
  for (const name of RETENTION_FIELDS) {
    const value = inputValue(form, `retention.${name}`);
    if (value) retention[name] = Number(value);
  }
  if (Object.keys(retention).length > 0) body.retention = retention;
  else if (existing?.retention) body.retention = null;
  return body;
}

async function saveAndVerify(
  form: HTMLElement,
  outcome: HTMLElement,
  state: { identity: IdentityView | undefined },
): Promise<void> {
  replace(outcome, h("span", { class: "muted" }, "Saving…"));
  let saved: IdentityView;
  try {
    const body = identityBody(form, state.identity);
    const answer = state.identity
      ? await api<IdentityView>("PATCH", `identities/${encodeURIComponent(state.identity.id)}`, body, {
          "if-match": state.identity.etag,
        })
      : await api<IdentityView>("POST", "identities", body);
    saved = { ...answer.data, etag: answer.headers.get("etag") ?? answer.data.etag };
    state.identity = saved;
    history.replaceState(null, "", hashOf("identities", [saved.id]));
  } catch (error) {
    showError(outcome, error, form);
    return;
  }
  replace(outcome, h("span", { class: "muted" }, "Saved. Verifying…"));
  try {
    const { data } = await api<{
      ok: boolean;
      portal?: { name: string };
      user?: { username: string; role: string };
      warnings: string[];
      error?: { code: string; message: string };
    }>("POST", `identities/${encodeURIComponent(saved.id)}/verify`);
    const summary = data.ok
      ? h(
          "div",
          { class: "outcome ok", role: "status" },
          `Saved and verified: ${data.portal?.name ?? ""} as ${data.user?.username ?? ""} (${data.user?.role ?? ""})`,
        )
      : failureBox(`Saved, but verification failed: ${data.error?.message ?? ""}`, data.error?.code ?? "");
    replace(
      outcome,
      summary,
      data.warnings.length
        ? h("ul", { class: "warnings" }, ...data.warnings.map((w) => h("li", {}, w)))
        : null,
    );
  } catch (error) {
    showError(outcome, error, form);
  }
}

function oauthButton(identity: IdentityView, outcome: HTMLElement): HTMLElement {
  const start = async () => {
    try {
      const { data } = await api<{ authorizeUrl: string; expiresAt: string }>(
        "POST",
        `identities/${encodeURIComponent(identity.id)}/oauth/start`,
      );
      window.open(data.authorizeUrl, "_blank", "noopener");
      replace(
        outcome,
        h(
          "div",
          { class: "outcome ok" },
          `Sign in as an administrator in the window that opened (before ${time(data.expiresAt)}), then Save and Verify.`,
          " ",
          h("a", { href: data.authorizeUrl, target: "_blank", rel: "noopener" }, "Open the sign-in page"),
        ),
      );
    } catch (error) {
      showError(outcome, error);
    }
  };
  return h(
    "button",
    { type: "button", "data-action": "oauth", onclick: () => void start() },
    "Sign in with ArcGIS (OAuth)",
  );
}

async function remove(identity: IdentityView, outcome: HTMLElement): Promise<void> {
  if (!confirm(`Delete ${identity.name} and its secrets? Its backups stay in the container.`)) return;
  try {
    await api("DELETE", `identities/${encodeURIComponent(identity.id)}`);
    location.hash = "#/identities";
  } catch (error) {
    showError(outcome, error);
  }
}

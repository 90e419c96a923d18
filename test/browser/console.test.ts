import type { Page, Request } from "playwright-core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type AppHarness, startAppHarness } from "../support/app-harness.js";
import { type Browser, buildConsole, launchBrowser, screenshot } from "./support.js";

// An administrator's session in a real browser (Debian's Chromium) against the local host, the
// portal simulator and Azurite: create an identity (storage check, save and verify), run a backup,
// find an item deleted from the org, see its history and the diff of its two versions, restore it.
// Screenshots go to test-results/console/ (and docs/console/ with CONSOLE_SCREENSHOTS_TO_DOCS=1).

let app: AppHarness;
let browser: Browser;
let page: Page;
let base: string;
let identityId: string;
let dashboardId: string;
const requests: Request[] = [];
const browserErrors: string[] = [];

beforeAll(async () => {
  await buildConsole();
  browser = await launchBrowser();
  app = await startAppHarness({ sim: { size: "tiny", seed: 23 } });
  page = browser.page;
  page.setDefaultTimeout(20_000);
  page.on("request", (request) => requests.push(request));
  page.on("pageerror", (error) => browserErrors.push(error.message));
  page.on("console", (message) => {
    if (message.type() === "error") browserErrors.push(message.text());
  });
  base = `${app.host.baseUrl}/api/console/`;
  const dashboard = [...app.sim.model.items()].find((item) => item.type === "Dashboard");
  if (!dashboard) throw new Error("the simulated org has no dashboard");
  dashboardId = dashboard.id;
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await app?.close();
});

/** Waits for `count` matches of a selector, then checks there are no more. */
async function expectRows(selector: string, count: number): Promise<void> {
  await page
    .locator(selector)
    .nth(count - 1)
    .waitFor();
  expect(await page.locator(selector).count()).toBe(count);
}

/** Starts a backup on the Runs page and waits on the run's page until it has ended. */
async function backupThroughConsole(name: string): Promise<string> {
  await page.goto(`${base}#/runs/${identityId}`);
  await page.locator("[name=runName]").fill(name);
  await page.getByRole("button", { name: "Start backup" }).click();
  await page.waitForURL(/#\/runs\/[^/]+\/b-/);
  // A run of the tiny org lasts seconds: its live progress is shown when the page catches it.
  const live = page.locator("section.live");
  if (
    await live.waitFor({ timeout: 2_000 }).then(
      () => true,
      () => false,
    )
  ) {
    await screenshot(page, "run-progress").catch(() => undefined);
  }
  await page.getByRole("heading", { name: "Failures" }).waitFor({ timeout: 60_000 });
  await expect(page.locator("dl.summary .badge").textContent()).resolves.toBe("completed");
  return decodeURIComponent(page.url().split("/").pop() ?? "");
}

describe("the console in a browser", () => {
  test("the first page loads small, offline, without errors", async () => {
    let transferred = 0;
    const count = async (request: Request) => {
      const sizes = await request.sizes();
      transferred += sizes.responseBodySize + sizes.responseHeadersSize;
    };
    page.on("requestfinished", count);
    await page.goto(base);
    await page.getByRole("heading", { name: "Manage Identities" }).waitFor();
    await page.waitForLoadState("networkidle");
    page.off("requestfinished", count);
    console.log(`Console first page: ${transferred} bytes transferred`);
    expect(transferred).toBeGreaterThan(0);
    expect(transferred).toBeLessThan(150 * 1024);
    expect(requests.every((r) => new URL(r.url()).origin === app.host.baseUrl)).toBe(true);
  });

  test("creates an identity: the storage check and save-and-verify show their outcomes inline", async () => {
    await page.getByRole("link", { name: "New identity" }).click();
    await page.locator("[name=name]").fill("Simulated org");
    await page.locator("[name=portalUrl]").fill(app.sim.orgUrl);
    await page.locator('[name="auth.username"]').fill(app.sim.admin.username);
    await page.locator('[name="auth.password"]').fill(app.sim.admin.password);
    await page.locator('[name="storage.container"]').fill("Bad_Name");
    await page.locator('[name="storage.connectionString"]').fill(app.storageConnectionString);
    await page.getByRole("button", { name: "Check Azure Credentials" }).click();
    const checkOutcome = page.locator("[data-outcome=check] .outcome");
    await expect(checkOutcome.textContent()).resolves.toContain("field storage.container");
    await expect(page.locator('[name="storage.container"]').getAttribute("class")).resolves.toContain(
      "invalid",
    );
    await page.locator('[name="storage.container"]').fill("console-e2e");
    await page.locator("[name=createIfMissing]").check();
    await page.getByRole("button", { name: "Check Azure Credentials" }).click();
    await page.getByText("Storage OK").waitFor();
    await page.locator('[name="schedule.cron"]').fill("0 0 2 * * *");
    await page.locator('[name="retention.keepLast"]').fill("10");
    await page.getByRole("button", { name: "Save and Verify" }).click();
    await page.getByText("Saved and verified").waitFor();
    identityId = decodeURIComponent(page.url().split("#/identities/")[1] ?? "");
    expect(identityId).not.toBe("");
    await screenshot(page, "identities");
    const stored = await app.call("GET", `/api/identities/${identityId}`);
    expect(stored.body).toMatchObject({
      name: "Simulated org",
      retention: { keepLast: 10 },
      lastVerification: { ok: true },
    });
  });

  test("runs backups, follows them, and shows what changed between two runs", async () => {
    await backupThroughConsole("first");
    // The dashboard gets a new title, is captured again, then is deleted from the org.
    const index = app.sim.model.indexOf(dashboardId) as number;
    app.sim.model.editable(index).title = "Parks dashboard (edited)";
    app.sim.model.touch(index);
    await backupThroughConsole("after the edit");
    app.sim.model.deleteIndex(app.sim.model.indexOf(dashboardId) as number);
    await backupThroughConsole("after the delete");
    await page.goto(`${base}#/runs/${identityId}`);
    await expectRows("table.grid tbody tr[data-run]", 3);
    await screenshot(page, "runs");
    await page.getByRole("link", { name: "Diff with previous" }).first().click();
    await page.getByRole("heading", { name: "What changed between two runs" }).waitFor();
    await expect(page.locator(".side-by-side").textContent()).resolves.toContain("Parks dashboard (edited)");
    await screenshot(page, "runs-diff");
  });

  test("finds the deleted item, pages through all items, shows its history and diff", async () => {
    await page.goto(`${base}#/browse/${identityId}`);
    await page.getByRole("link", { name: "Deleted items" }).click();
    await page.getByRole("link", { name: "Deleted items" }).and(page.locator(".current")).waitFor();
    await expectRows("tbody tr[data-item]", 1);
    await expect(page.locator(`tr[data-item="${dashboardId}"]`).textContent()).resolves.toContain("deleted");
    await screenshot(page, "browse");
    await page.goto(`${base}#/browse/${identityId}?top=5`);
    await expectRows("tbody tr[data-item]", 5);
    await page.getByRole("button", { name: "Load more" }).click();
    await expectRows("tbody tr[data-item]", 10);
    expect(requests.some((r) => r.url().includes("continuationToken="))).toBe(true);
    await page.goto(`${base}#/browse/${identityId}/item/${dashboardId}`);
    await expectRows("table.grid tbody tr", 2);
    // Each version's thumbnail, as the browser shows it: through the console's API.
    const thumbnail = page.locator("img.thumb").first();
    await thumbnail.waitFor();
    const src = (await thumbnail.getAttribute("src")) ?? "";
    expect(src).toContain("/api/console/api/");
    const image = await fetch(src);
    expect(image.status).toBe(200);
    expect(image.headers.get("content-type")).toMatch(/^image\//);
    await page.getByRole("button", { name: "Compare the two versions" }).click();
    const diff = page.locator(".diff");
    await diff.locator("table").first().waitFor();
    await expect(diff.textContent()).resolves.toContain("Parks dashboard (edited)");
    await screenshot(page, "history");
  });

  test("restores the deleted item: the plan in dependency order, then the report with its new id", async () => {
    await page.getByRole("link", { name: "Restore this version" }).last().click();
    await page.getByRole("heading", { name: "Restore", exact: true }).waitFor();
    await expect(page.locator("[name=itemIds]").inputValue()).resolves.toBe(dashboardId);
    // The plan of the whole run first: items level by level, each after what it depends on.
    await page.locator("[name=itemIds]").fill("");
    await page.getByRole("button", { name: "Plan (dry run)" }).click();
    const plan = page.locator(".plan");
    await plan.waitFor();
    expect(await plan.locator("ol.levels > li").count()).toBeGreaterThan(1);
    await screenshot(page, "restore-plan");
    await page.locator("[name=itemIds]").fill(dashboardId);
    await page.getByRole("button", { name: "Plan (dry run)" }).click();
    await page.locator(".plan", { hasText: "1 items:" }).waitFor();
    expect(await plan.locator("ol.levels > li").count()).toBe(1);
    await expect(plan.locator(`[data-item="${dashboardId}"]`).textContent()).resolves.toContain("create");
    await page.getByRole("button", { name: "Start restore" }).click();
    const link = page.locator(".report a[data-new-id]");
    await link.waitFor({ timeout: 60_000 });
    const newId = (await link.getAttribute("data-new-id")) ?? "";
    await expect(link.getAttribute("href")).resolves.toBe(`${app.sim.orgUrl}/home/item.html?id=${newId}`);
    expect(app.sim.model.indexOf(newId)).not.toBeNull();
    await screenshot(page, "restore-report");
  });

  test("keeps no key or token in the page, and nothing violated the Content-Security-Policy", async () => {
    await expect(page.evaluate("localStorage.length + sessionStorage.length")).resolves.toBe(0);
    const apiCalls = requests.filter((r) => r.url().includes("/api/console/api/"));
    expect(apiCalls.length).toBeGreaterThan(10);
    for (const request of requests) {
      expect(request.url()).not.toMatch(/[?&]code=/);
      expect(await request.headerValue("x-functions-key")).toBeNull();
    }
    // Chromium logs every 4xx the page met (the storage check refused on purpose above) as an error.
    expect(browserErrors.filter((text) => !text.startsWith("Failed to load resource"))).toEqual([]);
  });
});

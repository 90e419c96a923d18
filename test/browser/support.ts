import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { REPO_ROOT } from "../support/app-harness.js";

// The browser tests drive Debian's Chromium (never a browser downloaded by Playwright): headless,
// sandbox-less (tests run as root in CI), no network of its own, a fresh profile each time.

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

export const SCREENSHOT_DIR = path.join(REPO_ROOT, "test-results", "console");
/** Where the README's screenshots live; refreshed when CONSOLE_SCREENSHOTS_TO_DOCS=1. */
export const DOCS_SCREENSHOT_DIR = path.join(REPO_ROOT, "docs", "console");

/** Compiles the console's browser code into dist/console (also its typecheck within npm test). */
export async function buildConsole(): Promise<void> {
  const tsc = path.join(REPO_ROOT, "node_modules", ".bin", "tsc");
  try {
    await promisify(execFile)(tsc, ["-p", path.join(REPO_ROOT, "src/console/tsconfig.json")], {
      cwd: REPO_ROOT,
    });
  } catch (error) {
    const { stdout = "", stderr = "" } = error as { stdout?: string; stderr?: string };
    throw new Error(`The console's TypeScript does not compile:\n${stdout}${stderr}`);
  }
}

export interface Browser {
  context: BrowserContext;
  page: Page;
  close(): Promise<void>;
}

export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `The console's browser tests need Chromium at ${CHROMIUM_PATH}, which is missing. ` +
        "Install it with `sudo apt-get install -y chromium` (Debian, Ubuntu: `chromium-browser` or the snap), " +
        "or point CHROMIUM_PATH at a Chromium or Chrome binary. .ci/run installs it in CI.",
    );
  }
  const profile = await mkdtemp(path.join(os.tmpdir(), "console-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1280, height: 860 },
    locale: "en-US",
    timezoneId: "UTC",
  });
  const page = context.pages()[0] ?? (await context.newPage());
  return {
    context,
    page,
    async close() {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}

/** A full-page screenshot under test-results/console/ (and docs/console/ when asked). */
export async function screenshot(page: Page, name: string): Promise<void> {
  await mkdir(SCREENSHOT_DIR, { recursive: true });
  const file = path.join(SCREENSHOT_DIR, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  if (process.env.CONSOLE_SCREENSHOTS_TO_DOCS === "1") {
    await mkdir(DOCS_SCREENSHOT_DIR, { recursive: true });
    await copyFile(file, path.join(DOCS_SCREENSHOT_DIR, `${name}.png`));
  }
}

import path from "node:path";
import { fileURLToPath } from "node:url";

export const APP_ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), "app");

export const APP_ENV = { TEST_TIMER_SCHEDULE: "0 0 0 1 1 *" };

export async function poll<T>(
  fn: () => Promise<T | undefined> | T | undefined,
  { timeoutMs = 10_000, intervalMs = 25 } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error("poll: timed out");
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

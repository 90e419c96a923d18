import { describe, expect, test } from "vitest";
import { withDeadline } from "../../src/core/with-deadline.js";

describe("withDeadline", () => {
  test("work that never settles becomes the deadline's error", async () => {
    const never = new Promise<string>(() => {});
    await expect(withDeadline(never, 20, () => new Error("no answer"))).rejects.toThrow("no answer");
  });

  test("work that settles in time passes through, value or error", async () => {
    await expect(withDeadline(Promise.resolve("done"), 1_000, () => new Error("late"))).resolves.toBe("done");
    await expect(
      withDeadline(Promise.reject(new Error("EIO")), 1_000, () => new Error("late")),
    ).rejects.toThrow("EIO");
  });

  test("abandoned work failing later is not an unhandled rejection", async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      let fail: (error: Error) => void = () => {};
      const late = new Promise<never>((_resolve, reject) => {
        fail = reject;
      });
      await expect(withDeadline(late, 10, () => new Error("no answer"))).rejects.toThrow("no answer");
      fail(new Error("finally failed"));
      await new Promise((resolve) => setImmediate(resolve));
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });
});

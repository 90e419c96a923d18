import { mkdtemp, readdir, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, test } from "vitest";
import { makeDirectory } from "../../src/core/fs-checks.js";
import { withDeadline } from "../../src/core/with-deadline.js";

describe("makeDirectory", () => {
  test("creates missing parents one level at a time, and accepts a folder that exists", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "mkdir-"));
    const deep = path.join(dir, "a", "b", "c");
    await makeDirectory(deep);
    await makeDirectory(deep);
    expect((await stat(deep)).isDirectory()).toBe(true);
    expect(await readdir(dir)).toEqual(["a"]);
  });

  test("a folder the OS refuses with ENOENT fails at once (Node's recursive mkdir spins forever there)", async () => {
    await expect(
      withDeadline(makeDirectory("/proc/nope/deeper"), 5_000, () => new Error("no answer within 5 s")),
    ).rejects.toMatchObject({ code: "ENOENT" });
  });
});

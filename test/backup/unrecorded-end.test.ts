import { describe, expect, test } from "vitest";
import { START_GRACE_MS, unrecordedEnd } from "../../src/core/orchestrations.js";

const startedAt = "2026-01-01T00:00:00.000Z";
const later = (ms: number) => new Date(Date.parse(startedAt) + ms);
const state = (runtimeStatus: string, output: unknown = null) => ({
  runtimeStatus,
  customStatus: null,
  output,
});

describe("why a run still recorded running has ended", () => {
  test("an orchestration still at work has not", () => {
    for (const status of ["Pending", "Running", "Suspended", "ContinuedAsNew"]) {
      expect(unrecordedEnd(state(status), startedAt, later(3_600_000))).toBeUndefined();
    }
  });

  test("failed, terminated or completed without recording: failed, with the engine's reason", () => {
    expect(
      unrecordedEnd(state("Failed", "Orchestrator function 'x' failed: boom"), startedAt, later(1)),
    ).toEqual({
      code: "ERR_ORCHESTRATION_FAILED",
      message: "Orchestrator function 'x' failed: boom",
    });
    expect(unrecordedEnd(state("Terminated", "stopped by ops"), startedAt, later(1))).toEqual({
      code: "ERR_ORCHESTRATION_TERMINATED",
      message: "Its orchestration was terminated: stopped by ops",
    });
    expect(unrecordedEnd(state("Completed", { status: "x" }), startedAt, later(1))?.code).toBe(
      "ERR_ORCHESTRATION_ENDED",
    );
    const long = unrecordedEnd(state("Failed", "x".repeat(10_000)), startedAt, later(1));
    expect(long?.message.length).toBeLessThan(2_100);
  });

  test("no orchestration: a moment after the start it may still be on its way; later it never will be", () => {
    expect(unrecordedEnd(undefined, startedAt, later(START_GRACE_MS - 1))).toBeUndefined();
    expect(unrecordedEnd(undefined, startedAt, later(START_GRACE_MS + 1))?.code).toBe(
      "ERR_ORCHESTRATION_MISSING",
    );
  });
});

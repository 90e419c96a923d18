/**
 * The suite's summary: one row per scenario, printed and written to
 * `.local/fault-suite/<suite>.md` (a Markdown table, ready for the README's "Fault suite").
 */
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { REPO_ROOT } from "../support/app-harness.js";
import { FULL, type Traffic } from "./rig.js";

export interface ScenarioOutcome {
  scenario: string;
  survived: boolean;
  /** Requests of a no-fault run of the same kind, and of this one. */
  baseline: number | undefined;
  traffic: Traffic | undefined;
  /** Why it did not survive: the first failed check. */
  reason?: string;
}

export class FaultReport {
  private readonly rows: ScenarioOutcome[] = [];

  constructor(private readonly suite: string) {}

  /**
   * Runs one scenario's checks and records whether they held, with what the run cost. The
   * error is thrown on, so the test fails as it would without the report.
   */
  async record(
    scenario: string,
    run: (measured: (baseline: number | undefined, traffic: Traffic) => void) => Promise<void>,
  ): Promise<void> {
    const row: ScenarioOutcome = { scenario, survived: false, baseline: undefined, traffic: undefined };
    this.rows.push(row);
    try {
      await run((baseline, traffic) => {
        row.baseline = baseline;
        row.traffic = traffic;
      });
      row.survived = true;
    } catch (error) {
      // The first line of the failed check, without the matcher's "expected … to be …" tail.
      const message = (error instanceof Error ? error.message : String(error)).split("\n")[0] ?? "";
      row.reason = message.replace(/: expected .*$/, "").slice(0, 120);
      throw error;
    }
  }

  table(): string {
    const lines = [
      "| Scenario | Survived | Faults injected | Requests | Extra requests |",
      "| --- | --- | --- | --- | --- |",
    ];
    for (const row of this.rows) {
      const requests = row.traffic?.requests;
      const extra =
        requests !== undefined && row.baseline !== undefined ? requests - row.baseline : undefined;
      const cells = [
        row.scenario,
        row.survived ? "yes" : "no",
        row.traffic?.injected ?? "–",
        requests ?? "–",
        extra === undefined ? "–" : signed(extra),
      ];
      lines.push(`| ${cells.join(" | ")} |`);
    }
    const lost = this.rows.filter((r) => !r.survived);
    lines.push(
      "",
      `${this.suite}: ${this.rows.length} tried / ${this.rows.length - lost.length} survived (${FULL ? "long" : "quick"} form)`,
    );
    for (const row of lost) lines.push(`- not survived: ${row.scenario}: ${row.reason ?? "?"}`);
    return lines.join("\n");
  }

  async write(): Promise<void> {
    const table = this.table();
    console.log(`\n${table}\n`);
    const dir = path.join(REPO_ROOT, ".local", "fault-suite");
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, `${this.suite}${FULL ? "-full" : ""}.md`), `${table}\n`);
  }
}

const signed = (n: number) => (n > 0 ? `+${n}` : String(n));

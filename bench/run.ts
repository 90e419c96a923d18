import "../tools/require-node.js";
import type { BenchResult, BenchSection } from "./types.js";

/**
 * `npm run bench [section…]`: runs every section (or the named ones) and prints each
 * measurement with its ratio against a baseline measured in the same run. `--quick` shrinks
 * the workloads for a smoke run.
 */
const sections: Record<string, () => Promise<BenchSection>> = {
  backup: async () => (await import("./backup.js")).benchBackup,
  "backup-large": async () => (await import("./backup-large.js")).benchBackupLarge,
  "feature-export": async () => (await import("./feature-export.js")).benchFeatureExport,
  "local-host": async () => (await import("./local-host.js")).benchLocalHost,
  pacing: async () => (await import("./pacing.js")).benchPacing,
  retention: async () => (await import("./retention.js")).benchRetention,
  history: async () => (await import("./history.js")).benchHistory,
};

/** Sections too long for a plain `npm run bench` (about an hour): they run only when named. */
const BY_NAME_ONLY = new Set(["backup-large"]);

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const quick = args.includes("--quick");
  const wanted = args.filter((a) => !a.startsWith("--"));
  const names = wanted.length > 0 ? wanted : Object.keys(sections).filter((name) => !BY_NAME_ONLY.has(name));
  const results: BenchResult[] = [];
  for (const name of names) {
    const load = sections[name];
    if (!load) throw new Error(`Unknown bench section ${name}; known: ${Object.keys(sections).join(", ")}`);
    const section = await load();
    process.stdout.write(`\n== ${name} ==\n`);
    const result = await section({ quick });
    results.push(result);
    for (const [key, value] of Object.entries(result.metrics)) process.stdout.write(`  ${key}: ${value}\n`);
    for (const ratio of result.ratios) {
      const verdict =
        ratio.target === undefined
          ? ""
          : (ratio.higherIsBetter ?? true)
            ? ratio.value >= ratio.target
              ? " (meets target)"
              : " (BELOW target)"
            : ratio.value <= ratio.target
              ? " (meets target)"
              : " (ABOVE target)";
      const target = ratio.target === undefined ? "" : ` target ${ratio.target}`;
      process.stdout.write(`  ratio ${ratio.name}: ${ratio.value.toFixed(3)}${target}${verdict}\n`);
    }
  }
  process.stdout.write(`\n${JSON.stringify(results)}\n`);
}

await main();

/**
 * Imported first by every command the project runs (`npm start`, test, bench, demo,
 * portal-sim): they need Node 22, which Azure runs and the `node` dev dependency provides to
 * `npm run`. On an older Node this stops at once with what to do, instead of a stack trace
 * from some later import.
 */
const REQUIRED_MAJOR = 22;

const major = Number(process.versions.node.split(".")[0]);
if (major < REQUIRED_MAJOR) {
  process.stderr.write(
    [
      `arcgis-org-backup needs Node.js ${REQUIRED_MAJOR} or later; this is ${process.version} (${process.execPath}).`,
      "Run it through npm (`npm start`, `npm test`, `npm run bench`, …): after `npm install`, npm puts the",
      `project's own Node ${REQUIRED_MAJOR} (the \`node\` dev dependency) first on the PATH of its scripts.`,
      "",
    ].join("\n"),
  );
  process.exit(1);
}

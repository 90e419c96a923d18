import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

/** Expands `{a,b}` alternatives (nested allowed), left to right, like the worker's glob. */
export function expandBraces(pattern: string): string[] {
  const open = pattern.indexOf("{");
  if (open < 0) return [pattern];
  let depth = 0;
  let close = -1;
  const commas: number[] = [];
  for (let i = open; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === "{") depth++;
    else if (c === "}") {
      depth--;
      if (depth === 0) {
        close = i;
        break;
      }
    } else if (c === "," && depth === 1) commas.push(i);
  }
  if (close < 0) return [pattern];
  const head = pattern.slice(0, open);
  const tail = pattern.slice(close + 1);
  const bounds = [open, ...commas, close];
  const results: string[] = [];
  for (let i = 0; i < bounds.length - 1; i++) {
    const option = pattern.slice(bounds[i]! + 1, bounds[i + 1]);
    for (const expanded of expandBraces(head + option + tail)) results.push(expanded);
  }
  return results;
}

function segmentRegex(segment: string): RegExp {
  let source = "";
  for (const c of segment) {
    if (c === "*") source += "[^/]*";
    else if (c === "?") source += "[^/]";
    else source += c.replace(/[.+^$()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${source}$`);
}

function walk(dir: string, segments: string[], out: string[]): void {
  if (segments.length === 0) {
    out.push(dir);
    return;
  }
  const [segment, ...rest] = segments as [string, ...string[]];
  if (segment === "**") {
    walk(dir, rest, out);
    for (const entry of safeReaddir(dir)) {
      if (entry.startsWith(".") || entry === "node_modules") continue;
      const full = path.join(dir, entry);
      if (isDirectory(full)) walk(full, segments, out);
    }
    return;
  }
  if (!/[*?]/.test(segment)) {
    const full = path.join(dir, segment);
    if (existsSync(full)) walk(full, rest, out);
    return;
  }
  const regex = segmentRegex(segment);
  for (const entry of safeReaddir(dir).sort()) {
    if (regex.test(entry) && !entry.startsWith(".")) walk(path.join(dir, entry), rest, out);
  }
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function isDirectory(file: string): boolean {
  try {
    return statSync(file).isDirectory();
  } catch {
    return false;
  }
}

/** Files matching a glob such as `dist/src/{index.js,functions/*.js}`, relative to `root`. */
export function globFiles(root: string, pattern: string): string[] {
  const files: string[] = [];
  const seen = new Set<string>();
  for (const expanded of expandBraces(pattern)) {
    const absolute = path.resolve(root, expanded);
    const parsed = path.parse(absolute);
    const segments = absolute.slice(parsed.root.length).split(/[\\/]/).filter(Boolean);
    const matches: string[] = [];
    walk(parsed.root, segments, matches);
    for (const match of matches.sort()) {
      if (!seen.has(match) && !isDirectory(match)) {
        seen.add(match);
        files.push(match);
      }
    }
  }
  return files;
}

/** The app's entry files, as the Node worker finds them: package.json "main" resolved against the app root. */
export function resolveMainEntryPoints(appRoot: string): string[] {
  const packageJsonPath = path.join(appRoot, "package.json");
  const pkg = JSON.parse(readFileSync(packageJsonPath, "utf8")) as { main?: string };
  const main = pkg.main ?? "index.js";
  return globFiles(appRoot, main);
}

export async function importEntryPoints(files: string[]): Promise<void> {
  for (const file of files) {
    await import(pathToFileURL(path.resolve(file)).href);
  }
}

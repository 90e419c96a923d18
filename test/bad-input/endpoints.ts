import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { REPO_ROOT } from "../support/app-harness.js";

export interface Endpoint {
  method: string;
  /** The route template below /api, e.g. identities/{id}/backups. */
  route: string;
}

/**
 * Every HTTP endpoint the app registers, read from src/functions/*.ts (`route` with a literal
 * `methods` list); the catch-all, whose methods are a variable, is left out.
 */
export async function registeredEndpoints(): Promise<Endpoint[]> {
  const dir = path.join(REPO_ROOT, "src/functions");
  const files = (await readdir(dir)).filter((f) => f.endsWith(".ts"));
  const endpoints: Endpoint[] = [];
  for (const file of files) {
    const source = await readFile(path.join(dir, file), "utf8");
    for (const match of source.matchAll(/route: "([^"]+)",\s*methods: \[([^\]]*)\]/g)) {
      const route = match[1] ?? "";
      for (const method of (match[2] ?? "").matchAll(/"([A-Z]+)"/g)) {
        endpoints.push({ method: method[1] ?? "", route });
      }
    }
  }
  return endpoints.sort((a, b) => `${a.route} ${a.method}`.localeCompare(`${b.route} ${b.method}`));
}

/** The `{parameter}` names of a route. */
export function routeParams(route: string): string[] {
  return [...route.matchAll(/\{([A-Za-z]+)\}/g)].map((m) => m[1] ?? "");
}

export function fillRoute(route: string, values: Record<string, string>): string {
  return route.replace(/\{([A-Za-z]+)\}/g, (_whole, name: string) => values[name] ?? "");
}

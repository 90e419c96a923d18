// Where the console is: `#/<page>/<identityId>/<rest…>?<query>`. Every render gets a generation;
// work started by a page (polling a run) stops once another render has begun.

export interface Route {
  page: "identities" | "runs" | "browse" | "restore";
  identityId: string | undefined;
  rest: string[];
  query: URLSearchParams;
  generation: number;
}

const PAGES = new Set<Route["page"]>(["identities", "runs", "browse", "restore"]);
let generation = 0;

export function parseRoute(hash: string): Route {
  const [path = "", search = ""] = hash.replace(/^#\/?/, "").split("?", 2);
  const parts = path
    .split("/")
    .filter((part) => part !== "")
    .map((part) => decodeURIComponent(part));
  const page = PAGES.has(parts[0] as Route["page"]) ? (parts[0] as Route["page"]) : "identities";
  generation++;
  return { page, identityId: parts[1], rest: parts.slice(2), query: new URLSearchParams(search), generation };
}

/** Whether the render that started `route` is still the one on screen. */
export function current(route: Route): boolean {
  return route.generation === generation;
}

export function hashOf(page: Route["page"], parts: string[], query?: Record<string, string>): string {
  const path = [page, ...parts].map(encodeURIComponent).join("/");
  const search = query ? new URLSearchParams(query).toString() : "";
  return `#/${path}${search ? `?${search}` : ""}`;
}

/** Waits `ms`, then says whether the route is still on screen (a poll loop's condition). */
export function pause(route: Route, ms: number): Promise<boolean> {
  return new Promise((resolve) => setTimeout(() => resolve(current(route)), ms));
}

import { app, type HttpFunctionOptions, type HttpMethod } from "@azure/functions";

// The Functions host answers an unmatched path, or a path asked with a method it does not take,
// with an empty 404 and tells nothing about which. The app's catch-all (unknownRoute.ts) tells
// 404 from 405 by looking the path up in the routes registered here.

type EndpointOptions = HttpFunctionOptions & { route: string; methods: HttpMethod[] };

interface Endpoint {
  /** Lower-case literal segments; undefined stands for a `{parameter}`. */
  segments: Array<string | undefined>;
  methods: HttpMethod[];
}

const endpoints: Endpoint[] = [];

/** Registers an HTTP trigger (as `app.http`) and remembers its route and methods. */
export function httpEndpoint(name: string, options: EndpointOptions): void {
  endpoints.push({ segments: parseRoute(options.route), methods: options.methods });
  app.http(name, options);
}

/** The methods the app's endpoints take on a path below the route prefix (none: unknown path). */
export function allowedMethods(path: string): HttpMethod[] {
  const segments = splitPath(path);
  const allowed = new Set<HttpMethod>();
  for (const endpoint of endpoints) {
    if (matches(endpoint.segments, segments)) for (const method of endpoint.methods) allowed.add(method);
  }
  return [...allowed];
}

/** Only what this app's routes use: literal segments and plain `{parameter}` segments. */
function parseRoute(route: string): Endpoint["segments"] {
  return splitPath(route).map((segment) => {
    if (/^\{[A-Za-z][A-Za-z0-9]*\}$/.test(segment)) return undefined;
    if (/[{}]/.test(segment)) {
      throw new Error(`Route ${route}: only literal and {parameter} segments are supported here`);
    }
    return segment.toLowerCase();
  });
}

function matches(template: Endpoint["segments"], segments: string[]): boolean {
  return (
    template.length === segments.length &&
    template.every((literal, i) => literal === undefined || literal === segments[i]?.toLowerCase())
  );
}

function splitPath(path: string): string[] {
  return path.split("/").filter((segment) => segment !== "");
}

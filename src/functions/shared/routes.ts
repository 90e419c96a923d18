import {
  app,
  type HttpFunctionOptions,
  type HttpHandler,
  type HttpMethod,
  type HttpRequestParams,
} from "@azure/functions";

// The Functions host answers an unmatched path, or a path asked with a method it does not take,
// with an empty 404 and tells nothing about which. The app's catch-all (unknownRoute.ts) tells
// 404 from 405 by looking the path up in the routes registered here.

type EndpointOptions = HttpFunctionOptions & { route: string; methods: HttpMethod[] };

/** A last `{*rest}` segment: one or more segments of the path. */
const REST = Symbol("rest");

interface Endpoint {
  /** Lower-case literal segments; undefined stands for a `{parameter}`. */
  segments: Array<string | undefined | typeof REST>;
  /** The parameter name of each segment (undefined for a literal). */
  names: Array<string | undefined>;
  methods: HttpMethod[];
  name: string;
  handler: HttpHandler;
}

const endpoints: Endpoint[] = [];

/** Registers an HTTP trigger (as `app.http`) and remembers its route and methods. */
export function httpEndpoint(name: string, options: EndpointOptions): void {
  endpoints.push({
    ...parseRoute(options.route),
    methods: options.methods,
    name,
    handler: options.handler,
  });
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

/**
 * The endpoint that takes `method` on `path` (decoded segments below the route prefix) and its
 * route parameters, as the host would pass them; undefined when none does. The console's API
 * (console.ts) dispatches through it to the same handlers as /api.
 */
export function findEndpoint(
  method: string,
  segments: string[],
): { name: string; handler: HttpHandler; params: HttpRequestParams } | undefined {
  const upper = method.toUpperCase();
  // As Azure: of the routes that match, the one whose function name sorts first (ignoring case).
  const [endpoint] = endpoints
    .filter(
      (candidate) => candidate.methods.some((m) => m === upper) && matches(candidate.segments, segments),
    )
    .sort((a, b) => (a.name.toUpperCase() < b.name.toUpperCase() ? -1 : 1));
  if (!endpoint) return undefined;
  const params: HttpRequestParams = {};
  endpoint.names.forEach((paramName, i) => {
    if (paramName === undefined) return;
    params[paramName] = endpoint.segments[i] === REST ? segments.slice(i).join("/") : (segments[i] ?? "");
  });
  return { name: endpoint.name, handler: endpoint.handler, params };
}

/** Only what this app's routes use: literal segments, plain `{parameter}` segments, a last `{*rest}`. */
function parseRoute(route: string): Pick<Endpoint, "segments" | "names"> {
  const parts = splitPath(route);
  const segments: Endpoint["segments"] = [];
  const names: Endpoint["names"] = [];
  parts.forEach((segment, i) => {
    const parameter = /^\{(\*?)([A-Za-z][A-Za-z0-9]*)\}$/.exec(segment);
    const rest = parameter?.[1] === "*";
    if (parameter && (!rest || i === parts.length - 1)) {
      segments.push(rest ? REST : undefined);
      names.push(parameter[2]);
      return;
    }
    if (/[{}]/.test(segment)) {
      throw new Error(
        `Route ${route}: only literal, {parameter} and a last {*rest} segment are supported here`,
      );
    }
    segments.push(segment.toLowerCase());
    names.push(undefined);
  });
  return { segments, names };
}

function matches(template: Endpoint["segments"], segments: string[]): boolean {
  const rest = template[template.length - 1] === REST;
  const fixed = rest ? template.length - 1 : template.length;
  if (rest ? segments.length <= fixed : segments.length !== fixed) return false;
  return template
    .slice(0, fixed)
    .every((literal, i) => literal === undefined || literal === segments[i]?.toLowerCase());
}

function splitPath(path: string): string[] {
  return path.split("/").filter((segment) => segment !== "");
}

import type { AppHarness } from "../support/app-harness.js";

/** One bad request: what it spoils, and what the answer must name. */
export interface Probe {
  label: string;
  /** Path below /api; default: the endpoint's route with valid ids. */
  path?: string;
  /** Query string, with its "?". */
  query?: string;
  /** Raw request body. */
  body?: string;
  /** The field the answer must name as `error.field`… */
  field?: string;
  /** …or, for what is no field (the body, a path), a word its `error.message` must contain. */
  mentions?: string;
  /** The one right status, when only one is (413). */
  status?: number;
}

/** Path parameters as the URL carries them (percent-encoded). */
export const BAD_IDS = [
  { label: "../../etc", value: "..%2F..%2Fetc" },
  { label: "..\\..\\etc", value: "..%5C..%5Cetc" },
  { label: "NUL", value: "%00" },
  { label: "a control character", value: "abc%01def" },
  { label: "an unpaired surrogate (invalid UTF-8)", value: "%ED%A0%80" },
  { label: "2,000 characters", value: "a".repeat(2_000) },
];

/** What gets appended to a valid text. */
const SPOILERS: Array<[string, string]> = [
  ["NUL", "\u0000"],
  ["an escape sequence", "\u001b[31m"],
  ["DEL", "\u007f"],
  ["an unpaired surrogate", "\ud800"],
];

const MIB = 1024 * 1024;

/** Link-local and cloud metadata hosts, as a URL spells them. */
const METADATA_HOSTS = [
  "169.254.169.254",
  "169.254.170.2",
  "[fe80::1]",
  "[fd00:ec2::254]",
  "[::ffff:169.254.169.254]",
  "metadata.google.internal",
  "100.100.100.200",
];

type Json = Record<string, unknown>;

function leaves(value: unknown, path: string[] = []): Array<[string[], unknown]> {
  if (Array.isArray(value)) return value.flatMap((item, i) => leaves(item, [...path, String(i)]));
  if (value !== null && typeof value === "object") {
    return Object.entries(value).flatMap(([key, item]) => leaves(item, [...path, key]));
  }
  return [[path, value]];
}

function objects(value: unknown, path: string[] = []): string[][] {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return [];
  const nested = Object.entries(value).flatMap(([key, item]) => objects(item, [...path, key]));
  return path.length > 0 ? [path, ...nested] : nested;
}

function withValue(base: Json, path: string[], value: unknown): string {
  const copy = structuredClone(base);
  let at: Record<string, unknown> = copy;
  for (const key of path.slice(0, -1)) at = at[key] as Record<string, unknown>;
  at[path.at(-1) ?? ""] = value;
  return JSON.stringify(copy);
}

function wrongTypeFor(value: unknown): unknown {
  if (typeof value === "string") return 42;
  if (typeof value === "number") return String(value);
  if (typeof value === "boolean") return String(value);
  return "x";
}

/** Spoils a valid body in every generic way: its syntax, size, shape, fields, types and texts. */
export function bodyProbes(base: Json): Probe[] {
  const probes: Probe[] = [
    { label: "malformed JSON", body: '{"name": ', mentions: "body" },
    { label: "JSON with a trailing comma", body: '{"a": 1,}', mentions: "body" },
    { label: "a form instead of JSON", body: "name=x&kind=y", mentions: "body" },
    { label: "a JSON array", body: "[]", mentions: "body" },
    { label: "a JSON string", body: '"hello"', mentions: "body" },
    { label: "JSON null", body: "null", mentions: "body" },
    { label: "deeply nested JSON", body: `${"[".repeat(100_000)}${"]".repeat(100_000)}`, mentions: "body" },
    {
      label: "a body over 1 MiB",
      body: JSON.stringify({ ...base, pad: "x".repeat(MIB) }),
      mentions: "body",
      status: 413,
    },
    { label: "an unknown field", body: JSON.stringify({ ...base, bogus: 1 }), field: "bogus" },
  ];
  for (const path of objects(base)) {
    const field = path.join(".");
    probes.push({
      label: `${field}: an unknown field`,
      body: withValue(base, [...path, "bogus"], 1),
      field: `${field}.bogus`,
    });
    probes.push({ label: `${field}: not an object`, body: withValue(base, path, "x"), field: field });
  }
  for (const [path, value] of leaves(base)) {
    const field = path.join(".");
    probes.push({
      label: `${field}: a wrong type`,
      body: withValue(base, path, wrongTypeFor(value)),
      field: field,
    });
    if (typeof value !== "string") continue;
    for (const [what, text] of SPOILERS) {
      probes.push({
        label: `${field} with ${what}`,
        body: withValue(base, path, `${value}${text}`),
        field: field,
      });
    }
  }
  return probes;
}

/** Retention rules out of range, and a policy that would keep no run (as JSON text: 1e400 is one). */
const BAD_RETENTION: Array<[string, string, string]> = [
  ["a negative count", '{"keepDaily":-1}', "retention.keepDaily"],
  ["a fractional count", '{"keepWeekly":1.5}', "retention.keepWeekly"],
  ["a count over its maximum", '{"keepYearly":1000}', "retention.keepYearly"],
  ["a count that JSON makes Infinity", '{"keepLast":1e400}', "retention.keepLast"],
  ["negative days", '{"keepDaily":7,"keepDeletedDays":-1}', "retention.keepDeletedDays"],
  ["rules that keep no run", '{"keepLast":0,"keepWithinDays":0}', "retention"],
  ["no rule at all", "{}", "retention"],
];

/** The cache folder, the portal URL and the retention policy of an identity (POST or PATCH). */
export function identityProbes(base: Json): Probe[] {
  const { retention: _retention, ...rest } = base;
  const probes: Probe[] = BAD_RETENTION.map(([what, retention, field]) => ({
    label: `retention with ${what}`,
    body: JSON.stringify(rest).replace(/}$/, `,"retention":${retention}}`),
    field,
  }));
  for (const cacheDirectory of ["../../etc", "/etc", "/proc/nope", "..", "cache/../../..", "/"]) {
    probes.push({
      label: `cacheDirectory ${cacheDirectory}`,
      body: JSON.stringify({ ...base, cacheDirectory }),
      field: "cacheDirectory",
    });
  }
  for (const host of METADATA_HOSTS) {
    probes.push({
      label: `portalUrl on ${host}`,
      body: JSON.stringify({ ...base, portalUrl: `https://${host}/` }),
      field: "portalUrl",
    });
  }
  return probes;
}

/**
 * Storage endpoints on metadata hosts and malformed connection strings, for a body whose
 * storage target is at `at` ("" for the storage check, "storage" in an identity).
 */
export function storageEndpointProbes(base: Json, at: "" | "storage", app: AppHarness): Probe[] {
  const prefix = at ? `${at}.` : "";
  const target = (credential: Json) => {
    const storage = { type: "azure-blob", container: "bad-input", ...credential };
    if (at) return JSON.stringify({ ...base, [at]: storage });
    const { connectionString: _connectionString, accountUrl: _accountUrl, ...rest } = base;
    return JSON.stringify({ ...rest, ...storage });
  };
  const key = /AccountKey=([^;]+)/.exec(app.storageConnectionString)?.[1] ?? "";
  const probes: Probe[] = [];
  for (const host of METADATA_HOSTS) {
    probes.push({
      label: `accountUrl on ${host}`,
      body: target({ accountUrl: `https://${host}` }),
      field: `${prefix}accountUrl`,
    });
    probes.push({
      label: `BlobEndpoint on ${host}`,
      body: target({
        connectionString: `AccountName=acct;AccountKey=${key};BlobEndpoint=https://${host}/acct`,
      }),
      field: `${prefix}connectionString`,
    });
  }
  for (const [label, connectionString] of [
    ["a connection string that is a word", "hello"],
    ["an AccountKey that is not base64", "AccountName=acct;AccountKey=not*base64!"],
    ["http to a remote endpoint", `AccountName=acct;AccountKey=${key};BlobEndpoint=http://example.com/acct`],
  ] as const) {
    probes.push({ label, body: target({ connectionString }), field: `${prefix}connectionString` });
  }
  return probes;
}

/** The OAuth callback's query: the state it must find, the code it exchanges. */
export function queryProbes(): Probe[] {
  const state = "0".repeat(48);
  return [
    { label: "no state", query: "?code=x", field: "state" },
    { label: "state with NUL", query: "?state=%00&code=x", field: "state" },
    { label: "state ../../etc", query: "?state=..%2F..%2Fetc&code=x", field: "state" },
    { label: "state with invalid UTF-8", query: "?state=%ED%A0%80&code=x", field: "state" },
    { label: "a 5,000-character state", query: `?state=${"a".repeat(5_000)}&code=x`, field: "state" },
    // Well-formed but unknown: not found, like an unknown id.
    { label: "an unknown state", query: `?state=${state}&code=x`, mentions: "state" },
  ];
}

/**
 * Azure Functions (ASP.NET) route templates: literal segments (case-insensitive), `{id}`, optional
 * `{id?}`, defaults `{id=5}`, constraints `{id:int}` / `{id:guid}` / `{name:regex(^a+$)}` /
 * `{n:range(1,9)}`…, catch-all `{*rest}`, and complex segments such as `{name}.{ext}`.
 */

interface ParamPart {
  kind: "param";
  name: string;
  optional: boolean;
  catchAll: boolean;
  defaultValue?: string;
  constraints: Constraint[];
}
interface LiteralPart {
  kind: "literal";
  text: string;
}
type Part = ParamPart | LiteralPart;

interface Segment {
  parts: Part[];
  regex: RegExp;
  params: ParamPart[];
}

type Constraint = { name: string; test: (value: string) => boolean };

export interface CompiledRoute {
  template: string;
  segments: Segment[];
}

const GUID = /^[{(]?[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}[)}]?$/i;

function splitConstraints(text: string): string[] {
  const pieces: string[] = [];
  let depth = 0;
  let current = "";
  for (const c of text) {
    if (c === "(") depth++;
    if (c === ")") depth--;
    if (c === ":" && depth === 0) {
      pieces.push(current);
      current = "";
    } else current += c;
  }
  pieces.push(current);
  return pieces;
}

function makeConstraint(spec: string): Constraint {
  const match = /^([a-zA-Z]+)(?:\((.*)\))?$/s.exec(spec);
  if (!match) throw new Error(`Unsupported route constraint "${spec}"`);
  const name = match[1]!.toLowerCase();
  const arg = match[2] ?? "";
  const nums = arg.split(",").map((s) => Number(s.trim()));
  const isNumber = (v: string) => v.trim() !== "" && Number.isFinite(Number(v));
  const isInteger = (v: string) => /^-?\d+$/.test(v);
  const tests: Record<string, (v: string) => boolean> = {
    int: (v) => isInteger(v) && Math.abs(Number(v)) <= 2147483648,
    long: (v) => isInteger(v),
    bool: (v) => /^(true|false)$/i.test(v),
    datetime: (v) => !Number.isNaN(Date.parse(v)),
    decimal: isNumber,
    double: isNumber,
    float: isNumber,
    guid: (v) => GUID.test(v),
    alpha: (v) => /^[a-z]+$/i.test(v),
    required: (v) => v.length > 0,
    minlength: (v) => v.length >= nums[0]!,
    maxlength: (v) => v.length <= nums[0]!,
    length: (v) => (nums.length > 1 ? v.length >= nums[0]! && v.length <= nums[1]! : v.length === nums[0]),
    min: (v) => isInteger(v) && Number(v) >= nums[0]!,
    max: (v) => isInteger(v) && Number(v) <= nums[0]!,
    range: (v) => isInteger(v) && Number(v) >= nums[0]! && Number(v) <= nums[1]!,
    // Braces are doubled inside route templates: {{2}} means {2}.
    regex: (v) => new RegExp(arg.replace(/\{\{/g, "{").replace(/\}\}/g, "}"), "i").test(v),
  };
  const test = tests[name];
  if (!test) throw new Error(`Unsupported route constraint "${spec}"`);
  return { name, test };
}

function parseParam(inner: string): ParamPart {
  let text = inner.trim();
  let catchAll = false;
  if (text.startsWith("**")) {
    catchAll = true;
    text = text.slice(2);
  } else if (text.startsWith("*")) {
    catchAll = true;
    text = text.slice(1);
  }
  let defaultValue: string | undefined;
  const eq = text.indexOf("=");
  if (eq >= 0 && !text.slice(0, eq).includes("(")) {
    defaultValue = text.slice(eq + 1);
    text = text.slice(0, eq);
  }
  let optional = false;
  if (text.endsWith("?")) {
    optional = true;
    text = text.slice(0, -1);
  }
  const [name, ...constraintSpecs] = splitConstraints(text);
  if (!name) throw new Error(`Route parameter without a name: {${inner}}`);
  const param: ParamPart = {
    kind: "param",
    name,
    optional: optional || catchAll || defaultValue !== undefined,
    catchAll,
    constraints: constraintSpecs.filter(Boolean).map(makeConstraint),
  };
  if (defaultValue !== undefined) param.defaultValue = defaultValue;
  return param;
}

function parseSegment(text: string): Part[] {
  const parts: Part[] = [];
  let i = 0;
  let literal = "";
  while (i < text.length) {
    const c = text[i]!;
    if (c === "{" && text[i + 1] === "{") {
      literal += "{";
      i += 2;
    } else if (c === "}" && text[i + 1] === "}") {
      literal += "}";
      i += 2;
    } else if (c === "{") {
      if (literal) parts.push({ kind: "literal", text: literal });
      literal = "";
      let depth = 0;
      let j = i + 1;
      for (; j < text.length; j++) {
        if (text[j] === "(") depth++;
        else if (text[j] === ")") depth--;
        else if (text[j] === "}" && depth === 0) break;
      }
      parts.push(parseParam(text.slice(i + 1, j)));
      i = j + 1;
    } else {
      literal += c;
      i++;
    }
  }
  if (literal) parts.push({ kind: "literal", text: literal });
  return parts;
}

const escapeRegex = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

export function compileRoute(template: string): CompiledRoute {
  const trimmed = template.replace(/^[~/]+/, "").replace(/\/+$/, "");
  const rawSegments = trimmed === "" ? [] : trimmed.split("/");
  const segments: Segment[] = [];
  for (const raw of rawSegments) {
    const parts = parseSegment(raw);
    const params = parts.filter((p): p is ParamPart => p.kind === "param");
    const single = parts.length === 1 ? parts[0] : undefined;
    let source = "";
    for (const part of parts) {
      if (part.kind === "literal") source += escapeRegex(part.text);
      else if (single) source += "(.*)";
      else source += "(.+?)";
    }
    segments.push({ parts, params, regex: new RegExp(`^${source}$`, "is") });
  }
  return { template, segments };
}

/** Returns the route parameters when the path (segments below the route prefix) matches. */
export function matchRoute(route: CompiledRoute, pathSegments: string[]): Record<string, string> | undefined {
  const params: Record<string, string> = {};
  const { segments } = route;
  let index = 0;
  for (let s = 0; s < segments.length; s++) {
    const segment = segments[s]!;
    const single = segment.parts.length === 1 ? segment.parts[0] : undefined;
    if (single?.kind === "param" && single.catchAll) {
      const rest = pathSegments.slice(index).join("/");
      index = pathSegments.length;
      if (rest === "") {
        if (single.defaultValue !== undefined) params[single.name] = single.defaultValue;
      } else {
        if (!single.constraints.every((c) => c.test(rest))) return undefined;
        params[single.name] = rest;
      }
      continue;
    }
    const value = pathSegments[index];
    if (value === undefined || value === "") {
      // Only trailing optional parameters may be absent.
      if (single?.kind === "param" && single.optional) {
        if (single.defaultValue !== undefined) params[single.name] = single.defaultValue;
        index++;
        continue;
      }
      return undefined;
    }
    const match = segment.regex.exec(value);
    if (!match) return undefined;
    for (let p = 0; p < segment.params.length; p++) {
      const param = segment.params[p]!;
      const captured = match[p + 1] ?? "";
      if (captured === "" && !param.optional) return undefined;
      if (captured !== "" && !param.constraints.every((c) => c.test(captured))) return undefined;
      if (captured !== "") params[param.name] = captured;
      else if (param.defaultValue !== undefined) params[param.name] = param.defaultValue;
    }
    index++;
  }
  if (index < pathSegments.length) return undefined;
  return params;
}

/** Splits a URL pathname into decoded segments (keeping empty trailing segments out). */
export function splitPath(pathname: string): string[] {
  const trimmed = pathname.replace(/^\/+/, "").replace(/\/+$/, "");
  if (trimmed === "") return [];
  return trimmed.split("/").map((s) => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  });
}

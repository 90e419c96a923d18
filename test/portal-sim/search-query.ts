/**
 * The item-search `q` subset: field:value, field:"quoted", field:[a TO b] / {a TO b} (epoch ms,
 * zero-padded legacy form too, `*` open), bare words and "phrases" (title/tags/snippet),
 * AND / OR / NOT, parentheses. Adjacent terms without an operator are AND-ed.
 */
export type QNode =
  | { t: "term"; field: string | null; value: string; quoted: boolean }
  | { t: "range"; field: string; lo: number; hi: number; loIncl: boolean; hiIncl: boolean }
  | { t: "and" | "or"; a: QNode; b: QNode }
  | { t: "not"; a: QNode }
  | { t: "all" };

export class QueryParseError extends Error {}

type Tok = { k: "(" | ")" | "AND" | "OR" | "NOT" } | { k: "term"; node: QNode };

function parseBound(s: string, lo: boolean): number {
  if (s === "*") return lo ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
  const n = Number(s);
  if (!Number.isFinite(n)) throw new QueryParseError(`bad range bound ${s}`);
  return n;
}

function lex(q: string): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  while (i < q.length) {
    const c = q[i] ?? "";
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === "(" || c === ")") {
      out.push({ k: c });
      i++;
      continue;
    }
    if (c === "-" && /[A-Za-z"]/.test(q[i + 1] ?? "")) {
      out.push({ k: "NOT" });
      i++;
      continue;
    }
    // field prefix?
    const fm = /^([A-Za-z_][A-Za-z0-9_.]*):/.exec(q.slice(i));
    let field: string | null = null;
    if (fm) {
      field = (fm[1] ?? "").toLowerCase();
      i += fm[0].length;
    }
    const rest = q.slice(i);
    if (field && (rest[0] === "[" || rest[0] === "{")) {
      const m = /^([[{])\s*(\S+)\s+TO\s+(\S+?)\s*([\]}])/i.exec(rest);
      if (!m) throw new QueryParseError(`bad range for ${field}`);
      out.push({
        k: "term",
        node: {
          t: "range",
          field,
          lo: parseBound(m[2] ?? "*", true),
          hi: parseBound(m[3] ?? "*", false),
          loIncl: m[1] === "[",
          hiIncl: m[4] === "]",
        },
      });
      i += m[0].length;
      continue;
    }
    if (rest[0] === '"') {
      const end = rest.indexOf('"', 1);
      if (end < 0) throw new QueryParseError("unterminated quote");
      out.push({ k: "term", node: { t: "term", field, value: rest.slice(1, end), quoted: true } });
      i += end + 1;
      continue;
    }
    if (rest[0] === "'" && field) {
      const end = rest.indexOf("'", 1);
      if (end < 0) throw new QueryParseError("unterminated quote");
      out.push({ k: "term", node: { t: "term", field, value: rest.slice(1, end), quoted: true } });
      i += end + 1;
      continue;
    }
    const wm = /^[^\s()]+/.exec(rest);
    const word = wm?.[0] ?? "";
    i += Math.max(1, word.length);
    if (!field && /^(AND|OR|NOT)$/i.test(word)) {
      out.push({ k: word.toUpperCase() as "AND" });
      continue;
    }
    if (!word && !field) continue;
    out.push({ k: "term", node: { t: "term", field, value: word, quoted: false } });
  }
  return out;
}

export function parseQ(q: string): QNode {
  const toks = lex(q);
  if (toks.length === 0) return { t: "all" };
  let p = 0;
  const or = (): QNode => {
    let a = and();
    while (toks[p]?.k === "OR") {
      p++;
      a = { t: "or", a, b: and() };
    }
    return a;
  };
  const and = (): QNode => {
    let a = unary();
    for (;;) {
      const t = toks[p];
      if (!t || t.k === ")" || t.k === "OR") return a;
      if (t.k === "AND") p++;
      a = { t: "and", a, b: unary() };
    }
  };
  const unary = (): QNode => {
    const t = toks[p];
    if (!t) throw new QueryParseError("unexpected end of query");
    if (t.k === "NOT") {
      p++;
      return { t: "not", a: unary() };
    }
    if (t.k === "(") {
      p++;
      const e = or();
      if (toks[p]?.k !== ")") throw new QueryParseError("missing )");
      p++;
      return e;
    }
    if (t.k === "term") {
      p++;
      return t.node;
    }
    throw new QueryParseError(`unexpected ${t.k}`);
  };
  const e = or();
  if (p < toks.length) throw new QueryParseError("unexpected )");
  return e;
}

/** What a search predicate may read from an item; getters so cheap fields stay cheap. */
export interface Searchable {
  readonly id: string;
  readonly owner: string;
  readonly orgid: string;
  readonly type: string;
  readonly typekeywords: string[];
  readonly created: number;
  readonly modified: number;
  readonly access: string;
  readonly title: string;
  readonly tags: string[];
  readonly snippet: string;
  readonly name: string;
  readonly groups: string[];
}

const lc = (s: string) => s.toLowerCase();

function textMatch(hay: string, value: string, quoted: boolean): boolean {
  const h = lc(hay);
  const v = lc(value).replace(/\*$/, "");
  if (quoted) return h.includes(v);
  return h.split(/[^\p{L}\p{N}_]+/u).some((w) => w.startsWith(v)) || h.includes(v);
}

export function matchQ(n: QNode, it: Searchable): boolean {
  switch (n.t) {
    case "all":
      return true;
    case "and":
      return matchQ(n.a, it) && matchQ(n.b, it);
    case "or":
      return matchQ(n.a, it) || matchQ(n.b, it);
    case "not":
      return !matchQ(n.a, it);
    case "range": {
      const v = n.field === "created" ? it.created : n.field === "modified" ? it.modified : Number.NaN;
      if (Number.isNaN(v)) return false;
      return (n.loIncl ? v >= n.lo : v > n.lo) && (n.hiIncl ? v <= n.hi : v < n.hi);
    }
    case "term": {
      const v = n.value;
      switch (n.field) {
        case null:
          return (
            textMatch(it.title, v, n.quoted) ||
            it.tags.some((t) => textMatch(t, v, n.quoted)) ||
            textMatch(it.snippet, v, n.quoted)
          );
        case "id":
          return lc(it.id) === lc(v);
        case "owner":
          return lc(it.owner) === lc(v);
        case "orgid":
        case "accountid":
          return lc(it.orgid) === lc(v);
        case "type":
          return n.quoted || /\s/.test(v) ? lc(it.type) === lc(v) : textMatch(it.type, v, false);
        case "typekeywords":
          return it.typekeywords.some((k) => lc(k) === lc(v));
        case "tags":
          return it.tags.some((k) => lc(k) === lc(v));
        case "title":
          return textMatch(it.title, v, n.quoted);
        case "name":
          return lc(it.name) === lc(v);
        case "access":
          return lc(it.access) === lc(v);
        case "group":
          return it.groups.includes(v);
        case "snippet":
          return textMatch(it.snippet, v, n.quoted);
        case "created":
        case "modified": {
          const num = Number(v);
          return (n.field === "created" ? it.created : it.modified) === num;
        }
        default:
          return false;
      }
    }
  }
}

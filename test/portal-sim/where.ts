/**
 * A small SQL-92 `where` subset as hosted feature services accept it: comparisons, IN, BETWEEN,
 * IS [NOT] NULL, LIKE, AND/OR/NOT, parentheses; numbers and 'strings' (with '' escapes).
 */
export type Value = string | number | null;
export type Expr =
  | { t: "lit"; v: Value }
  | { t: "field"; name: string }
  | { t: "cmp"; op: "=" | "<>" | "<" | "<=" | ">" | ">="; a: Expr; b: Expr }
  | { t: "in"; a: Expr; list: Expr[]; not: boolean }
  | { t: "between"; a: Expr; lo: Expr; hi: Expr; not: boolean }
  | { t: "null"; a: Expr; not: boolean }
  | { t: "like"; a: Expr; pattern: Expr; not: boolean }
  | { t: "and" | "or"; a: Expr; b: Expr }
  | { t: "not"; a: Expr };

export class WhereError extends Error {}

type Tok =
  | { k: "num"; v: number }
  | { k: "str"; v: string }
  | { k: "id"; v: string }
  | { k: "op"; v: string };

function lex(src: string): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i] ?? "";
    if (/\s/.test(c)) {
      i++;
    } else if (c === "'") {
      let s = "";
      i++;
      for (;;) {
        if (i >= src.length) throw new WhereError("unterminated string");
        if (src[i] === "'") {
          if (src[i + 1] === "'") {
            s += "'";
            i += 2;
            continue;
          }
          i++;
          break;
        }
        s += src[i];
        i++;
      }
      out.push({ k: "str", v: s });
    } else if (/[0-9.]/.test(c) || (c === "-" && /[0-9.]/.test(src[i + 1] ?? "") && prevAllowsSign(out))) {
      const m = /^-?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?/i.exec(src.slice(i));
      if (!m) throw new WhereError(`bad number at ${i}`);
      out.push({ k: "num", v: Number(m[0]) });
      i += m[0].length;
    } else if (/[A-Za-z_"]/.test(c)) {
      if (c === '"') {
        const end = src.indexOf('"', i + 1);
        if (end < 0) throw new WhereError("unterminated identifier");
        out.push({ k: "id", v: src.slice(i + 1, end) });
        i = end + 1;
      } else {
        const m = /^[A-Za-z_][A-Za-z0-9_.]*/.exec(src.slice(i));
        out.push({ k: "id", v: m?.[0] ?? c });
        i += m?.[0].length ?? 1;
      }
    } else {
      const two = src.slice(i, i + 2);
      if (two === "<>" || two === "<=" || two === ">=" || two === "!=") {
        out.push({ k: "op", v: two === "!=" ? "<>" : two });
        i += 2;
      } else if ("=<>(),".includes(c)) {
        out.push({ k: "op", v: c });
        i++;
      } else {
        throw new WhereError(`unexpected '${c}'`);
      }
    }
  }
  return out;
}

function prevAllowsSign(out: Tok[]): boolean {
  const p = out[out.length - 1];
  return !p || p.k === "op" || (p.k === "id" && /^(and|or|not|in|between)$/i.test(p.v));
}

export function parseWhere(src: string): Expr {
  const toks = lex(src);
  let p = 0;
  const peek = () => toks[p];
  const kw = (word: string) => {
    const t = toks[p];
    if (t && t.k === "id" && t.v.toUpperCase() === word) {
      p++;
      return true;
    }
    return false;
  };
  const op = (v: string) => {
    const t = toks[p];
    if (t && t.k === "op" && t.v === v) {
      p++;
      return true;
    }
    return false;
  };
  const expect = (v: string) => {
    if (!op(v)) throw new WhereError(`expected '${v}'`);
  };
  const or = (): Expr => {
    let a = and();
    while (kw("OR")) a = { t: "or", a, b: and() };
    return a;
  };
  const and = (): Expr => {
    let a = not();
    while (kw("AND")) a = { t: "and", a, b: not() };
    return a;
  };
  const not = (): Expr => (kw("NOT") ? { t: "not", a: not() } : predicate());
  const operand = (): Expr => {
    const t = peek();
    if (!t) throw new WhereError("unexpected end");
    p++;
    if (t.k === "num") return { t: "lit", v: t.v };
    if (t.k === "str") return { t: "lit", v: t.v };
    if (t.k === "id") {
      if (t.v.toUpperCase() === "NULL") return { t: "lit", v: null };
      const u = t.v.toUpperCase();
      if ((u === "DATE" || u === "TIMESTAMP") && peek()?.k === "str") {
        const s = (toks[p++] as { v: string }).v;
        const ms = Date.parse(s.includes("T") || s.length <= 10 ? s : `${s.replace(" ", "T")}Z`);
        if (Number.isNaN(ms)) throw new WhereError(`bad date ${s}`);
        return { t: "lit", v: ms };
      }
      return { t: "field", name: t.v };
    }
    if (t.v === "(") {
      const e = or();
      expect(")");
      return e;
    }
    throw new WhereError(`unexpected '${t.v}'`);
  };
  const predicate = (): Expr => {
    const t = peek();
    if (t && t.k === "op" && t.v === "(") {
      // parenthesised boolean expression (or operand — both parse the same way)
      p++;
      const e = or();
      expect(")");
      return maybeComparison(e);
    }
    return maybeComparison(operand());
  };
  const maybeComparison = (a: Expr): Expr => {
    const t = peek();
    if (t && t.k === "op" && ["=", "<>", "<", "<=", ">", ">="].includes(t.v)) {
      p++;
      return { t: "cmp", op: t.v as "=", a, b: operand() };
    }
    const save = p;
    const negated = kw("NOT");
    if (kw("IN")) {
      expect("(");
      const list: Expr[] = [operand()];
      while (op(",")) list.push(operand());
      expect(")");
      return { t: "in", a, list, not: negated };
    }
    if (kw("BETWEEN")) {
      const lo = operand();
      if (!kw("AND")) throw new WhereError("expected AND in BETWEEN");
      return { t: "between", a, lo, hi: operand(), not: negated };
    }
    if (kw("LIKE")) return { t: "like", a, pattern: operand(), not: negated };
    p = save;
    if (kw("IS")) {
      const n = kw("NOT");
      if (!kw("NULL")) throw new WhereError("expected NULL");
      return { t: "null", a, not: n };
    }
    return a;
  };
  const e = or();
  if (p < toks.length) throw new WhereError(`unexpected '${String(toks[p]?.v)}'`);
  return e;
}

export type Row = (field: string) => Value;

function val(e: Expr, row: Row): Value | boolean {
  switch (e.t) {
    case "lit":
      return e.v;
    case "field":
      return row(e.name);
    default:
      return evalWhere(e, row);
  }
}

function cmp(a: Value | boolean, b: Value | boolean): number | null {
  if (a === null || b === null) return null;
  if (typeof a === "number" && typeof b === "number") return a - b;
  if (typeof a === "boolean" || typeof b === "boolean") return a === b ? 0 : 1;
  const as = guidText(String(a));
  const bs = guidText(String(b));
  return as < bs ? -1 : as > bs ? 1 : 0;
}

const GUID = /^\{?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}?$/i;

/** GlobalID and GUID values compare as GUIDs: braces and case do not matter (as on ArcGIS). */
function guidText(value: string): string {
  return GUID.test(value) ? value.replace(/[{}]/g, "").toLowerCase() : value;
}

export function evalWhere(e: Expr, row: Row): boolean {
  switch (e.t) {
    case "lit":
      return e.v !== null && e.v !== 0 && e.v !== "";
    case "field":
      return Boolean(row(e.name));
    case "cmp": {
      const c = cmp(val(e.a, row), val(e.b, row));
      if (c === null) return false;
      switch (e.op) {
        case "=":
          return c === 0;
        case "<>":
          return c !== 0;
        case "<":
          return c < 0;
        case "<=":
          return c <= 0;
        case ">":
          return c > 0;
        case ">=":
          return c >= 0;
      }
      return false;
    }
    case "in": {
      const a = val(e.a, row);
      const hit = e.list.some((x) => cmp(a, val(x, row)) === 0);
      return e.not ? !hit : hit;
    }
    case "between": {
      const a = val(e.a, row);
      const lo = cmp(a, val(e.lo, row));
      const hi = cmp(a, val(e.hi, row));
      const hit = lo !== null && hi !== null && lo >= 0 && hi <= 0;
      return e.not ? !hit : hit;
    }
    case "null": {
      const isNull = val(e.a, row) === null;
      return e.not ? !isNull : isNull;
    }
    case "like": {
      const a = val(e.a, row);
      const pat = String(val(e.pattern, row) ?? "");
      const re = new RegExp(
        `^${pat
          .replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
          .replace(/%/g, ".*")
          .replace(/_/g, ".")}$`,
        "is",
      );
      const hit = a !== null && re.test(String(a));
      return e.not ? !hit : hit;
    }
    case "and":
      return evalWhere(e.a, row) && evalWhere(e.b, row);
    case "or":
      return evalWhere(e.a, row) || evalWhere(e.b, row);
    case "not":
      return !evalWhere(e.a, row);
  }
}

/** Fields the expression reads (upper-cased). */
export function fieldsOf(e: Expr, out = new Set<string>()): Set<string> {
  switch (e.t) {
    case "field":
      out.add(e.name.toUpperCase());
      break;
    case "lit":
      break;
    case "cmp":
    case "and":
    case "or":
      fieldsOf(e.a, out);
      fieldsOf(e.b, out);
      break;
    case "in":
      fieldsOf(e.a, out);
      for (const x of e.list) fieldsOf(x, out);
      break;
    case "between":
      fieldsOf(e.a, out);
      fieldsOf(e.lo, out);
      fieldsOf(e.hi, out);
      break;
    case "null":
    case "not":
      fieldsOf(e.a, out);
      break;
    case "like":
      fieldsOf(e.a, out);
      fieldsOf(e.pattern, out);
      break;
  }
  return out;
}

/** Bounds on the object id implied by top-level AND-ed comparisons with number literals. */
export function oidBounds(e: Expr, oidField: string): { lo: number; hi: number } {
  let lo = Number.NEGATIVE_INFINITY;
  let hi = Number.POSITIVE_INFINITY;
  const walk = (x: Expr) => {
    if (x.t === "and") {
      walk(x.a);
      walk(x.b);
      return;
    }
    if (x.t === "between" && !x.not && x.a.t === "field" && x.a.name.toUpperCase() === oidField) {
      if (x.lo.t === "lit" && typeof x.lo.v === "number") lo = Math.max(lo, Math.ceil(x.lo.v));
      if (x.hi.t === "lit" && typeof x.hi.v === "number") hi = Math.min(hi, Math.floor(x.hi.v));
      return;
    }
    if (x.t !== "cmp") return;
    let op = x.op;
    let f = x.a;
    let l = x.b;
    if (x.a.t === "lit") {
      f = x.b;
      l = x.a;
      op = ({ "<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "=", "<>": "<>" } as const)[op];
    }
    if (f.t !== "field" || f.name.toUpperCase() !== oidField || l.t !== "lit" || typeof l.v !== "number")
      return;
    const v = l.v;
    if (op === "=") {
      lo = Math.max(lo, Math.ceil(v));
      hi = Math.min(hi, Math.floor(v));
    } else if (op === ">") lo = Math.max(lo, Math.floor(v) + 1);
    else if (op === ">=") lo = Math.max(lo, Math.ceil(v));
    else if (op === "<") hi = Math.min(hi, Math.ceil(v) - 1);
    else if (op === "<=") hi = Math.min(hi, Math.floor(v));
  };
  walk(e);
  return { lo, hi };
}

import { hash32 } from "./prng.js";

/**
 * A fault to inject. `match` is a glob (`*` stays within a path segment, `**` crosses them) or a
 * RegExp, tested against the request path (e.g. `/sharing/rest/content/items/abc/data`) and the
 * normalised route (e.g. `sharing/content/items/:id/data`, `services/FeatureServer/:layer/query`,
 * `storage/blob`). Counting: the rule sees every matching request; it skips the first `after`,
 * then fires on every `every`-th one (default each), with `probability` (seeded), at most `times`,
 * and within `forMs` of its first firing (an outage of that length).
 * "The 3rd query fails once" = `{ match: "**\/query", after: 2, times: 1, action: "status" }`.
 * "The org is down for 3 s" = `{ match: "**", forMs: 3000, action: "status", status: 503 }`.
 */
export interface FaultRule {
  match: string | RegExp;
  method?: string;
  action: "latency" | "status" | "bodyError" | "reset" | "truncate" | "trickle";
  /** `status`: the HTTP status (default 503). `bodyError`: error.code in an HTTP 200 JSON body (default 500). */
  status?: number;
  /** Seconds, sent as Retry-After (status / bodyError). */
  retryAfter?: number;
  /** `latency`: added delay (default 1000). `trickle`: spread the body over this long (default 2000). */
  latencyMs?: number;
  after?: number;
  every?: number;
  times?: number;
  probability?: number;
  /** Fires only for this many milliseconds from its first firing, then never again. */
  forMs?: number;
}

interface RuleState {
  rule: FaultRule;
  test: (s: string) => boolean;
  seen: number;
  fired: number;
  /** When it first fired (the clock's milliseconds). */
  firstFiredAt?: number;
}

export function globToRegExp(glob: string): RegExp {
  let re = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] ?? "";
    if (c === "*") {
      if (glob[i + 1] === "*") {
        re += ".*";
        i++;
        if (glob[i + 1] === "/") i++;
      } else re += "[^/]*";
    } else if (c === "?") re += "[^/]";
    else re += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^/?${re.replace(/^\//, "")}$`);
}

export class Faults {
  private states: RuleState[] = [];
  private draws = 0;
  constructor(
    private readonly seed: number,
    private readonly now: () => number = Date.now,
  ) {}

  set(rules: FaultRule[]): void {
    this.states = rules.map((rule) => {
      const re = typeof rule.match === "string" ? globToRegExp(rule.match) : rule.match;
      return { rule, test: (s: string) => re.test(s), seen: 0, fired: 0 };
    });
  }

  /** Rules that fire for this request (latency ones first, then at most one other). */
  evaluate(method: string, path: string, route: string): FaultRule[] {
    const out: FaultRule[] = [];
    let terminal = false;
    for (const st of this.states) {
      const r = st.rule;
      if (r.method && r.method.toUpperCase() !== method.toUpperCase()) continue;
      if (!st.test(path) && !st.test(route)) continue;
      st.seen++;
      const n = st.seen - (r.after ?? 0);
      if (n <= 0) continue;
      if (r.every && r.every > 1 && n % r.every !== 0) continue;
      if (r.times !== undefined && st.fired >= r.times) continue;
      if (r.forMs !== undefined && st.firstFiredAt !== undefined && this.now() - st.firstFiredAt >= r.forMs)
        continue;
      if (
        r.probability !== undefined &&
        hash32(this.seed, this.draws++, "fault") / 4294967296 >= r.probability
      )
        continue;
      if (r.action !== "latency") {
        if (terminal) continue;
        terminal = true;
      }
      st.fired++;
      st.firstFiredAt ??= this.now();
      out.push(r);
    }
    return out;
  }
}

import type { TableClient } from "@azure/data-tables";
import { type Clock, systemClock } from "../../clock.js";
import type { RequestPacer, ResponseObservation } from "../portal-client.js";
import { parseRetryAfter, RETRY_AFTER_CEILING_MS } from "../retry-delay.js";
import {
  type AimdPolicy,
  type AimdState,
  aimdConcurrency,
  aimdStart,
  aimdUpdate,
  DEFAULT_AIMD_POLICY,
} from "./aimd.js";
import { CostEstimator } from "./cost-estimator.js";
import {
  costKey,
  firstCostEstimate,
  isMeteredUrl,
  ORG_UNITS_HEADER,
  parseOrgUnits,
  parseQueryUnits,
  QUERY_UNITS_HEADER,
} from "./headers.js";
import {
  emptyOrgState,
  type GovernorMode,
  type GovernorPolicy,
  governorPolicy,
  type LeaseInput,
  type LeaseOutcome,
  leaseRound,
  markAdaptive,
  type Observation,
  type OrgState,
  type Refund,
  recordLockout,
} from "./org-state.js";
import { type GovernorStateStore, governorRowKey, TableGovernorStore } from "./state-store.js";

/** What a run reports about pacing. */
export interface GovernorStats {
  /** Units the org charged us (from X-Esri-Query-Request-Units). */
  requestUnits: number;
  /** Time requests spent waiting for budget or a lockout to end, summed over requests. */
  budgetWaitMs: number;
  /** 429s seen, in either form. */
  throttled: number;
  requests: number;
}

export interface OrgGovernorOptions {
  store: GovernorStateStore;
  /** The org id or its sharing URL: every governor of the org must use the same key. */
  orgKey: string;
  /** Our share of the org's budget (the identity's maxOrgBudgetShare). Default 0.5. */
  budgetShare?: number;
  /** The org total (everyone) is kept under this share of the budget. Default 0.85. */
  orgHeadroom?: number;
  /** The org meter's window. Default 60 s (ArcGIS Online). */
  windowMs?: number;
  /** How long a leased slice of budget is usable. Default windowMs / 20, at most 1 s. */
  leaseMs?: number;
  /** Part of the allowance that may go out at once. Default 0.1. */
  burstFraction?: number;
  /** Pause after a 429 that gives no Retry-After. Default 60 s. */
  coolOffMs?: number;
  /** Adaptive concurrency where responses carry no request units. */
  adaptive?: Partial<AimdPolicy>;
  /** How stale our view of an org-wide pause may be before a Sharing call rereads it. Default 2 leases. */
  pauseCheckMs?: number;
  /** A request with no response after this long stops counting as in flight. Default 60 s. */
  inflightTimeoutMs?: number;
  /**
   * Time for its decisions and its waits. Instances share times through the table, so they share
   * a clock: the system clock (default), or in tests one ManualClock.
   */
  clock?: Clock;
}

export interface CreateOrgGovernorOptions extends Omit<OrgGovernorOptions, "store"> {
  /** The app's governor table (see GOVERNOR_TABLE and openAppTable). */
  table: TableClient;
}

/** A pacer with its own counters (one run or activity) over a shared governor. */
export interface TrackedPacer extends RequestPacer {
  onThrottled(url: string, retryAfterMs?: number): void;
  stats(): GovernorStats;
}

/** What the governor currently believes (for logs and tests). */
export interface GovernorSnapshot {
  mode: GovernorMode;
  pausedUntil: number;
  concurrency: number;
  inFlight: number;
  waiting: number;
  shared: OrgState;
  storeErrors: number;
}

interface Waiter {
  key: string;
  /** Its price from its parameters, while its kind has none yet (see firstCostEstimate). */
  first: number | undefined;
  need: number;
  resolve: () => void;
}

interface Flight {
  need: number;
  /** When the lease it was paid from was granted: the spend its real cost corrects. */
  from: number;
  at: number;
  /** Paid from the lease (header mode); its real cost corrects the balance. */
  leased: boolean;
  /** Its kind had no price yet, so it went at a guess. */
  firstOfKind: boolean;
}

/**
 * The request-unit governor of one org, shared by every caller of the org in this process and,
 * through its table row, with every other instance. Metered requests (`/rest/services/`) wait
 * for budget: instances lease small slices of a shared token bucket sized from the org's
 * budget and others' usage (read from response headers); without those headers it falls back
 * to adaptive concurrency. A 429 pauses every caller of the org, Sharing calls included.
 */
export class OrgRateGovernor implements RequestPacer {
  readonly orgKey: string;
  private readonly store: GovernorStateStore;
  private policy: GovernorPolicy;
  private readonly aimdPolicy: AimdPolicy;
  private readonly coolOffMs: number;
  private readonly pauseCheckMs: number;
  private readonly inflightTimeoutMs: number;
  private readonly clock: Clock;

  private shared: OrgState = emptyOrgState();
  private sharedAt = Number.NEGATIVE_INFINITY;
  private mode: GovernorMode = "unknown";
  private pausedUntil = 0;
  /** Units of the current lease left (negative: overdrawn), granted at leaseFrom, usable until leaseUntil. */
  private balance = 0;
  /** Units spent outside any lease (the conservative start), still to be charged. */
  private unleased = 0;
  private leaseFrom = 0;
  private leaseUntil = 0;
  /** Corrections to leases already handed back, for the next round. */
  private refunds: Refund[] = [];
  /** Counts refunds handed back on their own, so a wait decided before one is not slept out. */
  private refundRounds = 0;
  private pendingObservation: Observation | undefined;
  private readonly queue: Waiter[] = [];
  private pumping = false;
  /** One per sleep in progress: aborting it ends the sleep early (something changed). */
  private readonly wakers = new Set<AbortController>();
  private readonly inflight = new Map<string, Flight[]>();
  private aimd: AimdState;
  private readonly costs = new CostEstimator();
  private headerlessStreak = 0;
  /**
   * The longest a metered request took from its release to its answer, in this window and the
   * last: the org counts a request as it answers, so one slow page lands later than its grant.
   */
  private lag = { ms: 0, previousMs: 0, since: 0 };
  private lastHeaderAt = Number.NEGATIVE_INFINITY;
  private refreshing: Promise<void> | undefined;
  private storeErrors = 0;
  private readonly counters: GovernorStats = { requestUnits: 0, budgetWaitMs: 0, throttled: 0, requests: 0 };

  constructor(options: OrgGovernorOptions) {
    this.orgKey = options.orgKey;
    this.store = options.store;
    this.policy = governorPolicy({
      ...(options.windowMs !== undefined ? { windowMs: options.windowMs } : {}),
      ...(options.leaseMs !== undefined ? { leaseMs: options.leaseMs } : {}),
      ...(options.burstFraction !== undefined ? { burstFraction: options.burstFraction } : {}),
      ...(options.orgHeadroom !== undefined ? { headroom: options.orgHeadroom } : {}),
      share: checkShare(options.budgetShare ?? 0.5),
    });
    this.aimdPolicy = { ...DEFAULT_AIMD_POLICY, ...options.adaptive };
    this.aimd = aimdStart(this.aimdPolicy);
    this.coolOffMs = options.coolOffMs ?? 60_000;
    this.pauseCheckMs = options.pauseCheckMs ?? 2 * this.policy.leaseMs;
    this.inflightTimeoutMs = options.inflightTimeoutMs ?? 60_000;
    this.clock = options.clock ?? systemClock;
  }

  /** Changes our share of the org budget (e.g. the identity was edited). */
  setBudgetShare(share: number): void {
    this.policy = { ...this.policy, share: checkShare(share) };
    this.wake();
  }

  async beforeRequest(url: string, params?: Record<string, unknown>): Promise<void> {
    const waited = await this.acquire(url, params);
    this.counters.requests++;
    this.counters.budgetWaitMs += waited;
  }

  afterResponse(observation: ResponseObservation): void {
    const seen = this.observe(observation);
    this.counters.requestUnits += seen.units;
    if (seen.throttled) this.counters.throttled++;
  }

  /** A 429 that came as an HTTP 200 error body (the client classifies it after afterResponse). */
  onThrottled(_url: string, retryAfterMs?: number): void {
    this.counters.throttled++;
    this.throttle(retryAfterMs);
  }

  stats(): GovernorStats {
    return { ...this.counters };
  }

  /** A pacer over this governor that counts for one run (or activity) on its own. */
  track(): TrackedPacer {
    const counters: GovernorStats = { requestUnits: 0, budgetWaitMs: 0, throttled: 0, requests: 0 };
    return {
      beforeRequest: async (url, params) => {
        const waited = await this.acquire(url, params);
        counters.requests++;
        counters.budgetWaitMs += waited;
        this.counters.requests++;
        this.counters.budgetWaitMs += waited;
      },
      afterResponse: (observation) => {
        const seen = this.observe(observation);
        counters.requestUnits += seen.units;
        this.counters.requestUnits += seen.units;
        if (seen.throttled) {
          counters.throttled++;
          this.counters.throttled++;
        }
      },
      onThrottled: (url, retryAfterMs) => {
        counters.throttled++;
        this.onThrottled(url, retryAfterMs);
      },
      stats: () => ({ ...counters }),
    };
  }

  snapshot(): GovernorSnapshot {
    const now = this.now();
    return {
      mode: this.mode,
      pausedUntil: this.pauseEnd(),
      concurrency: this.mode === "headers" ? Number.POSITIVE_INFINITY : aimdConcurrency(this.aimd),
      inFlight: this.activeFlights(now),
      waiting: this.queue.length,
      shared: this.shared,
      storeErrors: this.storeErrors,
    };
  }

  /** Gives back the unused part of the lease (e.g. when a run ends), so others may use it. */
  async flush(): Promise<void> {
    if ((this.balance === 0 && this.unleased === 0 && this.refunds.length === 0) || this.pumping) return;
    const input: LeaseInput = {
      now: this.now(),
      need: 0,
      want: 0,
      returned: this.balance,
      returnedFrom: this.leaseFrom,
      refunds: this.takeRefunds(),
      unleased: this.unleased,
      observation: this.takeObservation(),
    };
    this.balance = 0;
    this.unleased = 0;
    this.leaseUntil = 0;
    await this.round(input);
  }

  // --- waiting ----------------------------------------------------------------------------

  private async acquire(url: string, params?: Record<string, unknown>): Promise<number> {
    const started = this.now();
    if (!isMeteredUrl(url)) {
      await this.waitForOrg();
      return this.now() - started;
    }
    const key = costKey(url, params);
    const first = firstCostEstimate(url, params);
    await new Promise<void>((resolve) => {
      this.queue.push({ key, first, need: this.costs.estimate(key, first), resolve });
      void this.pump();
    });
    return this.now() - started;
  }

  /** Unmetered calls pass, except while the org is locked out. */
  private async waitForOrg(): Promise<void> {
    if (this.now() - this.sharedAt > this.pauseCheckMs) await this.refresh();
    for (;;) {
      const wait = this.pauseEnd() - this.now();
      if (wait <= 0) return;
      await this.sleep(wait);
    }
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.queue.length > 0) {
        try {
          await this.step(this.queue[0] as Waiter);
        } catch {
          // Never strand callers on a bug or an odd store failure: let the head go after a pause.
          this.storeErrors++;
          await this.sleep(this.policy.leaseMs);
          const head = this.queue[0];
          if (head) this.release(head, false);
        }
      }
    } finally {
      this.pumping = false;
    }
  }

  /** Releases the head request when it may go, or waits (once) for that to change. */
  private async step(head: Waiter): Promise<void> {
    // Costs learnt while it queued count (the first requests queue before any response).
    head.need = this.needOf(head);
    const now = this.now();
    const pause = this.pauseEnd() - now;
    if (pause > 0) return this.sleep(pause);
    if (this.mode === "unknown" && this.sharedAt === Number.NEGATIVE_INFINITY) return this.refresh();
    if (this.mode !== "headers") {
      // Unknown yet, or no headers: the conservative start / adaptive concurrency. No lease
      // rounds here, so look at the row now and then for a pause another instance met.
      if (now - this.sharedAt > this.pauseCheckMs) return this.refresh();
      if (this.activeFlights(now) < aimdConcurrency(this.aimd)) return this.release(head, false);
      return this.sleep(this.policy.leaseMs * 4);
    }
    if (!this.costs.known(head.key) && this.activeFlightsOf(head.key, now) > 0) {
      // A kind of request never priced yet: one goes first and its answer says what it costs,
      // instead of many going at a guessed price and overshooting the share together.
      return this.sleep(this.policy.leaseMs);
    }
    if (now < this.leaseUntil && this.balance >= head.need) {
      // A reservation ahead of time: wait for its moment here, without asking the row again.
      if (now < this.leaseFrom) return this.sleep(this.leaseFrom - now);
      this.balance -= head.need;
      return this.release(head, true);
    }
    const refundRounds = this.refundRounds;
    const waitMs = await this.renew(now, head.need);
    // A refund handed back meanwhile may have made the room this round did not find.
    if (waitMs > 0 && refundRounds === this.refundRounds) await this.sleep(waitMs);
  }

  /**
   * What the request reserves: its kind's price; a kind not priced yet its first estimate, but
   * at most our whole share (more could not be held anyway, and its answer refunds the rest).
   */
  private needOf(head: Waiter): number {
    const need = this.costs.estimate(head.key, head.first);
    if (this.costs.known(head.key) || this.shared.max <= 0) return need;
    return Math.min(need, Math.max(1, Math.floor(this.policy.share * this.shared.max)));
  }

  private release(head: Waiter, leased: boolean): void {
    this.queue.shift();
    const flights = this.inflight.get(head.key) ?? [];
    flights.push({
      need: head.need,
      from: this.leaseFrom,
      at: this.now(),
      leased,
      firstOfKind: !this.costs.known(head.key),
    });
    this.inflight.set(head.key, flights);
    head.resolve();
  }

  /** Returns the old lease and asks the shared state for a new one; the wait when none was granted. */
  private async renew(now: number, need: number): Promise<number> {
    let want = 0;
    for (const waiter of this.queue) want += waiter.need;
    const returned = this.balance;
    const unleased = this.unleased;
    this.balance = 0;
    this.unleased = 0;
    const outcome = await this.round({
      now,
      need,
      want,
      returned,
      returnedFrom: this.leaseFrom,
      refunds: this.takeRefunds(),
      unleased,
      lagMs: Math.max(this.lag.ms, this.lag.previousMs),
      observation: this.takeObservation(),
    });
    if (outcome.grant > 0) {
      this.balance += outcome.grant;
      this.leaseFrom = outcome.readyAt;
      this.leaseUntil = outcome.readyAt + this.policy.leaseMs;
      return 0;
    }
    this.leaseUntil = 0;
    return Math.max(1, Math.min(outcome.waitMs, this.policy.windowMs));
  }

  private async round(input: LeaseInput): Promise<LeaseOutcome> {
    const policy = this.policy;
    try {
      const { result, state } = await this.store.update((current) => {
        const { state: next, outcome } = leaseRound(current, input, policy);
        return { state: outcome.dirty ? next : null, result: outcome };
      });
      this.adopt(state);
      return result;
    } catch {
      // The table is out of reach: carry on from our last copy with half the share, so
      // instances cut off from each other stay under the share together.
      this.storeErrors++;
      const { state, outcome } = leaseRound(this.shared, input, { ...policy, share: policy.share / 2 });
      this.shared = state;
      return outcome;
    }
  }

  private async refresh(): Promise<void> {
    this.refreshing ??= this.store
      .read()
      .then(
        (state) => this.adopt(state),
        () => {
          this.storeErrors++;
          this.sharedAt = this.now();
        },
      )
      .finally(() => {
        this.refreshing = undefined;
      });
    await this.refreshing;
  }

  private adopt(state: OrgState): void {
    this.shared = state;
    this.sharedAt = this.now();
    if (this.mode === "unknown" && state.mode === "headers" && state.max > 0) this.mode = "headers";
    else if (this.mode === "unknown" && state.mode === "adaptive") this.mode = "adaptive";
    if (state.pausedUntil > this.pausedUntil) this.wake();
  }

  // --- responses --------------------------------------------------------------------------

  private observe(observation: ResponseObservation): { units: number; throttled: boolean } {
    const now = this.now();
    const metered = isMeteredUrl(observation.url);
    const key = costKey(observation.url, observation.params);
    const flight = metered ? this.takeFlight(key, now) : undefined;
    const org = parseOrgUnits(observation.headers?.get(ORG_UNITS_HEADER));
    const cost = parseQueryUnits(observation.headers?.get(QUERY_UNITS_HEADER));
    if (org) {
      this.lastHeaderAt = now;
      this.headerlessStreak = 0;
      if (!this.pendingObservation || now >= this.pendingObservation.at) {
        this.pendingObservation = { at: now, usage: org.usage, max: org.max };
      }
      this.mode = "headers";
    }
    if (observation.throttled) {
      // Refused requests cost nothing.
      if (flight?.leased) this.settle(flight, 0);
      this.throttle(parseRetryAfter(observation.headers?.get("retry-after")));
      return { units: 0, throttled: true };
    }
    if (cost !== undefined) this.costs.observe(key, cost);
    if (metered) this.noteLag(flight ? now - flight.at : observation.latencyMs, now);
    if (flight?.leased) this.settle(flight, cost ?? flight.need);
    else if (flight && cost !== undefined) this.unleased += cost;
    if (metered && !org && observation.status >= 200 && observation.status < 300) {
      this.headerlessStreak++;
      const switchToAdaptive =
        (this.mode === "unknown" && this.headerlessStreak >= 2) ||
        (this.mode === "headers" &&
          this.headerlessStreak >= 50 &&
          now - this.lastHeaderAt > this.policy.windowMs);
      if (switchToAdaptive) {
        this.mode = "adaptive";
        void this.store
          .update((state) => ({
            state: markAdaptive(state) === state ? null : markAdaptive(state),
            result: undefined,
          }))
          .catch(() => {
            this.storeErrors++;
          });
      }
    }
    if (metered && this.mode !== "headers") {
      this.aimd = aimdUpdate(
        this.aimd,
        observation.status >= 500 || observation.status === 0
          ? { kind: "error" }
          : { kind: "ok", latencyMs: observation.latencyMs },
        now,
        this.aimdPolicy,
      );
    }
    this.wake();
    return { units: cost ?? 0, throttled: false };
  }

  /** Pauses every caller of the org (here at once, elsewhere through the table). */
  private throttle(retryAfterMs: number | undefined): void {
    const now = this.now();
    const pauseMs = Math.min(retryAfterMs ?? this.coolOffMs, RETRY_AFTER_CEILING_MS);
    const until = now + pauseMs;
    if (this.mode !== "headers")
      this.aimd = aimdUpdate(this.aimd, { kind: "throttled" }, now, this.aimdPolicy);
    const wasPaused = now < this.pausedUntil;
    if (until > this.pausedUntil) {
      const extendsPause = until > this.pausedUntil + 1_000;
      this.pausedUntil = until;
      if (!wasPaused || extendsPause) {
        const policy = this.policy;
        void this.store
          .update((state) => {
            const next = recordLockout(state, now, until, policy);
            return { state: next === state ? null : next, result: undefined };
          })
          .then(
            ({ state }) => this.adopt(state),
            () => {
              this.storeErrors++;
            },
          );
      }
    }
    this.wake();
  }

  /** Books what a leased request really cost against what it reserved. */
  private settle(flight: Flight, cost: number): void {
    const unused = flight.need - cost;
    if (unused === 0) return;
    if (flight.from === this.leaseFrom && !flight.firstOfKind) {
      // Its lease is still ours: the next requests use (or make up for) the difference.
      this.balance += unused;
      return;
    }
    // Else to the spend it was booked in, with the next round; a guess at once, so that a high
    // one holds back no one, here or in another instance, who waits for budget.
    this.refunds.push({ from: flight.from, units: unused });
    if (flight.firstOfKind) void this.returnRefunds();
  }

  private async returnRefunds(): Promise<void> {
    const refunds = this.takeRefunds();
    if (refunds.length === 0) return;
    await this.round({ now: this.now(), need: 0, want: 0, returned: 0, returnedFrom: 0, refunds });
    this.refundRounds++;
    this.wake();
  }

  // --- bookkeeping ------------------------------------------------------------------------

  private noteLag(ms: number, now: number): void {
    const elapsed = now - this.lag.since;
    if (elapsed >= this.policy.windowMs) {
      const previousMs = elapsed < 2 * this.policy.windowMs ? this.lag.ms : 0;
      this.lag = { ms: 0, previousMs, since: now };
    }
    this.lag.ms = Math.max(this.lag.ms, ms);
  }

  private takeRefunds(): Refund[] {
    return this.refunds.splice(0);
  }

  private takeObservation(): Observation | undefined {
    const observation = this.pendingObservation;
    this.pendingObservation = undefined;
    return observation;
  }

  private takeFlight(key: string, now: number): Flight | undefined {
    const flights = this.inflight.get(key);
    if (!flights) return undefined;
    const flight = flights.shift();
    if (flights.length === 0) this.inflight.delete(key);
    return flight && now - flight.at <= this.inflightTimeoutMs ? flight : undefined;
  }

  private activeFlightsOf(key: string, now: number): number {
    return (this.inflight.get(key) ?? []).filter((flight) => now - flight.at <= this.inflightTimeoutMs)
      .length;
  }

  private activeFlights(now: number): number {
    let count = 0;
    for (const [key, flights] of this.inflight) {
      const live = flights.filter((flight) => now - flight.at <= this.inflightTimeoutMs);
      if (live.length === 0) this.inflight.delete(key);
      else if (live.length !== flights.length) this.inflight.set(key, live);
      count += live.length;
    }
    return count;
  }

  private pauseEnd(): number {
    return Math.max(this.pausedUntil, this.shared.pausedUntil);
  }

  private now(): number {
    return this.clock.now();
  }

  /** Waits `ms` (at least 1, so that no loop spins), or until wake(). */
  private async sleep(ms: number): Promise<void> {
    const waker = new AbortController();
    this.wakers.add(waker);
    try {
      await this.clock.sleep(Math.max(1, Math.ceil(ms)), waker.signal);
    } finally {
      this.wakers.delete(waker);
    }
  }

  private wake(): void {
    for (const waker of [...this.wakers]) waker.abort();
  }
}

/** A governor whose shared state is the org's row in the app's governor table. */
export function createOrgGovernor(options: CreateOrgGovernorOptions): OrgRateGovernor {
  const { table, ...rest } = options;
  return new OrgRateGovernor({ ...rest, store: new TableGovernorStore(table, options.orgKey) });
}

const perProcess = new Map<string, OrgRateGovernor>();

/**
 * The process's one governor for the org (created on first use): every run and activity of the
 * org in this instance should pace through it. A given budgetShare replaces the current one.
 */
export function sharedOrgGovernor(options: CreateOrgGovernorOptions): OrgRateGovernor {
  const key = `${options.table.url}|${options.table.tableName}|${governorRowKey(options.orgKey)}`;
  const existing = perProcess.get(key);
  if (existing) {
    if (options.budgetShare !== undefined) existing.setBudgetShare(options.budgetShare);
    return existing;
  }
  const governor = createOrgGovernor(options);
  perProcess.set(key, governor);
  return governor;
}

function checkShare(share: number): number {
  if (!(share > 0 && share <= 1)) throw new RangeError(`budgetShare must be in (0, 1], got ${share}`);
  return share;
}

import { randomUUID } from "node:crypto";
import { type Clock, systemClock } from "../../../src/core/clock.js";
import type { CapturedFunction } from "../core-api.js";
import type { Invoker } from "../invoke.js";
import {
  type DurableStore,
  type HistoryEvent,
  type InstanceQuery,
  type InstanceRecord,
  type Meta,
  type RuntimeStatus,
  TERMINAL_STATUSES,
} from "./store.js";

/** History event types, as `durable-functions` numbers them. */
export const EventType = {
  ExecutionStarted: 0,
  ExecutionCompleted: 1,
  ExecutionFailed: 2,
  ExecutionTerminated: 3,
  TaskScheduled: 4,
  TaskCompleted: 5,
  TaskFailed: 6,
  SubOrchestrationInstanceCreated: 7,
  SubOrchestrationInstanceCompleted: 8,
  SubOrchestrationInstanceFailed: 9,
  TimerCreated: 10,
  TimerFired: 11,
  OrchestratorStarted: 12,
  OrchestratorCompleted: 13,
  EventSent: 14,
  EventRaised: 15,
  ContinueAsNew: 16,
  GenericEvent: 17,
  HistoryState: 18,
  ExecutionSuspended: 19,
  ExecutionResumed: 20,
} as const;

const EVENT_NAMES = Object.fromEntries(Object.entries(EventType).map(([k, v]) => [v, k])) as Record<
  number,
  string
>;

const ActionType = {
  CallActivity: 0,
  CallActivityWithRetry: 1,
  CallSubOrchestrator: 2,
  CallSubOrchestratorWithRetry: 3,
  ContinueAsNew: 4,
  CreateTimer: 5,
  WaitForExternalEvent: 6,
  CallEntity: 7,
  CallHttp: 8,
  SignalEntity: 9,
  WhenAny: 11,
  WhenAll: 12,
} as const;

/** Replay schema V4, the newest `durable-functions` 3.x understands. */
const UPPER_SCHEMA_VERSION = 3;
const OUT_OF_PROC_LABEL = "\n\n$OutOfProcData$:";

interface SdkAction {
  actionType: number;
  functionName?: string;
  input?: unknown;
  instanceId?: string;
  fireAt?: Date;
  retryOptions?: RetryOptions;
  compoundActions?: SdkAction[];
}

interface RetryOptions {
  firstRetryIntervalInMilliseconds: number;
  maxNumberOfAttempts: number;
  backoffCoefficient?: number;
  maxRetryIntervalInMilliseconds?: number;
}

/** The parts of the SDK's task objects the engine reads after an episode (durable-functions 3.x). */
interface SdkTask {
  id: number | string | false;
  state: number;
  action: SdkAction | string;
  actionObj?: SdkAction | string;
  parent?: SdkTask & {
    isWaitingOnTimer?: boolean;
    attemptNumber?: number;
    retryOptions?: RetryOptions;
    innerTask?: SdkTask;
  };
  children?: SdkTask[];
}

interface SdkExecutor {
  openTasks: Record<string, SdkTask>;
  currentTask?: SdkTask;
}

interface OrchestratorState {
  isDone: boolean;
  actions: SdkAction[][];
  output?: unknown;
  error?: string;
  customStatus?: unknown;
}

export interface StatusOptions {
  showHistory?: boolean;
  showHistoryOutput?: boolean;
  showInput?: boolean;
}

export interface OrchestrationStatus {
  name: string;
  instanceId: string;
  runtimeStatus: RuntimeStatus;
  input: unknown;
  customStatus: unknown;
  output: unknown;
  createdTime: string;
  lastUpdatedTime: string;
  history?: Record<string, unknown>[];
  historyEvents?: Record<string, unknown>[];
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

interface Instance {
  meta: Meta;
  history: HistoryEvent[];
  /** Received, not yet processed. */
  inbox: HistoryEvent[];
  /** Inbox messages not yet written to storage. */
  unflushed: HistoryEvent[];
  inboxSeq: number;
  /** EventId → TaskScheduled / TimerCreated / SubOrchestrationInstanceCreated. */
  scheduled: Map<number, HistoryEvent>;
  /** Ids whose completion is in the history or the inbox. */
  completed: Set<number>;
  /** While the orchestrator waits on Task.all of plain tasks: the children still running. */
  waitAll: Set<number> | undefined;
  chain: Promise<void>;
  flushQueued: boolean;
  episodeQueued: boolean;
  inEpisode: boolean;
  /** Aborted when this generation of the instance ends: cancels its durable timers. */
  timers: AbortController;
  finished: boolean;
}

interface WorkItem {
  instanceId: string;
  generation: number;
  taskId: number;
  name: string;
  input: string | undefined;
}

export interface EngineOptions {
  store: DurableStore;
  functions: Map<string, CapturedFunction>;
  invoker: Invoker;
  maxConcurrentActivities: number;
  log: (line: string) => void;
  /**
   * Orchestration time: currentUtcDateTime and when durable timers fire (the system clock by
   * default). The host's own time-outs (waitForInstance, close) stay on the real clock.
   */
  clock?: Clock;
}

const parseJson = (text: string | undefined): unknown => {
  if (text === undefined || text === null) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
};

function completionId(event: HistoryEvent): number | undefined {
  switch (event.EventType) {
    case EventType.TaskCompleted:
    case EventType.TaskFailed:
    case EventType.SubOrchestrationInstanceCompleted:
    case EventType.SubOrchestrationInstanceFailed:
      return event.TaskScheduledId as number;
    case EventType.TimerFired:
      return event.TimerId as number;
    default:
      return undefined;
  }
}

function newEvent(type: number, fields: Record<string, unknown> = {}, eventId = -1): HistoryEvent {
  return { EventType: type, EventId: eventId, Timestamp: new Date(), IsPlayed: false, ...fields };
}

function activityInputJson(input: unknown): string | undefined {
  // The SDK already JSON-encodes string inputs (Utils.processInput); other values are raw.
  if (input === undefined) return undefined;
  return typeof input === "string" ? input : JSON.stringify(input);
}

function errorDetails(error: unknown): { message: string; details: string; failureDetails?: unknown } {
  const err = error instanceof Error ? error : new Error(String(error));
  const result: { message: string; details: string; failureDetails?: unknown } = {
    message: err.message,
    details: err.stack ?? err.message,
  };
  // The SDK's exception-properties provider serialises failure details into the message.
  try {
    const parsed = JSON.parse(err.message) as Record<string, unknown>;
    if (parsed && typeof parsed === "object" && "errorMessage" in parsed) {
      result.message = String(parsed.errorMessage);
      result.failureDetails = {
        ErrorType: parsed.errorType,
        ErrorMessage: parsed.errorMessage,
        StackTrace: parsed.stackTrace,
        IsNonRetriable: parsed.isNonRetriable ?? false,
        Properties: parsed.properties,
      };
    }
  } catch {
    // a plain message
  }
  return result;
}

export class DurableEngine {
  private readonly store: DurableStore;
  private readonly functions: Map<string, CapturedFunction>;
  private readonly invoker: Invoker;
  private readonly log: (line: string) => void;
  private readonly maxActivities: number;
  private readonly clock: Clock;
  private readonly active = new Map<string, Instance>();
  private readonly loading = new Map<string, Promise<Instance | undefined>>();
  private readonly queue: WorkItem[] = [];
  private queueHead = 0;
  private runningActivities = 0;
  private readonly waiters = new Map<string, Set<(status: InstanceRecord) => void>>();
  private closed = false;
  private readonly inFlight = new Set<Promise<unknown>>();
  /** Counters for diagnostics and the benchmark. */
  readonly stats = { episodes: 0, activities: 0, flushes: 0, maxConcurrentActivities: 0 };

  constructor(options: EngineOptions) {
    this.store = options.store;
    this.functions = options.functions;
    this.invoker = options.invoker;
    this.log = options.log;
    this.maxActivities = Math.max(1, options.maxConcurrentActivities);
    this.clock = options.clock ?? systemClock;
  }

  // ---- lifecycle ------------------------------------------------------------------------------

  /** Creates the tables and resumes every instance that was not finished. */
  async start(): Promise<number> {
    await this.store.init();
    const records = await this.store.queryRecords({
      runtimeStatus: ["Pending", "Running", "Suspended", "ContinuedAsNew"],
    });
    for (const record of records) {
      const inst = await this.getInstance(record.instanceId);
      if (inst) this.resumeWork(inst);
    }
    return records.length;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const inst of this.active.values()) inst.timers.abort();
    await Promise.allSettled([...this.active.values()].map((i) => i.chain));
    // Activities still running are abandoned (their results are dropped; they run again after a
    // restart), but give quick ones a moment so that close() leaves little behind.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.inFlight]),
      new Promise((resolve) => {
        timer = setTimeout(resolve, 2_000);
      }),
    ]);
    clearTimeout(timer);
  }

  private track<T>(promise: Promise<T>): Promise<T> {
    this.inFlight.add(promise);
    promise.finally(() => this.inFlight.delete(promise)).catch(() => {});
    return promise;
  }

  private enqueue(inst: Instance, step: () => Promise<void>): Promise<void> {
    const run = async () => {
      if (this.closed) return;
      try {
        await step();
      } catch (error) {
        this.log(`durable: instance ${inst.meta.instanceId}: ${(error as Error).stack ?? error}`);
      }
    };
    inst.chain = inst.chain.then(run, run);
    return inst.chain;
  }

  // ---- instances ------------------------------------------------------------------------------

  private async getInstance(instanceId: string): Promise<Instance | undefined> {
    const existing = this.active.get(instanceId);
    if (existing) return existing;
    let pending = this.loading.get(instanceId);
    if (!pending) {
      pending = (async () => {
        const loaded = await this.store.load(instanceId);
        if (!loaded || TERMINAL_STATUSES.has(loaded.meta.runtimeStatus)) return undefined;
        const inst = this.newInstance(loaded.meta, loaded.history, loaded.inbox, loaded.inboxSeq);
        this.active.set(instanceId, inst);
        return inst;
      })().finally(() => this.loading.delete(instanceId));
      this.loading.set(instanceId, pending);
    }
    return pending;
  }

  private newInstance(
    meta: Meta,
    history: HistoryEvent[],
    inbox: HistoryEvent[],
    inboxSeq: number,
  ): Instance {
    const inst: Instance = {
      meta,
      history,
      inbox,
      unflushed: [],
      inboxSeq,
      scheduled: new Map(),
      completed: new Set(),
      waitAll: undefined,
      chain: Promise.resolve(),
      flushQueued: false,
      episodeQueued: false,
      inEpisode: false,
      timers: new AbortController(),
      finished: false,
    };
    for (const event of history) {
      event.IsPlayed = true;
      this.indexEvent(inst, event);
    }
    for (const event of inbox) this.indexEvent(inst, event);
    return inst;
  }

  private indexEvent(inst: Instance, event: HistoryEvent): void {
    if (
      event.EventType === EventType.TaskScheduled ||
      event.EventType === EventType.TimerCreated ||
      event.EventType === EventType.SubOrchestrationInstanceCreated
    ) {
      inst.scheduled.set(event.EventId, event);
    } else {
      const id = completionId(event);
      if (id !== undefined) inst.completed.add(id);
    }
  }

  /** After loading: re-dispatch work that was scheduled and has not completed. */
  private resumeWork(inst: Instance): void {
    for (const [id, event] of inst.scheduled) {
      if (inst.completed.has(id)) continue;
      this.dispatch(inst, event);
    }
    if (inst.inbox.length > 0 || inst.meta.runtimeStatus === "Pending") this.scheduleEpisode(inst);
  }

  async startNew(
    name: string,
    options: { instanceId?: string; input?: string; parentInstanceId?: string; parentTaskId?: number } = {},
  ): Promise<string> {
    const fn = this.functions.get(name);
    if (fn?.trigger.type !== "orchestrationTrigger") {
      throw new HttpError(
        400,
        `The function '${name}' doesn't exist, is disabled, or is not an orchestrator function.`,
      );
    }
    const instanceId = options.instanceId ?? randomUUID().replace(/-/g, "");
    if (this.active.has(instanceId) || this.loading.has(instanceId)) {
      throw new HttpError(409, `An orchestration instance with the ID '${instanceId}' is already running.`);
    }
    const existing = await this.store.readRecord(instanceId);
    if (existing) {
      if (!TERMINAL_STATUSES.has(existing.runtimeStatus)) {
        throw new HttpError(
          409,
          `An orchestration instance with the ID '${instanceId}' already exists with status ${existing.runtimeStatus}.`,
        );
      }
      await this.store.purge(instanceId);
    }
    const now = new Date();
    const meta: Meta = {
      instanceId,
      name,
      runtimeStatus: "Pending",
      createdTime: now,
      lastUpdatedTime: now,
      input: options.input,
      generation: 0,
      executionId: randomUUID().replace(/-/g, ""),
      rowCount: 0,
      inboxConsumed: 0,
      parentInstanceId: options.parentInstanceId,
      parentTaskId: options.parentTaskId,
    };
    const started = newEvent(EventType.ExecutionStarted, {
      Name: name,
      Input: options.input,
      OrchestrationInstance: { InstanceId: instanceId, ExecutionId: meta.executionId },
      ...(options.parentInstanceId
        ? { ParentInstance: { OrchestrationInstance: { InstanceId: options.parentInstanceId } } }
        : {}),
    });
    const inbox = [started];
    const inst = this.newInstance(meta, [], inbox, 0);
    this.active.set(instanceId, inst);
    inst.chain = (async () => {
      inst.inboxSeq = await this.store.createInstance(meta, inbox);
    })();
    await inst.chain;
    this.scheduleEpisode(inst);
    return instanceId;
  }

  // ---- messages -------------------------------------------------------------------------------

  private deliver(instanceId: string, event: HistoryEvent, generation?: number): void {
    const inst = this.active.get(instanceId);
    if (!inst || inst.finished || this.closed) return;
    if (generation !== undefined && generation !== inst.meta.generation) return;
    const id = completionId(event);
    if (id !== undefined) {
      if (inst.completed.has(id) || !inst.scheduled.has(id)) return;
      inst.completed.add(id);
    }
    inst.inbox.push(event);
    inst.unflushed.push(event);
    this.scheduleFlush(inst);
    if (!inst.inEpisode && this.shouldWake(inst, event)) this.scheduleEpisode(inst);
  }

  private shouldWake(inst: Instance, event: HistoryEvent): boolean {
    if (inst.meta.runtimeStatus === "Suspended") return false;
    const id = completionId(event);
    const success =
      event.EventType === EventType.TaskCompleted ||
      event.EventType === EventType.SubOrchestrationInstanceCompleted ||
      event.EventType === EventType.TimerFired;
    if (inst.waitAll && success && id !== undefined && inst.waitAll.has(id)) {
      inst.waitAll.delete(id);
      return inst.waitAll.size === 0;
    }
    return true;
  }

  private scheduleFlush(inst: Instance): void {
    if (inst.flushQueued) return;
    inst.flushQueued = true;
    void this.enqueue(inst, async () => {
      inst.flushQueued = false;
      if (inst.unflushed.length === 0 || inst.finished) return;
      const pending = inst.unflushed;
      inst.unflushed = [];
      inst.inboxSeq = await this.store.appendInbox(inst.meta.instanceId, inst.inboxSeq, pending);
      this.stats.flushes++;
    });
  }

  private scheduleEpisode(inst: Instance): void {
    if (inst.episodeQueued) return;
    inst.episodeQueued = true;
    void this.enqueue(inst, async () => {
      inst.episodeQueued = false;
      await this.runEpisode(inst);
    });
  }

  // ---- episodes -------------------------------------------------------------------------------

  private async runEpisode(inst: Instance): Promise<void> {
    const { meta } = inst;
    if (inst.finished || meta.runtimeStatus === "Suspended" || inst.inbox.length === 0) return;
    const fn = this.functions.get(meta.name);
    inst.inEpisode = true;
    this.stats.episodes++;
    const batch = inst.inbox;
    inst.inbox = [];
    inst.unflushed = [];
    const consumedFrom = meta.inboxConsumed + 1;
    meta.inboxConsumed = inst.inboxSeq;
    const now = new Date(this.clock.now());
    const newEvents: HistoryEvent[] = [newEvent(EventType.OrchestratorStarted), ...batch];
    for (const e of newEvents) e.IsPlayed = false;
    newEvents[0]!.Timestamp = now;

    let state: OrchestratorState | undefined;
    let failure: { message: string; details: string } | undefined;
    let executor: SdkExecutor | undefined;
    if (fn?.trigger.type !== "orchestrationTrigger") {
      failure = { message: `The orchestrator function '${meta.name}' is not registered.`, details: "" };
    } else {
      const trigger = {
        history: inst.history.concat(newEvents),
        input: parseJson(meta.input) ?? undefined,
        instanceId: meta.instanceId,
        isReplaying: inst.history.length > 0,
        parentInstanceId: meta.parentInstanceId,
        upperSchemaVersion: UPPER_SCHEMA_VERSION,
        upperSchemaVersionNew: UPPER_SCHEMA_VERSION,
        maximumShortTimerDuration: "6.00:00:00",
        longRunningTimerIntervalDuration: "3.00:00:00",
        defaultHttpAsyncRequestSleepTimeMillseconds: 30000,
      };
      if (meta.input === undefined) trigger.input = undefined;
      const context = this.invoker.context(fn) as unknown as {
        df?: { taskOrchestratorExecutor?: SdkExecutor };
      };
      try {
        const { result } = await this.invoker.invoke(fn, [trigger], { context: context as never });
        state = result as OrchestratorState;
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        const at = message.indexOf(OUT_OF_PROC_LABEL);
        if (at >= 0) {
          try {
            state = JSON.parse(message.slice(at + OUT_OF_PROC_LABEL.length)) as OrchestratorState;
          } catch {
            state = undefined;
          }
          // OrchestrationFailureError's own message is not the user's; the state carries it.
          failure = { message: state?.error ?? message.slice(0, at), details: (error as Error).stack ?? "" };
        } else {
          failure = { message, details: (error as Error)?.stack ?? message };
        }
      }
      // Orchestrator.handle leaves its executor on context.df: its open tasks carry the sequence
      // numbers the SDK gave them (including the retry timers it numbers itself).
      executor = context.df?.taskOrchestratorExecutor;
    }

    const appended: HistoryEvent[] = [];
    const dispatches: HistoryEvent[] = [];
    const immediateFailures: HistoryEvent[] = [];
    let completion:
      | { status: RuntimeStatus; output: string | undefined; failure?: typeof failure }
      | undefined;
    let continueAsNew: { input: string | undefined } | undefined;

    if (state?.customStatus !== undefined) meta.customStatus = JSON.stringify(state.customStatus);

    if (failure) {
      completion = {
        status: "Failed",
        output: JSON.stringify(`Orchestrator function '${meta.name}' failed: ${failure.message}`),
        failure,
      };
    } else if (state?.isDone) {
      const can = flattenActions(state.actions).find((a) => a.actionType === ActionType.ContinueAsNew);
      if (can) continueAsNew = { input: activityInputJson(can.input) };
      else
        completion = {
          status: "Completed",
          output: state.output === undefined ? undefined : JSON.stringify(state.output),
        };
    } else if (executor) {
      const fresh = Object.entries(executor.openTasks)
        .map(([key, task]) => [Number(key), task] as const)
        .filter(([id]) => Number.isInteger(id) && !inst.scheduled.has(id))
        .sort((a, b) => a[0] - b[0]);
      for (const [id, task] of fresh) {
        const scheduled = this.scheduleTask(inst, id, task, now);
        appended.push(scheduled.event);
        if (scheduled.failure) immediateFailures.push(scheduled.failure);
        else dispatches.push(scheduled.event);
      }
    }

    if (completion) {
      appended.push(
        newEvent(EventType.ExecutionCompleted, {
          OrchestrationStatus: completion.status,
          Result: completion.output,
          ...(completion.failure ? { FailureDetails: { ErrorMessage: completion.failure.message } } : {}),
        }),
      );
    } else if (continueAsNew) {
      appended.push(newEvent(EventType.ContinueAsNew, { Input: continueAsNew.input }));
    }
    appended.push(newEvent(EventType.OrchestratorCompleted));

    const allNew = newEvents.concat(appended);
    meta.lastUpdatedTime = new Date();
    if (meta.runtimeStatus === "Pending") meta.runtimeStatus = "Running";
    if (completion) {
      meta.runtimeStatus = completion.status;
      meta.output = completion.output;
    }

    if (continueAsNew) {
      await this.continueAsNew(inst, continueAsNew.input, allNew, consumedFrom);
      inst.inEpisode = false;
      return;
    }

    await this.store.commit(meta, allNew, consumedFrom);
    for (const e of allNew) {
      e.IsPlayed = true;
      inst.history.push(e);
      this.indexEvent(inst, e);
    }
    await this.store.writeProjection(meta);
    inst.inEpisode = false;

    if (completion) {
      if (completion.status === "Failed")
        this.log(`durable: ${meta.name} (${meta.instanceId}) failed: ${failure?.message}`);
      this.finish(inst);
      return;
    }
    for (const event of dispatches) this.dispatch(inst, event);
    for (const event of immediateFailures) this.deliver(meta.instanceId, event, meta.generation);

    inst.waitAll = computeWaitAll(executor);
    let wake = false;
    for (const event of inst.inbox) if (this.shouldWake(inst, event)) wake = true;
    if (wake) this.scheduleEpisode(inst);
  }

  /** Turns a newly opened SDK task into its history event (and maybe an immediate failure). */
  private scheduleTask(
    inst: Instance,
    id: number,
    task: SdkTask,
    now: Date,
  ): { event: HistoryEvent; failure?: HistoryEvent } {
    let action = task.action;
    // A NoOpTask whose parent is a RetryableTask: either the retry delay timer or the next attempt.
    if (typeof action === "string" && task.parent?.retryOptions) {
      const parent = task.parent;
      const options = parent.retryOptions!;
      if (parent.isWaitingOnTimer) {
        const attempt = parent.attemptNumber ?? 2;
        let delay = 0;
        if (attempt <= options.maxNumberOfAttempts) {
          const failures = attempt - 1;
          delay =
            options.firstRetryIntervalInMilliseconds * (options.backoffCoefficient ?? 1) ** (failures - 1);
          if (options.maxRetryIntervalInMilliseconds && options.maxRetryIntervalInMilliseconds > 0) {
            delay = Math.min(delay, options.maxRetryIntervalInMilliseconds);
          }
        }
        return {
          event: newEvent(
            EventType.TimerCreated,
            { FireAt: new Date(now.getTime() + delay).toISOString() },
            id,
          ),
        };
      }
      action = parent.innerTask?.actionObj ?? parent.innerTask?.action ?? action;
    }
    if (typeof action === "string") {
      return this.unsupported(id, `an internal task (${action})`);
    }
    switch (action.actionType) {
      case ActionType.CallActivity:
      case ActionType.CallActivityWithRetry: {
        const name = action.functionName!;
        const event = newEvent(
          EventType.TaskScheduled,
          { Name: name, Input: activityInputJson(action.input) },
          id,
        );
        const fn = this.functions.get(name);
        if (fn?.trigger.type !== "activityTrigger") {
          return {
            event,
            failure: newEvent(EventType.TaskFailed, {
              TaskScheduledId: id,
              Reason: `The function '${name}' doesn't exist, is disabled, or is not an activity function.`,
              Details: "",
            }),
          };
        }
        return { event };
      }
      case ActionType.CallSubOrchestrator:
      case ActionType.CallSubOrchestratorWithRetry: {
        const name = action.functionName!;
        // Each attempt of a retried sub-orchestration needs its own instance.
        const instanceId = action.instanceId || `${inst.meta.instanceId}:${id.toString(16).padStart(4, "0")}`;
        return {
          event: newEvent(
            EventType.SubOrchestrationInstanceCreated,
            {
              Name: name,
              InstanceId: instanceId,
              Input: action.input === undefined ? undefined : JSON.stringify(action.input),
            },
            id,
          ),
        };
      }
      case ActionType.CreateTimer: {
        const fireAt = action.fireAt instanceof Date ? action.fireAt : new Date(String(action.fireAt));
        return { event: newEvent(EventType.TimerCreated, { FireAt: fireAt.toISOString() }, id) };
      }
      case ActionType.CallHttp:
        return this.unsupported(id, "callHttp");
      case ActionType.CallEntity:
        return this.unsupported(id, "durable entities");
      default:
        return this.unsupported(id, `action type ${action.actionType}`);
    }
  }

  private unsupported(id: number, what: string): { event: HistoryEvent; failure: HistoryEvent } {
    return {
      event: newEvent(EventType.TaskScheduled, { Name: what }, id),
      failure: newEvent(EventType.TaskFailed, {
        TaskScheduledId: id,
        Reason: `The local host does not support ${what}.`,
        Details: "",
      }),
    };
  }

  private async continueAsNew(
    inst: Instance,
    input: string | undefined,
    finalEvents: HistoryEvent[],
    consumedFrom: number,
  ): Promise<void> {
    const { meta } = inst;
    const oldGeneration = meta.generation;
    void finalEvents;
    inst.timers.abort();
    inst.timers = new AbortController();
    meta.generation++;
    meta.executionId = randomUUID().replace(/-/g, "");
    meta.rowCount = 0;
    meta.input = input;
    meta.output = undefined;
    meta.runtimeStatus = "Running";
    meta.lastUpdatedTime = new Date();
    // Messages that arrived during the episode: only external events carry over.
    const carried = inst.inbox.filter((e) => e.EventType === EventType.EventRaised);
    const started = newEvent(EventType.ExecutionStarted, {
      Name: meta.name,
      Input: input,
      OrchestrationInstance: { InstanceId: meta.instanceId, ExecutionId: meta.executionId },
    });
    inst.history = [];
    inst.scheduled.clear();
    inst.completed.clear();
    inst.waitAll = undefined;
    inst.inbox = [started, ...carried];
    inst.unflushed = [];
    // Commit the new generation (empty history) and its first messages together with meta.
    inst.inboxSeq = await this.store.appendInbox(meta.instanceId, inst.inboxSeq, inst.inbox);
    await this.store.commit(meta, [], consumedFrom);
    await this.store.writeProjection(meta);
    this.store.deleteGenerationsBefore(meta.instanceId, meta.generation).catch(() => {});
    void oldGeneration;
    this.scheduleEpisode(inst);
  }

  // ---- work -----------------------------------------------------------------------------------

  private dispatch(inst: Instance, event: HistoryEvent): void {
    if (this.closed) return;
    const { meta } = inst;
    switch (event.EventType) {
      case EventType.TaskScheduled: {
        this.queue.push({
          instanceId: meta.instanceId,
          generation: meta.generation,
          taskId: event.EventId,
          name: event.Name as string,
          input: event.Input as string | undefined,
        });
        this.pump();
        break;
      }
      case EventType.TimerCreated:
        void this.fireTimer(inst, event);
        break;
      case EventType.SubOrchestrationInstanceCreated:
        void this.track(this.startSubOrchestration(inst, event));
        break;
    }
  }

  /** Delivers TimerFired once the clock reaches the timer's FireAt, unless its generation ended first. */
  private async fireTimer(inst: Instance, event: HistoryEvent): Promise<void> {
    const fireAt = new Date(event.FireAt as string).getTime();
    const { instanceId, generation } = inst.meta;
    const cancelled = inst.timers.signal;
    // Awaits at least once: a timer already due fires after the episode that set it is done.
    do {
      await this.clock.sleep(fireAt - this.clock.now(), cancelled);
    } while (!cancelled.aborted && this.clock.now() < fireAt);
    if (cancelled.aborted) return;
    this.deliver(
      instanceId,
      newEvent(EventType.TimerFired, { TimerId: event.EventId, FireAt: event.FireAt }),
      generation,
    );
  }

  private async startSubOrchestration(parent: Instance, event: HistoryEvent): Promise<void> {
    const childId = event.InstanceId as string;
    const parentId = parent.meta.instanceId;
    const generation = parent.meta.generation;
    const fail = (reason: string) =>
      this.deliver(
        parentId,
        newEvent(EventType.SubOrchestrationInstanceFailed, {
          TaskScheduledId: event.EventId,
          Reason: reason,
          Details: "",
        }),
        generation,
      );
    try {
      const record = this.active.get(childId)?.meta ?? (await this.store.readRecord(childId));
      if (record && record.parentInstanceId === parentId && record.parentTaskId === event.EventId) {
        // Already created before a restart: report its outcome if it has one.
        if (TERMINAL_STATUSES.has(record.runtimeStatus)) this.notifyParent(record);
        return;
      }
      await this.startNew(event.Name as string, {
        instanceId: childId,
        input: event.Input as string | undefined,
        parentInstanceId: parentId,
        parentTaskId: event.EventId,
      });
    } catch (error) {
      fail(error instanceof Error ? error.message : String(error));
    }
  }

  private pump(): void {
    while (
      !this.closed &&
      this.runningActivities < this.maxActivities &&
      this.queueHead < this.queue.length
    ) {
      const item = this.queue[this.queueHead]!;
      this.queue[this.queueHead] = undefined as unknown as WorkItem;
      this.queueHead++;
      if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
        this.queue.splice(0, this.queueHead);
        this.queueHead = 0;
      }
      this.runningActivities++;
      this.stats.maxConcurrentActivities = Math.max(
        this.stats.maxConcurrentActivities,
        this.runningActivities,
      );
      void this.track(this.runActivity(item));
    }
  }

  private async runActivity(item: WorkItem): Promise<void> {
    let event: HistoryEvent;
    try {
      const fn = this.functions.get(item.name);
      if (!fn) throw new Error(`The activity function '${item.name}' is not registered.`);
      const input = item.input === undefined ? undefined : JSON.parse(item.input);
      const { result } = await this.invoker.invoke(fn, [input]);
      event = newEvent(EventType.TaskCompleted, {
        TaskScheduledId: item.taskId,
        Result: result === undefined ? null : JSON.stringify(result),
      });
    } catch (error) {
      const { message, details, failureDetails } = errorDetails(error);
      event = newEvent(EventType.TaskFailed, {
        TaskScheduledId: item.taskId,
        Reason: `Activity function '${item.name}' failed: ${message}`,
        Details: details,
        ...(failureDetails ? { FailureDetails: failureDetails } : {}),
      });
    } finally {
      this.runningActivities--;
      this.stats.activities++;
    }
    this.deliver(item.instanceId, event, item.generation);
    this.pump();
  }

  // ---- completion -----------------------------------------------------------------------------

  private finish(inst: Instance): void {
    inst.finished = true;
    inst.timers.abort();
    this.active.delete(inst.meta.instanceId);
    this.notifyParent(inst.meta);
    const waiters = this.waiters.get(inst.meta.instanceId);
    if (waiters) {
      this.waiters.delete(inst.meta.instanceId);
      for (const resolve of waiters) resolve(inst.meta);
    }
  }

  private notifyParent(record: InstanceRecord): void {
    if (!record.parentInstanceId || record.parentTaskId === undefined) return;
    const parentId = record.parentInstanceId;
    const taskId = record.parentTaskId;
    const event =
      record.runtimeStatus === "Completed"
        ? newEvent(EventType.SubOrchestrationInstanceCompleted, {
            TaskScheduledId: taskId,
            Result: record.output ?? null,
          })
        : newEvent(EventType.SubOrchestrationInstanceFailed, {
            TaskScheduledId: taskId,
            Reason: `Sub-orchestration '${record.name}' (${record.instanceId}) ${record.runtimeStatus === "Terminated" ? "was terminated" : "failed"}: ${String(parseJson(record.output))}`,
            Details: "",
          });
    void this.track(
      (async () => {
        const parent = await this.getInstance(parentId);
        if (parent) this.deliver(parentId, event);
      })(),
    );
  }

  // ---- management -----------------------------------------------------------------------------

  private async requireActive(instanceId: string): Promise<Instance> {
    const inst = await this.getInstance(instanceId);
    if (inst && !inst.finished) return inst;
    const record = await this.store.readRecord(instanceId);
    if (!record) throw new HttpError(404, `No instance with ID '${instanceId}' found.`);
    throw new HttpError(410, `The instance '${instanceId}' is ${record.runtimeStatus}.`);
  }

  async raiseEvent(instanceId: string, eventName: string, data: string | undefined): Promise<void> {
    const inst = await this.requireActive(instanceId);
    this.deliver(inst.meta.instanceId, newEvent(EventType.EventRaised, { Name: eventName, Input: data }));
  }

  async terminate(instanceId: string, reason: string): Promise<void> {
    const inst = await this.requireActive(instanceId);
    await this.enqueue(inst, async () => {
      if (inst.finished) return;
      const { meta } = inst;
      const consumedFrom = meta.inboxConsumed + 1;
      meta.inboxConsumed = inst.inboxSeq;
      inst.inbox = [];
      inst.unflushed = [];
      meta.runtimeStatus = "Terminated";
      meta.output = JSON.stringify(reason);
      meta.lastUpdatedTime = new Date();
      const event = newEvent(EventType.ExecutionTerminated, {
        Input: JSON.stringify(reason),
        IsPlayed: true,
      });
      await this.store.commit(meta, [event], consumedFrom);
      inst.history.push(event);
      await this.store.writeProjection(meta);
      this.finish(inst);
    });
  }

  async suspend(instanceId: string, reason: string): Promise<void> {
    const inst = await this.requireActive(instanceId);
    await this.enqueue(inst, async () => {
      if (inst.finished || inst.meta.runtimeStatus === "Suspended") return;
      await this.markSuspension(inst, "Suspended", EventType.ExecutionSuspended, reason);
    });
  }

  async resume(instanceId: string, reason: string): Promise<void> {
    const inst = await this.requireActive(instanceId);
    await this.enqueue(inst, async () => {
      if (inst.finished || inst.meta.runtimeStatus !== "Suspended") return;
      const started = inst.history.some((e) => e.EventType === EventType.ExecutionStarted);
      await this.markSuspension(inst, started ? "Running" : "Pending", EventType.ExecutionResumed, reason);
      if (inst.inbox.length > 0) this.scheduleEpisode(inst);
    });
  }

  private async markSuspension(
    inst: Instance,
    status: RuntimeStatus,
    type: number,
    reason: string,
  ): Promise<void> {
    const { meta } = inst;
    meta.runtimeStatus = status;
    meta.lastUpdatedTime = new Date();
    const event = newEvent(type, { Reason: reason, IsPlayed: true });
    // History written between episodes; the SDK ignores these event types on replay.
    await this.store.commit(meta, [event], meta.inboxConsumed + 1);
    inst.history.push(event);
    await this.store.writeProjection(meta);
  }

  async purge(instanceId: string): Promise<number> {
    if (this.active.has(instanceId)) return 0;
    const record = await this.store.readRecord(instanceId);
    if (!record) throw new HttpError(404, `No instance with ID '${instanceId}' found.`);
    if (!TERMINAL_STATUSES.has(record.runtimeStatus)) return 0;
    await this.store.purge(instanceId);
    return 1;
  }

  async purgeBy(query: InstanceQuery): Promise<number> {
    let count = 0;
    for (const record of await this.store.queryRecords(query)) {
      if (!TERMINAL_STATUSES.has(record.runtimeStatus) || this.active.has(record.instanceId)) continue;
      await this.store.purge(record.instanceId);
      count++;
    }
    return count;
  }

  // ---- queries --------------------------------------------------------------------------------

  async getRecord(instanceId: string): Promise<InstanceRecord | undefined> {
    return this.active.get(instanceId)?.meta ?? (await this.store.readRecord(instanceId));
  }

  async getStatus(instanceId: string, options: StatusOptions = {}): Promise<OrchestrationStatus | undefined> {
    const inst = this.active.get(instanceId);
    const record = inst?.meta ?? (await this.store.readRecord(instanceId));
    if (!record) return undefined;
    const status = toStatus(record, options);
    if (options.showHistory) {
      const history = inst ? inst.history : ((await this.store.load(instanceId))?.history ?? []);
      const events = formatHistory(history, record, options.showHistoryOutput === true);
      status.history = events;
      status.historyEvents = events;
    }
    return status;
  }

  async list(query: InstanceQuery, options: StatusOptions = {}): Promise<OrchestrationStatus[]> {
    const records = await this.store.queryRecords(query);
    return records
      .map((r) => this.active.get(r.instanceId)?.meta ?? r)
      .filter((r) => !query.runtimeStatus || query.runtimeStatus.includes(r.runtimeStatus))
      .sort((a, b) => a.createdTime.getTime() - b.createdTime.getTime())
      .map((r) => toStatus(r, options));
  }

  /** Resolves with the final record once the instance is Completed, Failed or Terminated. */
  async waitForInstance(instanceId: string, timeoutMs = 30_000): Promise<InstanceRecord> {
    const current = await this.getRecord(instanceId);
    if (current && TERMINAL_STATUSES.has(current.runtimeStatus) && !this.active.has(instanceId))
      return current;
    return new Promise((resolve, reject) => {
      const set = this.waiters.get(instanceId) ?? new Set();
      this.waiters.set(instanceId, set);
      const done = (record: InstanceRecord) => {
        clearTimeout(timer);
        resolve(record);
      };
      const timer = setTimeout(() => {
        set.delete(done);
        reject(
          new Error(
            `Instance ${instanceId} did not finish within ${timeoutMs} ms (status ${this.active.get(instanceId)?.meta.runtimeStatus ?? current?.runtimeStatus ?? "unknown"})`,
          ),
        );
      }, timeoutMs);
      set.add(done);
    });
  }

  isOrchestrator(name: string): boolean {
    return this.functions.get(name)?.trigger.type === "orchestrationTrigger";
  }
}

function computeWaitAll(executor: SdkExecutor | undefined): Set<number> | undefined {
  const current = executor?.currentTask;
  if (current?.constructor?.name !== "WhenAllTask" || !Array.isArray(current.children)) return undefined;
  const pending = new Set<number>();
  for (const child of current.children) {
    if (typeof child.id !== "number" || Array.isArray(child.children)) return undefined;
    if (child.state === 0) pending.add(child.id);
  }
  return pending.size > 0 ? pending : undefined;
}

function flattenActions(actions: SdkAction[][] | undefined): SdkAction[] {
  const out: SdkAction[] = [];
  const visit = (a: SdkAction) => {
    if (a.compoundActions) for (const c of a.compoundActions) visit(c);
    else out.push(a);
  };
  for (const list of actions ?? []) for (const a of list) visit(a);
  return out;
}

function iso(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

function toStatus(record: InstanceRecord, options: StatusOptions): OrchestrationStatus {
  return {
    name: record.name,
    instanceId: record.instanceId,
    runtimeStatus: record.runtimeStatus,
    input: options.showInput === false ? null : parseJson(record.input),
    customStatus: parseJson(record.customStatus),
    output: parseJson(record.output),
    createdTime: iso(record.createdTime),
    lastUpdatedTime: iso(record.lastUpdatedTime),
  };
}

/** History as the Durable HTTP API shows it: scheduling merged into completions, names as text. */
function formatHistory(
  history: HistoryEvent[],
  record: InstanceRecord,
  withOutput: boolean,
): Record<string, unknown>[] {
  const scheduled = new Map<number, HistoryEvent>();
  const out: Record<string, unknown>[] = [];
  for (const event of history) {
    const type = event.EventType;
    const base: Record<string, unknown> = {
      EventType: EVENT_NAMES[type] ?? String(type),
      Timestamp: event.Timestamp,
    };
    switch (type) {
      case EventType.OrchestratorStarted:
      case EventType.OrchestratorCompleted:
        break;
      case EventType.TaskScheduled:
      case EventType.SubOrchestrationInstanceCreated:
      case EventType.TimerCreated:
        scheduled.set(event.EventId, event);
        if (type === EventType.TimerCreated)
          out.push({ ...base, FireAt: event.FireAt, EventId: event.EventId });
        break;
      case EventType.ExecutionStarted:
        out.push({
          ...base,
          FunctionName: record.name,
          ...(withOutput ? { Input: parseJson(event.Input as string) } : {}),
        });
        break;
      case EventType.TaskCompleted:
      case EventType.TaskFailed:
      case EventType.SubOrchestrationInstanceCompleted:
      case EventType.SubOrchestrationInstanceFailed: {
        const id = event.TaskScheduledId as number;
        const source = scheduled.get(id);
        const entry: Record<string, unknown> = {
          ...base,
          EventId: id,
          FunctionName: source?.Name,
          ScheduledTime: source?.Timestamp,
        };
        if (source?.InstanceId) entry.InstanceId = source.InstanceId;
        if (type === EventType.TaskFailed || type === EventType.SubOrchestrationInstanceFailed) {
          entry.Reason = event.Reason;
          entry.Details = event.Details;
        } else if (withOutput) entry.Result = parseJson(event.Result as string);
        out.push(entry);
        break;
      }
      case EventType.TimerFired:
        out.push({ ...base, TimerId: event.TimerId, FireAt: event.FireAt });
        break;
      case EventType.EventRaised:
        out.push({
          ...base,
          Name: event.Name,
          ...(withOutput ? { Input: parseJson(event.Input as string) } : {}),
        });
        break;
      case EventType.ExecutionCompleted:
        out.push({
          ...base,
          OrchestrationStatus: event.OrchestrationStatus,
          ...(withOutput ? { Result: parseJson(event.Result as string) } : {}),
        });
        break;
      case EventType.ExecutionTerminated:
        out.push({ ...base, Input: parseJson(event.Input as string) });
        break;
      default:
        out.push({ ...base, ...(event.Reason !== undefined ? { Reason: event.Reason } : {}) });
    }
  }
  return out;
}

import Module from "node:module";

/**
 * Stand-in for `@azure/functions-core`, the module the Node worker normally provides to the app.
 * `@azure/functions` looks it up lazily (CommonJS `require`, even when the app is ESM) on the first
 * `app.*` call, so the hook must be installed before the app loads. Registrations are captured in
 * process-wide state: one host per process.
 */

export interface BindingMetadata {
  type: string;
  direction?: "in" | "out" | "inout";
  name?: string;
  [key: string]: unknown;
}

export type FunctionCallback = (...args: unknown[]) => unknown;

export interface CapturedFunction {
  name: string;
  bindings: Record<string, BindingMetadata>;
  /** The trigger binding, with its binding name filled in. */
  trigger: BindingMetadata & { name: string };
  retryOptions?: unknown;
  callback: FunctionCallback;
}

export type HookName = "appStart" | "appTerminate" | "preInvocation" | "postInvocation" | "log";
type HookCallback = (coreContext: Record<string, unknown>) => unknown;

interface CoreState {
  installed: boolean;
  functions: Map<string, CapturedFunction>;
  hooks: Map<HookName, HookCallback[]>;
  programmingModel: unknown;
  log: (level: string, category: string, message: string) => void;
}

const STATE_KEY = Symbol.for("arcgis-org-backup.local-host.core");
const globalState = globalThis as unknown as Record<symbol, CoreState | undefined>;

export function coreState(): CoreState {
  let state = globalState[STATE_KEY];
  if (!state) {
    state = {
      installed: false,
      functions: new Map(),
      hooks: new Map(),
      programmingModel: undefined,
      log: () => {},
    };
    globalState[STATE_KEY] = state;
  }
  return state;
}

class Disposable {
  #dispose: () => void;
  constructor(dispose: () => void) {
    this.#dispose = dispose;
  }
  dispose(): void {
    this.#dispose();
  }
}

function createCoreApi(state: CoreState) {
  return {
    version: "local-host",
    hostVersion: "4.1000.0",
    setProgrammingModel(model: unknown) {
      state.programmingModel = model;
    },
    getProgrammingModel() {
      return state.programmingModel;
    },
    registerFunction(
      metadata: { name: string; bindings: Record<string, BindingMetadata>; retryOptions?: unknown },
      callback: FunctionCallback,
    ) {
      if (state.functions.has(metadata.name)) {
        throw new Error(`A function named "${metadata.name}" is already registered.`);
      }
      const entry = Object.entries(metadata.bindings).find(([, b]) => /trigger$/i.test(b.type));
      if (!entry) throw new Error(`Function "${metadata.name}" has no trigger binding.`);
      const captured: CapturedFunction = {
        name: metadata.name,
        bindings: metadata.bindings,
        trigger: { ...entry[1], name: entry[0] },
        retryOptions: metadata.retryOptions,
        callback,
      };
      state.functions.set(metadata.name, captured);
      return new Disposable(() => state.functions.delete(metadata.name));
    },
    registerHook(hookName: HookName, callback: HookCallback) {
      const list = state.hooks.get(hookName) ?? [];
      list.push(callback);
      state.hooks.set(hookName, list);
      return new Disposable(() => {
        const index = list.indexOf(callback);
        if (index >= 0) list.splice(index, 1);
      });
    },
    log(level: string, category: string, message: string) {
      state.log(level, category, message);
    },
  };
}

export const CORE_MODULE_NAME = "@azure/functions-core";

/** Makes `require("@azure/functions-core")` return the local host's implementation. Idempotent. */
export function installCoreApi(): CoreState {
  const state = coreState();
  if (state.installed) return state;
  const api = createCoreApi(state);
  const moduleWithLoad = Module as unknown as {
    _load: (request: string, parent: unknown, isMain: boolean) => unknown;
  };
  const originalLoad = moduleWithLoad._load;
  moduleWithLoad._load = function load(request: string, parent: unknown, isMain: boolean) {
    if (request === CORE_MODULE_NAME) return api;
    return originalLoad.call(this, request, parent, isMain);
  };
  state.installed = true;
  return state;
}

export async function runHooks(name: HookName, coreContext: Record<string, unknown>): Promise<void> {
  for (const hook of coreState().hooks.get(name) ?? []) await hook(coreContext);
}

export function hasHooks(name: HookName): boolean {
  return (coreState().hooks.get(name)?.length ?? 0) > 0;
}

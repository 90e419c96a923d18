import { randomUUID } from "node:crypto";
import { createRequire } from "node:module";
import path from "node:path";
import { format } from "node:util";
import type * as AzureFunctions from "@azure/functions";
import { type CapturedFunction, coreState, hasHooks, runHooks } from "./core-api.js";

export type FunctionsLibrary = typeof AzureFunctions;

/** The app's own copy of `@azure/functions`, so that `instanceof HttpResponse` holds in the app. */
export function loadFunctionsLibrary(appRoot: string): FunctionsLibrary {
  const require = createRequire(path.join(appRoot, "package.json"));
  return require("@azure/functions") as FunctionsLibrary;
}

export interface InvokeOptions {
  extraInputs?: Record<string, unknown>;
  triggerMetadata?: Record<string, unknown>;
  invocationId?: string;
  /** A context made beforehand with `context()`, when the caller needs it afterwards. */
  context?: AzureFunctions.InvocationContext;
}

export interface Invocation {
  result: unknown;
  context: AzureFunctions.InvocationContext;
}

/** Calls registered callbacks the way the worker does: InvocationContext, hooks, then the handler. */
export class Invoker {
  private readonly appHookData: Record<string, unknown> = {};

  constructor(
    readonly lib: FunctionsLibrary,
    private readonly log: (line: string) => void,
  ) {}

  context(fn: CapturedFunction, options: InvokeOptions = {}): AzureFunctions.InvocationContext {
    let trigger: AzureFunctions.FunctionTrigger | undefined;
    let returnBinding: AzureFunctions.FunctionOutput | undefined;
    const extraInputs: AzureFunctions.FunctionInput[] = [];
    const extraOutputs: AzureFunctions.FunctionOutput[] = [];
    for (const [name, binding] of Object.entries(fn.bindings)) {
      const withName = { ...binding, name } as AzureFunctions.FunctionTrigger;
      if (/trigger$/i.test(binding.type)) trigger = withName;
      else if (name === "$return") returnBinding = withName;
      else if (binding.direction === "in") extraInputs.push(withName);
      else if (binding.direction === "out") extraOutputs.push(withName);
    }
    const init: AzureFunctions.InvocationContextInit = {
      invocationId: options.invocationId ?? randomUUID(),
      functionName: fn.name,
      logHandler: (level, ...args) =>
        this.log(`[${fn.name}] ${level === "information" ? "" : `${level}: `}${format(...args)}`),
      options: {
        trigger: trigger!,
        extraInputs,
        extraOutputs,
        ...(returnBinding ? { return: returnBinding } : {}),
      },
    };
    if (options.triggerMetadata) init.triggerMetadata = options.triggerMetadata;
    const context = new this.lib.InvocationContext(init);
    for (const [name, value] of Object.entries(options.extraInputs ?? {}))
      context.extraInputs.set(name, value);
    return context;
  }

  async invoke(fn: CapturedFunction, inputs: unknown[], options: InvokeOptions = {}): Promise<Invocation> {
    const context = options.context ?? this.context(fn, options);
    let callback = fn.callback;
    let args = inputs;
    const hookData: Record<string, unknown> = {};
    if (hasHooks("preInvocation")) {
      const pre: Record<string, unknown> = {
        invocationContext: context,
        inputs: args,
        functionCallback: callback,
        hookData,
        appHookData: this.appHookData,
      };
      await runHooks("preInvocation", pre);
      callback = pre.functionCallback as typeof callback;
      args = pre.inputs as unknown[];
    }
    let result: unknown;
    let error: unknown;
    try {
      result = await callback(...args, context);
    } catch (err) {
      error = err;
    }
    if (hasHooks("postInvocation")) {
      const post: Record<string, unknown> = {
        invocationContext: context,
        inputs: args,
        result,
        error,
        hookData,
        appHookData: this.appHookData,
      };
      await runHooks("postInvocation", post);
      result = post.result;
      error = post.error;
    }
    if (error !== undefined) throw error;
    return { result, context };
  }

  async appHook(name: "appStart" | "appTerminate"): Promise<void> {
    await runHooks(name, { hookData: {}, appHookData: this.appHookData });
  }
}

export function capturedFunctions(): Map<string, CapturedFunction> {
  return coreState().functions;
}

import { type DurableEngine, HttpError, type StatusOptions } from "./engine.js";
import type { InstanceQuery, RuntimeStatus } from "./store.js";

/** The Durable Functions HTTP API (webhook and `rpcBaseUrl` routes share one implementation). */

export const DURABLE_PREFIX = "/runtime/webhooks/durabletask";

export interface ApiResponse {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

export interface DurableClientData {
  taskHubName: string;
  creationUrls: Record<string, string>;
  managementUrls: Record<string, string>;
  baseUrl: string;
  requiredQueryStringParameters: string;
  rpcBaseUrl: string;
}

export class DurableApi {
  constructor(
    private readonly engine: DurableEngine,
    private readonly taskHub: string,
    private readonly origin: () => string,
  ) {}

  private get base(): string {
    return `${this.origin()}${DURABLE_PREFIX}`;
  }

  private get query(): string {
    return `taskHub=${encodeURIComponent(this.taskHub)}&connection=Storage`;
  }

  /** The `durableClient` input binding value, as the Durable extension passes it to the worker. */
  clientData(): DurableClientData {
    const base = this.base;
    const qs = this.query;
    return {
      taskHubName: this.taskHub,
      creationUrls: {
        createNewInstancePostUri: `${base}/orchestrators/{functionName}[/{instanceId}]?${qs}`,
        createAndWaitOnNewInstancePostUri: `${base}/orchestrators/{functionName}[/{instanceId}]?timeout={timeoutInSeconds}&pollingInterval={intervalInSeconds}&${qs}`,
      },
      managementUrls: this.managementUrls("INSTANCEID"),
      baseUrl: base,
      requiredQueryStringParameters: qs,
      rpcBaseUrl: `${base}/`,
    };
  }

  managementUrls(id: string): Record<string, string> {
    const base = `${this.base}/instances/${encodeURIComponent(id)}`;
    const qs = this.query;
    return {
      id,
      statusQueryGetUri: `${base}?${qs}`,
      sendEventPostUri: `${base}/raiseEvent/{eventName}?${qs}`,
      terminatePostUri: `${base}/terminate?reason={text}&${qs}`,
      rewindPostUri: `${base}/rewind?reason={text}&${qs}`,
      purgeHistoryDeleteUri: `${base}?${qs}`,
      restartPostUri: `${base}/restart?${qs}`,
      suspendPostUri: `${base}/suspend?reason={text}&${qs}`,
      resumePostUri: `${base}/resume?reason={text}&${qs}`,
    };
  }

  /** `segments` are the decoded path segments after the durabletask prefix. */
  async handle(
    method: string,
    segments: string[],
    query: URLSearchParams,
    body: string,
  ): Promise<ApiResponse> {
    try {
      return await this.route(method, segments, query, body);
    } catch (error) {
      if (error instanceof HttpError) return { status: error.status, body: { message: error.message } };
      throw error;
    }
  }

  private async route(
    method: string,
    segments: string[],
    query: URLSearchParams,
    body: string,
  ): Promise<ApiResponse> {
    const [head, id, action, arg] = segments;
    if (head === "orchestrators" && id && method === "POST" && segments.length <= 3) {
      return this.start(id, action, query, body);
    }
    if (head === "instances") {
      if (!id) {
        if (method === "GET") return this.list(query);
        if (method === "DELETE") return this.purgeBy(query);
      } else if (!action) {
        if (method === "GET") return this.status(id, query);
        if (method === "DELETE") {
          const deleted = await this.engine.purge(id);
          return { status: 200, body: { instancesDeleted: deleted } };
        }
      } else if (method === "POST") {
        const reason = query.get("reason") ?? "";
        switch (action) {
          case "terminate":
            await this.engine.terminate(id, reason);
            return { status: 202 };
          case "suspend":
            await this.engine.suspend(id, reason);
            return { status: 202 };
          case "resume":
            await this.engine.resume(id, reason);
            return { status: 202 };
          case "raiseEvent":
            if (!arg) return { status: 400, body: { message: "An event name is required." } };
            await this.engine.raiseEvent(id, arg, body === "" ? undefined : jsonText(body));
            return { status: 202 };
          case "rewind":
          case "restart":
            return { status: 501, body: { message: `${action} is not supported by the local host.` } };
        }
      }
    }
    if (head === "entities")
      return { status: 501, body: { message: "Durable entities are not supported by the local host." } };
    return { status: 404, body: { message: "Not found" } };
  }

  private async start(
    name: string,
    instanceId: string | undefined,
    query: URLSearchParams,
    body: string,
  ): Promise<ApiResponse> {
    const options: { instanceId?: string; input?: string } = {};
    if (instanceId) options.instanceId = instanceId;
    if (body !== "") options.input = jsonText(body);
    const id = await this.engine.startNew(name, options);
    const urls = this.managementUrls(id);
    const timeout = Number(query.get("timeout") ?? "");
    if (Number.isFinite(timeout) && timeout > 0) {
      const record = await this.engine.waitForInstance(id, timeout * 1000).catch(() => undefined);
      if (record?.runtimeStatus === "Completed") {
        return { status: 200, body: record.output === undefined ? null : JSON.parse(record.output) };
      }
    }
    return {
      status: 202,
      body: urls,
      headers: { Location: urls.statusQueryGetUri!, "Retry-After": "10" },
    };
  }

  private async status(id: string, query: URLSearchParams): Promise<ApiResponse> {
    const options: StatusOptions = {
      showHistory: query.get("showHistory") === "true",
      showHistoryOutput: query.get("showHistoryOutput") === "true",
      showInput: query.get("showInput") !== "false",
    };
    const status = await this.engine.getStatus(id, options);
    if (!status) return { status: 404, body: { message: `No instance with ID '${id}' found.` } };
    const running = ["Pending", "Running", "ContinuedAsNew", "Suspended"].includes(status.runtimeStatus);
    return {
      status: running ? 202 : 200,
      body: status,
      headers: running ? { Location: this.managementUrls(id).statusQueryGetUri!, "Retry-After": "10" } : {},
    };
  }

  private async list(query: URLSearchParams): Promise<ApiResponse> {
    const all = await this.engine.list(parseFilter(query), { showInput: query.get("showInput") === "true" });
    const top = Number(query.get("top") ?? "");
    const start = Number(query.get("continuationToken") ?? "0") || 0;
    if (Number.isFinite(top) && top > 0 && start + top < all.length) {
      return {
        status: 200,
        body: all.slice(start, start + top),
        headers: { "x-ms-continuation-token": String(start + top) },
      };
    }
    return { status: 200, body: Number.isFinite(top) && top > 0 ? all.slice(start) : all };
  }

  private async purgeBy(query: URLSearchParams): Promise<ApiResponse> {
    const deleted = await this.engine.purgeBy(parseFilter(query));
    return deleted > 0 ? { status: 200, body: { instancesDeleted: deleted } } : { status: 404 };
  }
}

function jsonText(body: string): string {
  try {
    JSON.parse(body);
    return body;
  } catch {
    return JSON.stringify(body);
  }
}

function parseFilter(query: URLSearchParams): InstanceQuery {
  const filter: InstanceQuery = {};
  const from = query.get("createdTimeFrom");
  const to = query.get("createdTimeTo");
  if (from) filter.createdTimeFrom = new Date(from);
  if (to) filter.createdTimeTo = new Date(to);
  const statuses = query.get("runtimeStatus");
  if (statuses) filter.runtimeStatus = statuses.split(",").map((s) => s.trim()) as RuntimeStatus[];
  const prefix = query.get("instanceIdPrefix");
  if (prefix) filter.instanceIdPrefix = prefix;
  return filter;
}

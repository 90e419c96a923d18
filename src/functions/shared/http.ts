import type { Readable } from "node:stream";
import type { HttpRequest, HttpResponseInit, InvocationContext } from "@azure/functions";
import { AppError, MethodNotAllowedError, PayloadTooLargeError, ValidationError } from "../../core/errors.js";
import { createLogger, formatLine, type Logger } from "../../core/log.js";

export const MAX_BODY_BYTES = 1024 * 1024;

/** Reads a JSON body with a size limit: 413 when larger, 400 when it is not JSON. */
export async function readJsonBody(
  request: HttpRequest,
  options: { optional?: boolean; limitBytes?: number } = {},
): Promise<unknown> {
  const limitBytes = options.limitBytes ?? MAX_BODY_BYTES;
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > limitBytes) throw new PayloadTooLargeError(limitBytes);
  const chunks: Buffer[] = [];
  let size = 0;
  if (request.body) {
    for await (const chunk of request.body as AsyncIterable<Uint8Array>) {
      size += chunk.byteLength;
      if (size > limitBytes) throw new PayloadTooLargeError(limitBytes);
      chunks.push(Buffer.from(chunk));
    }
  }
  const text = Buffer.concat(chunks).toString("utf8");
  if (text.trim() === "") {
    if (options.optional) return undefined;
    throw new ValidationError("Request body is required (JSON)");
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new ValidationError("Request body is not valid JSON");
  }
}

export function json(status: number, body: unknown, headers: Record<string, string> = {}): HttpResponseInit {
  return {
    status,
    jsonBody: body,
    headers: { "content-type": "application/json; charset=utf-8", ...headers },
  };
}

/** A stored JSON document, streamed through as it is read (never held in memory whole). */
export function jsonStream(document: { body: Readable; size: number }): HttpResponseInit {
  return {
    status: 200,
    body: document.body,
    headers: { "content-type": "application/json; charset=utf-8", "content-length": String(document.size) },
  };
}

/** A typed error becomes its status and `{ error: { code, message, field } }`; anything else a 500. */
export function errorResponse(error: unknown, log: Logger): HttpResponseInit {
  if (error instanceof AppError && error.status < 500) {
    const headers: Record<string, string> =
      error instanceof MethodNotAllowedError ? { allow: error.allowed.join(", ") } : {};
    return json(
      error.status,
      { error: { code: error.code, message: error.message, ...(error.field ? { field: error.field } : {}) } },
      headers,
    );
  }
  if (error instanceof AppError) {
    log.error(error.message, { errorCode: error.code });
    return json(error.status, { error: { code: error.code, message: error.message } });
  }
  log.error(`Unhandled error: ${error instanceof Error ? error.message : String(error)}`, {
    errorCode: "ERR_INTERNAL",
  });
  return json(500, { error: { code: "ERR_INTERNAL", message: "Internal error; see the logs" } });
}

/** Log lines of a trigger go to the invocation's log, one JSON object each (as core lines). */
export function contextLogger(context: InvocationContext): Logger {
  return createLogger(
    (level, message, properties) => {
      const line = formatLine(level, message, properties);
      if (level === "error") context.error(line);
      else if (level === "warn") context.warn(line);
      else context.log(line);
    },
    { invocationId: context.invocationId },
  );
}

type Handler = (request: HttpRequest, context: InvocationContext, log: Logger) => Promise<HttpResponseInit>;

/** Wraps a trigger body: typed errors become responses, nothing leaks a stack or a secret. */
export function httpHandler(handler: Handler) {
  return async (request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> => {
    const log = contextLogger(context);
    try {
      return await handler(request, context, log);
    } catch (error) {
      return errorResponse(error, log);
    }
  };
}

/** The app's public base URL: the setting, else the URL the request came in on. */
export function baseUrlOf(request: HttpRequest, configured: string | undefined): string {
  if (configured) return configured;
  const url = new URL(request.url);
  return url.origin;
}

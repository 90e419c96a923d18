/**
 * One error base for the domain: a stable machine `code`, the HTTP status a trigger should
 * answer, and the optional field the error is about. Heavy context (responses, causes) stays
 * non-enumerable so logging an error never dumps it.
 */
export class AppError extends Error {
  readonly code: string;
  readonly status: number;
  readonly field: string | undefined;

  constructor(message: string, options: { code: string; status: number; field?: string; cause?: unknown }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = options.code;
    this.status = options.status;
    this.field = options.field;
    Object.defineProperty(this, "cause", { enumerable: false, value: options.cause, writable: true });
  }
}

export class ValidationError extends AppError {
  constructor(message: string, field?: string) {
    super(message, { code: "ERR_VALIDATION", status: 400, ...(field ? { field } : {}) });
  }
}

export class PayloadTooLargeError extends AppError {
  constructor(limitBytes: number) {
    super(`Request body is larger than ${limitBytes} bytes`, { code: "ERR_PAYLOAD_TOO_LARGE", status: 413 });
  }
}

export class NotFoundError extends AppError {
  constructor(message: string, code = "ERR_NOT_FOUND") {
    super(message, { code, status: 404 });
  }
}

/** A path the app serves, asked with a method it does not take: 405 with the `Allow`ed ones. */
export class MethodNotAllowedError extends AppError {
  readonly allowed: string[];

  constructor(method: string, path: string, allowed: string[]) {
    super(`${method} is not allowed on ${path}; allowed: ${allowed.join(", ")}`, {
      code: "ERR_METHOD_NOT_ALLOWED",
      status: 405,
    });
    this.allowed = allowed;
  }
}

export class ConflictError extends AppError {
  constructor(message: string, code = "ERR_CONFLICT") {
    super(message, { code, status: 409 });
  }
}

export class PreconditionFailedError extends AppError {
  constructor(message: string) {
    super(message, { code: "ERR_PRECONDITION_FAILED", status: 412 });
  }
}

export class ConfigurationError extends AppError {
  constructor(message: string, setting: string) {
    super(message, { code: "ERR_CONFIGURATION", status: 500, field: setting });
  }
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

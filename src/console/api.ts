import { failureBox, h, replace } from "./dom.js";

// The console's calls to the app's API: `api/<path>` relative to the page (/api/console/), which
// the app answers with the same handlers as /api/<path>. The browser sends the App Service
// Authentication session cookie itself; the page never holds a key or a token.

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

export function apiUrl(path: string): string {
  return new URL(`api/${path}`, document.baseURI).href;
}

export interface ApiAnswer<T> {
  status: number;
  data: T;
  headers: Headers;
}

export async function api<T>(
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<ApiAnswer<T>> {
  const response = await fetch(apiUrl(path), {
    method,
    headers: {
      accept: "application/json",
      ...(body === undefined ? {} : { "content-type": "application/json" }),
      ...headers,
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    credentials: "same-origin",
  });
  const text = await response.text();
  const data = text ? (JSON.parse(text) as unknown) : undefined;
  if (!response.ok) throw toError(response.status, data);
  return { status: response.status, data: data as T, headers: response.headers };
}

function toError(status: number, data: unknown): ApiError {
  const error = (data as { error?: { code?: string; message?: string; field?: string; signIn?: string } })
    ?.error;
  if (status === 401 && error?.signIn) {
    const back = `${location.pathname}${location.hash}`;
    location.assign(`${error.signIn}?post_login_redirect_uri=${encodeURIComponent(back)}`);
  }
  return new ApiError(
    status,
    error?.code ?? `HTTP_${status}`,
    error?.message ?? `The API answered ${status}`,
    error?.field,
  );
}

/** The API's error as the page shows it: its message, its code, and the field it names. */
export function showError(box: Element, error: unknown, form?: Element, fieldPrefix = ""): void {
  for (const marked of form?.querySelectorAll(".invalid") ?? []) marked.classList.remove("invalid");
  if (!(error instanceof ApiError)) {
    replace(box, h("div", { class: "outcome error" }, String((error as Error)?.message ?? error)));
    return;
  }
  const field = error.field ? `${fieldPrefix}${error.field}` : undefined;
  replace(box, failureBox(error.message, error.code, field ? ` · field ${field}` : ""));
  if (!field || !form) return;
  const input = [...form.querySelectorAll<HTMLElement>("[data-field]")].find(
    (element) => element.dataset.field === field || field.startsWith(`${element.dataset.field}.`),
  );
  input?.classList.add("invalid");
  input?.focus();
}

/**
 * A run's manifest without its items: the header (totals, failures) is written first and the
 * items after it, so the stream is read only up to `"items"` — a manifest of 100,000 items is not
 * downloaded to show its failures.
 */
export async function manifestHeader<T>(runId: string): Promise<T> {
  const response = await fetch(apiUrl(`backups/${encodeURIComponent(runId)}/manifest`), {
    credentials: "same-origin",
  });
  if (!response.ok || !response.body) throw toError(response.status, await response.json().catch(() => ({})));
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let text = "";
  const marker = /,\n {2}"items": \[/;
  for (;;) {
    const { done, value } = await reader.read();
    if (value) text += decoder.decode(value, { stream: true });
    const found = marker.exec(text);
    if (found) {
      await reader.cancel();
      return JSON.parse(`${text.slice(0, found.index)}\n}`) as T;
    }
    if (done) return JSON.parse(text) as T;
  }
}

// Building the page: elements from plain values (text is always text, never parsed as HTML),
// event handlers attached with addEventListener (the Content-Security-Policy allows no inline code).

export type Child = Node | string | number | null | undefined | false;
type Handler = (event: Event) => void;
export type Props = Record<string, string | number | boolean | Handler | null | undefined>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props = {},
  ...children: Array<Child | Child[]>
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (typeof value === "function") element.addEventListener(key.replace(/^on/, ""), value);
    else if (key === "class") element.className = String(value);
    else if (key === "value" && "value" in element) (element as HTMLInputElement).value = String(value);
    else if (key === "checked") (element as HTMLInputElement).checked = Boolean(value);
    else element.setAttribute(key, value === true ? "" : String(value));
  }
  append(element, children.flat());
  return element;
}

export function append(parent: Node, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
  }
}

export function replace(parent: Element, ...children: Array<Child | Child[]>): void {
  parent.replaceChildren();
  append(parent, children.flat());
}

export function table(
  headers: string[],
  rows: Child[][],
  options: { class?: string } = {},
): HTMLTableElement {
  return h(
    "table",
    { class: options.class ?? "grid" },
    h("thead", {}, h("tr", {}, ...headers.map((header) => h("th", {}, header)))),
    h("tbody", {}, ...rows.map((row) => h("tr", {}, ...row.map((cell) => h("td", {}, cell))))),
  );
}

export function bytes(value: number | undefined): string {
  if (value === undefined) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let n = value;
  let unit = 0;
  while (n >= 1024 && unit < units.length - 1) {
    n /= 1024;
    unit++;
  }
  return `${unit === 0 ? n : n.toFixed(1)} ${units[unit]}`;
}

export function time(iso: string | undefined | null): string {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

export function badge(text: string, kind = text): HTMLSpanElement {
  return h("span", { class: `badge badge-${kind.replace(/[^a-z-]/g, "")}` }, text);
}

/** A failure as the page shows it: its message, and below it its code (and what else is known). */
export function failureBox(message: string, ...details: Child[]): HTMLDivElement {
  return h(
    "div",
    { class: "outcome error", role: "alert" },
    h("strong", {}, message),
    h("div", { class: "muted" }, ...details),
  );
}

export function progressBar(done: number, total: number): HTMLElement {
  const max = Math.max(total, done, 1);
  return h(
    "div",
    { class: "progress" },
    h("progress", { max, value: done }),
    h("span", {}, `${done.toLocaleString()} of ${total.toLocaleString()}`),
  );
}

/** Hash links: `link("#/runs/x", "Runs")`. */
export function link(href: string, text: Child, props: Props = {}): HTMLAnchorElement {
  return h("a", { href, ...props }, text);
}

export function field(label: string, name: string, props: Props = {}, hint?: string): HTMLLabelElement {
  return h(
    "label",
    { class: "field" },
    h("span", {}, label),
    h("input", { name, "data-field": name, ...props }),
    hint ? h("small", {}, hint) : null,
  );
}

export function select(label: string, name: string, options: string[], value: string): HTMLLabelElement {
  return h(
    "label",
    { class: "field" },
    h("span", {}, label),
    h(
      "select",
      { name, "data-field": name },
      ...options.map((option) => h("option", { value: option, selected: option === value }, option)),
    ),
  );
}

export function inputValue(form: HTMLElement, name: string): string {
  const input = form.querySelector<HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement>(
    `[name="${name}"]`,
  );
  if (!input) return "";
  if (input instanceof HTMLInputElement && input.type === "checkbox") return input.checked ? "true" : "";
  return input.value.trim();
}

/**
 * Structured logging for core code. Properties (runId, identityId, itemId, …) travel with every
 * line; triggers adapt this to the Functions context so Application Insights gets them as
 * custom dimensions. Never pass a secret or a token in a message or property.
 */
export type LogProperties = Record<string, string | number | boolean | undefined | null>;

export interface Logger {
  info(message: string, properties?: LogProperties): void;
  warn(message: string, properties?: LogProperties): void;
  error(message: string, properties?: LogProperties): void;
  /** A monitoring event (BackupRunCompleted, BackupItemFailed): never filtered by LOG_LEVEL. */
  event(name: string, properties?: LogProperties, level?: "info" | "warn"): void;
  /** A logger whose lines all carry these properties too. */
  child(properties: LogProperties): Logger;
}

type Sink = (level: "info" | "warn" | "error", message: string, properties: LogProperties) => void;

export function createLogger(sink: Sink, base: LogProperties = {}): Logger {
  const emit =
    (level: "info" | "warn" | "error") =>
    (message: string, properties: LogProperties = {}) =>
      sink(level, message, { ...base, ...properties });
  return {
    info: emit("info"),
    warn: emit("warn"),
    error: emit("error"),
    event: (name, properties = {}, level = "info") => sink(level, name, { ...base, ...properties }),
    child: (properties) => createLogger(sink, { ...base, ...properties }),
  };
}

/** One JSON object; the level and message always win over properties of the same name. */
export function formatLine(level: string, message: string, properties: LogProperties): string {
  return JSON.stringify({ ...properties, level, message });
}

/** One JSON object per line on stdout/stderr: what the Functions worker forwards to App Insights. */
export const consoleLogger: Logger = createLogger((level, message, properties) => {
  const line = formatLine(level, message, properties);
  if (level === "error") console.error(line);
  else if (level === "warn") console.warn(line);
  else console.info(line);
});

export const silentLogger: Logger = createLogger(() => {});

const RANK = { info: 0, warn: 1, error: 2 } as const;

/** Drops lines below `level`. */
export function atLevel(logger: Logger, level: keyof typeof RANK): Logger {
  if (level === "info") return logger;
  const pass = (l: keyof typeof RANK) => RANK[l] >= RANK[level];
  const wrap = (inner: Logger): Logger => ({
    info: (m, p) => pass("info") && inner.info(m, p),
    warn: (m, p) => pass("warn") && inner.warn(m, p),
    error: (m, p) => inner.error(m, p),
    event: (name, p, l) => inner.event(name, p, l),
    child: (properties) => wrap(inner.child(properties)),
  });
  return wrap(logger);
}

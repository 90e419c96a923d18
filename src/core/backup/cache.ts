import { createHash, randomUUID } from "node:crypto";
import { type FileHandle, open, rm } from "node:fs/promises";
import path from "node:path";
import { type Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { AppError } from "../errors.js";
import { FS_CHECK_TIMEOUT_MS, makeDirectory, proveWritableDirectory } from "../fs-checks.js";
import { withDeadline } from "../with-deadline.js";

/**
 * A budget of bytes shared by concurrent users: `reserve` waits until enough is released.
 * A single reservation larger than the whole limit still passes when nothing is reserved.
 */
export class ByteBudget {
  private used = 0;
  private readonly waiters = new Set<() => void>();

  constructor(readonly limitBytes: number) {}

  get usedBytes(): number {
    return this.used;
  }

  /** Waits for room for `bytes`; an aborted wait rejects with the signal's reason and takes nothing. */
  async reserve(bytes: number, signal?: AbortSignal): Promise<void> {
    while (this.used > 0 && this.used + bytes > this.limitBytes) {
      signal?.throwIfAborted();
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.waiters.delete(wake);
          signal?.removeEventListener("abort", wake);
          resolve();
        };
        this.waiters.add(wake);
        signal?.addEventListener("abort", wake, { once: true });
      });
    }
    signal?.throwIfAborted();
    this.used += bytes;
  }

  release(bytes: number): void {
    this.used = Math.max(0, this.used - bytes);
    for (const wake of [...this.waiters]) wake();
  }
}

/**
 * Bytes on disk in one cache folder, bounded: a writer waits for room instead of filling the
 * disk. One instance per folder per process, shared by every export running there.
 */
export class CacheSpace extends ByteBudget {}

const spaces = new Map<string, CacheSpace>();

export function cacheSpaceFor(directory: string, limitBytes: number): CacheSpace {
  let space = spaces.get(directory);
  if (!space) {
    space = new CacheSpace(limitBytes);
    spaces.set(directory, space);
  }
  return space;
}

export interface CachedFile {
  path: string;
  size: number;
  sha256: string;
  /** Frees the disk and the reserved space; safe to call twice. */
  discard(): Promise<void>;
}

/**
 * A download on its way into the cache folder. Its file can be read while it grows, up to
 * `written` bytes, so an upload can start before the download ends.
 */
export interface CachingFile {
  readonly path: string;
  /** Bytes on disk so far (the final size once the download ended). */
  readonly written: number;
  /** True once the download ended and the whole file is on disk. */
  readonly complete: boolean;
  /**
   * Resolves once `bytes` are on disk or the download ended with fewer; rejects as soon as the
   * download failed or was aborted.
   */
  reached(bytes: number): Promise<void>;
  /** The whole file with its hash; rejects (the partial file gone) when the download failed. */
  readonly done: Promise<CachedFile>;
  /** Stops the download, if still running: `done` and waiting `reached` calls reject with `reason`. */
  abort(reason: unknown): void;
  /** Stops the download if running, waits for it to settle, frees the disk and the space. Safe twice. */
  discard(): Promise<void>;
}

/**
 * Streams a download into a fresh file of the cache folder (a random name: nothing from the
 * portal reaches the file system), hashing it on the way. On failure the partial file is gone.
 */
export function streamToCache(source: Readable, directory: string, space: CacheSpace): Promise<CachedFile> {
  return startCaching(source, directory, space).done;
}

/** Bytes gathered before a write to the cache file: few trips to the disk, little memory per download. */
const WRITE_BATCH_BYTES = 1024 * 1024;
/** Bytes queued behind a write on its way before the download is held back. */
const WRITE_QUEUE_BYTES = 256 * 1024;

/**
 * Starts streaming a download into the cache folder, as `streamToCache`, and returns at once:
 * the caller may read the completed part of the file while the rest arrives. Every byte is
 * reserved in `space` before it is written.
 */
export function startCaching(source: Readable, directory: string, space: CacheSpace): CachingFile {
  const filePath = path.join(directory, `${randomUUID()}.part`);
  const hash = createHash("sha256");
  const stop = new AbortController();
  let written = 0;
  let reserved = 0;
  let complete = false;
  let failure: { error: unknown } | undefined;
  let released = false;
  let created = false;

  // Waiters on progress: woken (all at once) after every write, at the end and on failure.
  let wakeAll: () => void = () => {};
  let progress = new Promise<void>((resolve) => {
    wakeAll = resolve;
  });
  const notify = () => {
    const wake = wakeAll;
    progress = new Promise<void>((resolve) => {
      wakeAll = resolve;
    });
    wake();
  };
  const fail = (error: unknown) => {
    if (failure || complete) return;
    failure = { error };
    notify();
  };

  const removeFile = async () => {
    if (released) return;
    released = true;
    // Only a file this download created ("wx"): never one that happened to be there.
    if (created) await rm(filePath, { force: true });
    space.release(reserved);
    reserved = 0;
  };

  let handle: FileHandle | undefined;
  // Hashed and reserved bytes not yet on disk: written in batches, fewer trips to the disk.
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const sink = new Writable({
    highWaterMark: WRITE_QUEUE_BYTES,
    construct(callback) {
      makeDirectory(directory).then(
        () =>
          open(filePath, "wx").then((opened) => {
            handle = opened;
            created = true;
            callback();
          }, callback),
        (cause) => callback(cacheError(directory, cause)),
      );
    },
    writev(entries, callback) {
      take(entries.map((entry) => entry.chunk as Buffer)).then(() => callback(), callback);
    },
    final(callback) {
      flush()
        .then(closeHandle)
        .then(() => callback(), callback);
    },
    destroy(error, callback) {
      closeHandle().then(
        () => callback(error),
        () => callback(error),
      );
    },
  });
  // The pipeline may settle on an error before the file is even open: wait for the sink to close.
  const sinkClosed = new Promise<void>((resolve) => sink.once("close", () => resolve()));
  const closeHandle = async () => {
    const current = handle;
    handle = undefined;
    await current?.close();
  };
  const take = async (chunks: Buffer[]) => {
    const bytes = chunks.reduce((sum, chunk) => sum + chunk.length, 0);
    // It could never fit: waiting for room would wait for its own space, forever.
    if (reserved + bytes > space.limitBytes) throw fileLargerThanCache(space.limitBytes);
    await space.reserve(bytes, stop.signal);
    if (released) {
      space.release(bytes);
      throw stop.signal.reason ?? new Error("The cache file was discarded");
    }
    reserved += bytes;
    for (const chunk of chunks) hash.update(chunk);
    pending.push(...chunks);
    pendingBytes += bytes;
    if (pendingBytes >= WRITE_BATCH_BYTES) await flush();
  };
  const flush = async () => {
    if (pendingBytes === 0) return;
    const chunks = pending;
    const bytes = pendingBytes;
    pending = [];
    pendingBytes = 0;
    if (!handle) throw new Error("The cache file is closed");
    await writeFully(handle, chunks, written);
    written += bytes;
    notify();
  };

  const run = (async (): Promise<CachedFile> => {
    try {
      await pipeline(source, sink, { signal: stop.signal });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      const reason = failure
        ? failure.error
        : code === "EACCES" || code === "EROFS"
          ? cacheError(directory, error)
          : error;
      fail(reason);
      await sinkClosed;
      await removeFile();
      throw reason;
    }
    if (failure) {
      // Aborted after the last byte but before the end was seen: still a failure.
      await removeFile();
      throw failure.error;
    }
    complete = true;
    notify();
    return { path: filePath, size: written, sha256: hash.digest("hex"), discard: removeFile };
  })();
  // The outcome is always observed through `done`, `reached` or `discard`; never unhandled.
  run.catch(() => {});
  const settled = run.then(
    () => undefined,
    () => undefined,
  );

  const abort = (reason: unknown) => {
    if (complete || failure) return;
    fail(reason);
    stop.abort(reason);
  };

  return {
    path: filePath,
    get written() {
      return written;
    },
    get complete() {
      return complete;
    },
    async reached(bytes: number) {
      for (;;) {
        if (failure) throw failure.error;
        if (complete || written >= bytes) return;
        await progress;
      }
    },
    done: run,
    abort,
    async discard() {
      abort(new Error("The cache file was discarded"));
      await settled;
      await removeFile();
    },
  };
}

/** Writes all of `chunks` at `position`, also when the file system takes them in parts. */
async function writeFully(handle: FileHandle, chunks: Buffer[], position: number): Promise<void> {
  let pending = chunks;
  let at = position;
  while (pending.length > 0) {
    const { bytesWritten } = await handle.writev(pending, at);
    at += bytesWritten;
    let skip = bytesWritten;
    const rest: Buffer[] = [];
    for (const chunk of pending) {
      if (skip >= chunk.length) skip -= chunk.length;
      else {
        rest.push(skip > 0 ? chunk.subarray(skip) : chunk);
        skip = 0;
      }
    }
    pending = rest;
  }
}

/** Fails early with a clear error when the cache folder cannot be written (or does not answer). */
export async function assertCacheWritable(directory: string): Promise<void> {
  try {
    await withDeadline(proveWritableDirectory(directory), FS_CHECK_TIMEOUT_MS, () =>
      Object.assign(new Error(`no answer within ${FS_CHECK_TIMEOUT_MS} ms`), { code: "ETIMEDOUT" }),
    );
  } catch (cause) {
    throw cacheError(directory, cause);
  }
}

function fileLargerThanCache(limitBytes: number): AppError {
  return new AppError(
    `The file is larger than the cache folder may hold (CACHE_MAX_BYTES = ${limitBytes} bytes); raise CACHE_MAX_BYTES`,
    { code: "ERR_FILE_LARGER_THAN_CACHE", status: 507, field: "CACHE_MAX_BYTES" },
  );
}

function cacheError(directory: string, cause: unknown): AppError {
  const code = (cause as NodeJS.ErrnoException).code ?? "unknown";
  return new AppError(`The cache folder ${directory} is not writable (${code})`, {
    code: "ERR_CACHE_NOT_WRITABLE",
    status: 500,
    field: "cacheDirectory",
    cause,
  });
}

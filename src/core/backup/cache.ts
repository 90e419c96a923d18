import { createHash, randomUUID } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, rm, stat } from "node:fs/promises";
import path from "node:path";
import { type Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { AppError } from "../errors.js";

/**
 * Bytes on disk in one cache folder, bounded: a writer waits for room instead of filling the
 * disk. One instance per folder per process, shared by every export running there.
 */
export class CacheSpace {
  private used = 0;
  private readonly waiters: Array<() => void> = [];

  constructor(readonly limitBytes: number) {}

  get usedBytes(): number {
    return this.used;
  }

  async reserve(bytes: number): Promise<void> {
    // A single chunk larger than the whole limit still passes when the cache is empty.
    while (this.used > 0 && this.used + bytes > this.limitBytes) {
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    this.used += bytes;
  }

  release(bytes: number): void {
    this.used = Math.max(0, this.used - bytes);
    for (const wake of this.waiters.splice(0)) wake();
  }
}

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
 * Streams a download into a fresh file of the cache folder (a random name: nothing from the
 * portal reaches the file system), hashing it on the way. On failure the partial file is gone.
 */
export async function streamToCache(
  source: Readable,
  directory: string,
  space: CacheSpace,
): Promise<CachedFile> {
  try {
    await mkdir(directory, { recursive: true });
  } catch (cause) {
    throw cacheError(directory, cause);
  }
  const filePath = path.join(directory, `${randomUUID()}.part`);
  const hash = createHash("sha256");
  let size = 0;
  let released = false;
  const discard = async () => {
    if (released) return;
    released = true;
    await rm(filePath, { force: true });
    space.release(size);
  };
  const meter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      space.reserve(chunk.length).then(() => {
        size += chunk.length;
        hash.update(chunk);
        callback(null, chunk);
      }, callback);
    },
  });
  try {
    await pipeline(source, meter, createWriteStream(filePath, { flags: "wx" }));
  } catch (error) {
    await discard();
    if (
      (error as NodeJS.ErrnoException).code === "EACCES" ||
      (error as NodeJS.ErrnoException).code === "EROFS"
    ) {
      throw cacheError(directory, error);
    }
    throw error;
  }
  return { path: filePath, size, sha256: hash.digest("hex"), discard };
}

/** Fails early with a clear error when the cache folder cannot be written. */
export async function assertCacheWritable(directory: string): Promise<void> {
  try {
    await mkdir(directory, { recursive: true });
    const probe = path.join(directory, `.probe-${randomUUID()}`);
    const stream = createWriteStream(probe);
    await new Promise<void>((resolve, reject) => {
      stream.on("error", reject);
      stream.end("ok", resolve);
    });
    await stat(probe);
    await rm(probe, { force: true });
  } catch (cause) {
    throw cacheError(directory, cause);
  }
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

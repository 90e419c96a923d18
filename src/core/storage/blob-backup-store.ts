import { createHash, randomUUID } from "node:crypto";
import { type FileHandle, open } from "node:fs/promises";
import type { Readable } from "node:stream";
import { text } from "node:stream/consumers";
import type { BlobDownloadResponseParsed, ContainerClient } from "@azure/storage-blob";
import type { z } from "zod";
import { BLOB_BODY_REREADS } from "../azure-retries.js";
import {
  type BackupStore,
  type DeleteOutcome,
  JSON_TYPE,
  jsonBytes,
  type OpenedBlob,
  type StoredFile,
} from "../backup/backup-store.js";
import { ByteBudget, type CachedFile, type CachingFile } from "../backup/cache.js";
import { identityBlobName } from "../backup/layout.js";
import { mapWithConcurrency } from "../concurrency.js";
import { parseStoredJson, parseStoredLines } from "../stored-document.js";
import { isImmutabilityRefusal, type StorageError, toStorageError } from "./storage-errors.js";

const UPLOAD_BLOCK = 4 * 1024 * 1024;
const UPLOAD_CONCURRENCY = 4;
/** Blocks read back from the cache and on their way to Blob, across all uploads of the process. */
const BLOCK_BUFFERS = 4;
/**
 * Blobs per listing page. The service's default of 5,000 keeps a page's parsed properties alive
 * while its names are worked through: reading a 100,000-item run's 10,000 results blobs one by
 * one peaked at 224 MB of RSS with it and at 168 MB with 1,000 (measured with the app's heap flags).
 */
const LIST_PAGE_SIZE = 1000;

/**
 * The backup store in Azure Blob: an identity's folder of its backup container, every name
 * relative to `<identityId>/`. Files are uploaded from the cache folder in parallel blocks, so
 * memory stays flat.
 */
export class BlobBackupStore implements BackupStore {
  constructor(
    private readonly container: ContainerClient,
    readonly identityId: string,
  ) {}

  /** The name in the container (tests look at blobs through it). */
  blobName(relative: string): string {
    return identityBlobName(this.identityId, relative);
  }

  async uploadCached(relative: string, file: CachedFile, contentType: string): Promise<StoredFile> {
    await this.container.getBlockBlobClient(this.blobName(relative)).uploadFile(file.path, {
      blockSize: UPLOAD_BLOCK,
      concurrency: UPLOAD_CONCURRENCY,
      blobHTTPHeaders: { blobContentType: contentType },
      metadata: { sha256: file.sha256 },
    });
    return { blob: relative, size: file.size, sha256: file.sha256, contentType };
  }

  /**
   * Uploads a file while its download still writes it into the cache: blocks are staged from
   * the completed regions of the file as they arrive, a few at a time, and committed with the
   * hash once the download ended — the blob appears only then. A file of one block or less
   * goes up in one request once complete. A failure on either side stops the other: the
   * download is aborted, blocks in flight are cancelled, and the first error is thrown. The
   * caller discards `file` afterwards.
   */
  async uploadWhileCaching(relative: string, file: CachingFile, contentType: string): Promise<StoredFile> {
    // More than one block on disk, or the whole (small) file.
    await file.reached(UPLOAD_BLOCK + 1);
    if (file.complete && file.written <= UPLOAD_BLOCK) {
      return this.uploadCached(relative, await file.done, contentType);
    }
    const blob = this.container.getBlockBlobClient(this.blobName(relative));
    // Fresh ids on every call: blocks staged by a failed attempt are never committed.
    const attempt = randomUUID();
    const blockIds: string[] = [];
    const cancel = new AbortController();
    let failure: { error: unknown } | undefined;
    const fail = (error: unknown) => {
      if (failure) return;
      failure = { error };
      cancel.abort(error);
      file.abort(error);
    };
    // A failed download cancels the blocks in flight at once, not after they finish.
    file.done.catch(fail);
    let nextBlock = 0;
    let reader: Promise<FileHandle> | undefined;
    const stageBlocks = async () => {
      try {
        for (;;) {
          const index = nextBlock++;
          const start = index * UPLOAD_BLOCK;
          // The block is complete once a byte past it is on disk, or the download ended.
          await file.reached(start + UPLOAD_BLOCK + 1);
          const end = Math.min(file.written, start + UPLOAD_BLOCK);
          if (failure || start >= end) return;
          const blockId = Buffer.from(`${attempt}-${String(index).padStart(6, "0")}`).toString("base64");
          blockIds[index] = blockId;
          const buffer = await blockBuffers.take(cancel.signal);
          try {
            reader ??= open(file.path, "r");
            const block = await readRegion(await reader, buffer, start, end);
            await blob.stageBlock(blockId, block, block.length, { abortSignal: cancel.signal });
          } finally {
            blockBuffers.give(buffer);
          }
        }
      } catch (error) {
        fail(error);
        throw error;
      }
    };
    try {
      await mapWithConcurrency(Array.from({ length: UPLOAD_CONCURRENCY }), UPLOAD_CONCURRENCY, stageBlocks);
    } catch (error) {
      throw failure ? failure.error : error;
    } finally {
      blockBuffers.trim();
      await reader?.then(
        (handle) => handle.close(),
        () => {},
      );
    }
    if (failure) throw failure.error;
    const cached = await file.done;
    await blob.commitBlockList(blockIds, {
      blobHTTPHeaders: { blobContentType: contentType },
      metadata: { sha256: cached.sha256 },
    });
    return { blob: relative, size: cached.size, sha256: cached.sha256, contentType };
  }

  async uploadBuffer(relative: string, content: Buffer, contentType: string): Promise<StoredFile> {
    const sha256 = createHash("sha256").update(content).digest("hex");
    await this.container.getBlockBlobClient(this.blobName(relative)).uploadData(content, {
      blobHTTPHeaders: { blobContentType: contentType },
      metadata: { sha256 },
    });
    return { blob: relative, size: content.length, sha256, contentType };
  }

  uploadJson(relative: string, value: unknown): Promise<StoredFile> {
    return this.uploadBuffer(relative, jsonBytes(value), JSON_TYPE);
  }

  async exists(relative: string): Promise<boolean> {
    return this.container.getBlobClient(this.blobName(relative)).exists();
  }

  async readJson<S extends z.ZodType>(relative: string, schema: S): Promise<z.infer<S> | undefined> {
    const text = await this.readText(relative);
    return text === undefined ? undefined : parseStoredJson(schema, text, relative);
  }

  async readNdjson<S extends z.ZodType>(relative: string, schema: S): Promise<z.infer<S>[] | undefined> {
    const text = await this.readText(relative);
    return text === undefined ? undefined : parseStoredLines(schema, text, relative);
  }

  private async readText(relative: string): Promise<string | undefined> {
    const opened = await this.openIfExists(relative);
    return opened && text(opened.body);
  }

  async openRead(relative: string): Promise<Readable> {
    return (await this.download(relative)).readableStreamBody as Readable;
  }

  async openIfExists(relative: string): Promise<OpenedBlob | undefined> {
    try {
      const response = await this.download(relative);
      return { body: response.readableStreamBody as Readable, size: response.contentLength ?? 0 };
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  /** Every read of a blob: a body cut short is read on from the byte it reached (see azure-retries.ts). */
  private download(relative: string): Promise<BlobDownloadResponseParsed> {
    return this.container
      .getBlobClient(this.blobName(relative))
      .download(0, undefined, { maxRetryRequests: BLOB_BODY_REREADS });
  }

  async sizeOf(relative: string): Promise<number | undefined> {
    try {
      const properties = await this.container.getBlobClient(this.blobName(relative)).getProperties();
      return properties.contentLength ?? 0;
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async *list(prefix: string): AsyncGenerator<string> {
    for await (const blob of this.listSized(prefix)) yield blob.name;
  }

  async *listSized(prefix: string): AsyncGenerator<{ name: string; size: number }> {
    const base = this.blobName("");
    const pages = this.container
      .listBlobsFlat({ prefix: this.blobName(prefix) })
      .byPage({ maxPageSize: LIST_PAGE_SIZE });
    for await (const page of pages) {
      for (const blob of page.segment.blobItems) {
        yield { name: blob.name.slice(base.length), size: blob.properties.contentLength ?? 0 };
      }
    }
  }

  async delete(relative: string): Promise<DeleteOutcome> {
    try {
      const result = await this.container.getBlobClient(this.blobName(relative)).deleteIfExists();
      return result.succeeded ? "deleted" : "absent";
    } catch (error) {
      if (isImmutabilityRefusal(error)) return "kept-by-policy";
      throw error;
    }
  }

  storageErrorOf(error: unknown): StorageError | undefined {
    const request = (error as { request?: { url?: unknown; method?: unknown } } | null)?.request;
    if (typeof request?.url !== "string" || !isWithin(request.url, this.container.url)) return undefined;
    return toStorageError(error, {
      account: this.container.accountName,
      container: this.container.containerName,
      operation: request.method === "GET" || request.method === "HEAD" ? "read" : "write",
    });
  }
}

function isNotFound(error: unknown): boolean {
  return (error as { statusCode?: number } | undefined)?.statusCode === 404;
}

/** Whether a request URL names the container or a blob in it (query strings, a SAS among them, aside). */
function isWithin(requestUrl: string, containerUrl: string): boolean {
  const request = new URL(requestUrl);
  const container = new URL(containerUrl);
  return (
    request.origin === container.origin &&
    (request.pathname === container.pathname || request.pathname.startsWith(`${container.pathname}/`))
  );
}

/** Reads `[start, end)` of a file into `buffer`; the part of it that holds the bytes. */
async function readRegion(handle: FileHandle, buffer: Buffer, start: number, end: number): Promise<Buffer> {
  const length = end - start;
  let filled = 0;
  while (filled < length) {
    const { bytesRead } = await handle.read(buffer, filled, length - filled, start + filled);
    if (bytesRead === 0) throw new Error(`The cache file ended at ${start + filled} bytes, before ${end}`);
    filled += bytesRead;
  }
  return buffer.subarray(0, length);
}

/**
 * Block-sized buffers, reused, at most `count` taken at once by all uploads of the process:
 * memory stays flat however many large files go up together.
 */
class BlockBuffers {
  private readonly budget: ByteBudget;
  private free: Buffer[] = [];

  constructor(
    private readonly size: number,
    count: number,
  ) {
    this.budget = new ByteBudget(size * count);
  }

  async take(signal: AbortSignal): Promise<Buffer> {
    await this.budget.reserve(this.size, signal);
    return this.free.pop() ?? Buffer.allocUnsafeSlow(this.size);
  }

  give(buffer: Buffer): void {
    this.free.push(buffer);
    this.budget.release(this.size);
  }

  /** Lets the memory go when no upload holds a buffer. */
  trim(): void {
    if (this.budget.usedBytes === 0) this.free = [];
  }
}

const blockBuffers = new BlockBuffers(UPLOAD_BLOCK, BLOCK_BUFFERS);

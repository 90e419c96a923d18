import type { Readable } from "node:stream";
import type { z } from "zod";
import type { AppError } from "../errors.js";
import type { CachedFile, CachingFile } from "./cache.js";

export const JSON_TYPE = "application/json";

/** A JSON document as the store writes it (indented, so a person can read the blob). */
export function jsonBytes(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value, null, 2));
}

/** Values as NDJSON, one line each. */
export function ndjsonBytes(values: readonly unknown[]): Buffer {
  return Buffer.from(values.map((v) => `${JSON.stringify(v)}\n`).join(""));
}

/** A file as stored: where, how big, its SHA-256 (also in the blob's metadata) and its type. */
export interface StoredFile {
  /** Relative to the identity's folder. */
  blob: string;
  size: number;
  sha256: string;
  contentType: string;
}

export type DeleteOutcome = "deleted" | "absent" | "kept-by-policy";

/** A blob opened for streaming, with its size in bytes. */
export interface OpenedBlob {
  body: Readable;
  size: number;
}

/**
 * The backup store of one identity: everything backup, restore, manifests and run documents
 * write or read, by names relative to the identity's folder (built by layout.ts). Stored JSON
 * is read back through a schema (`readJson`, `readNdjson`): a document that does not match
 * throws StoredDocumentError naming the blob, never an undefined property later. The Blob
 * adapter is BlobBackupStore (src/core/storage/blob-backup-store.ts).
 */
export interface BackupStore {
  /** Uploads a file of the cache folder (the caller discards it afterwards). */
  uploadCached(relative: string, file: CachedFile, contentType: string): Promise<StoredFile>;
  /** Uploads a file while its download still writes it into the cache; the blob appears only whole. */
  uploadWhileCaching(relative: string, file: CachingFile, contentType: string): Promise<StoredFile>;
  uploadBuffer(relative: string, content: Buffer, contentType: string): Promise<StoredFile>;
  uploadJson(relative: string, value: unknown): Promise<StoredFile>;

  /** The JSON document, validated by `schema`; undefined when there is no such blob. */
  readJson<S extends z.ZodType>(relative: string, schema: S): Promise<z.infer<S> | undefined>;
  /** Every line of an NDJSON document, each validated; undefined when there is no such blob. */
  readNdjson<S extends z.ZodType>(relative: string, schema: S): Promise<z.infer<S>[] | undefined>;

  /** Opens a blob to stream it; a missing one throws (statusCode 404). */
  openRead(relative: string): Promise<Readable>;
  /** Opens a blob to stream it, with its size; undefined when there is no such blob. */
  openIfExists(relative: string): Promise<OpenedBlob | undefined>;

  exists(relative: string): Promise<boolean>;
  /** The blob's size in bytes; undefined when there is no such blob. */
  sizeOf(relative: string): Promise<number | undefined>;
  /** Names (relative) under a prefix, in name order. */
  list(prefix: string): AsyncIterable<string>;
  /** Names (relative) and sizes under a prefix, in name order. */
  listSized(prefix: string): AsyncIterable<{ name: string; size: number }>;
  /**
   * Deletes a blob: `absent` when it was already gone, `kept-by-policy` when an immutability
   * policy or legal hold refused (409) — the container's WORM setting, not a failure.
   */
  delete(relative: string): Promise<DeleteOutcome>;

  /**
   * A failure of a request to this store as a run reports it: a stable code and a message of the
   * app's own (ERR_STORAGE_*; the service's text carries request ids and times, a URL may carry a
   * SAS); undefined for an error that did not come from the store.
   */
  storageErrorOf(error: unknown): AppError | undefined;
}

import { createHash } from "node:crypto";
import type { z } from "zod";
import type { BackupStore } from "../backup/backup-store.js";
import type { ExportedFile } from "../backup/export-item.js";
import { splitLines } from "../backup/feature-sort.js";
import { AppError } from "../errors.js";
import { parseStoredJson } from "../stored-document.js";

/** A file of the backup does not hold what the manifest says (size or SHA-256). */
export class BackupIntegrityError extends AppError {
  constructor(file: Pick<ExportedFile, "blob" | "path">, detail: string) {
    super(`Backup file ${file.path} does not match the manifest (${detail}); the item is refused`, {
      code: "ERR_BACKUP_CORRUPT",
      status: 422,
    });
  }
}

/** A file the manifest lists is missing from the backup. */
export class BackupFileMissingError extends AppError {
  constructor(file: Pick<ExportedFile, "path">) {
    super(`Backup file ${file.path} is missing`, { code: "ERR_BACKUP_INCOMPLETE", status: 422 });
  }
}

/** Files up to this size are read whole (and checked) before anything is uploaded. */
export const BUFFERED_FILE_MAX = 64 * 1024 * 1024;

/**
 * Reads backup files and checks each against the manifest's size and SHA-256 on the way, so
 * nothing is uploaded from a file that does not match: buffered files are checked before their
 * bytes are used; streamed ones as they pass, failing at their end.
 */
export class BackupFiles {
  constructor(private readonly store: BackupStore) {}

  /** The whole file, checked. */
  async read(file: ExportedFile): Promise<Buffer> {
    if (file.size > BUFFERED_FILE_MAX) {
      throw new AppError(`Backup file ${file.path} is too large to read whole (${file.size} bytes)`, {
        code: "ERR_RESTORE_FILE_TOO_LARGE",
        status: 422,
      });
    }
    const chunks: Buffer[] = [];
    for await (const chunk of this.stream(file)) chunks.push(chunk);
    return Buffer.concat(chunks);
  }

  async text(file: ExportedFile): Promise<string> {
    return (await this.read(file)).toString("utf8");
  }

  /** A JSON file, checked, then validated by `schema`: a mismatch names the blob (StoredDocumentError). */
  async json<S extends z.ZodType>(file: ExportedFile, schema: S): Promise<z.infer<S>> {
    return parseStoredJson(schema, await this.text(file), file.blob);
  }

  /** Reads the file through once and only checks it. */
  async verify(file: ExportedFile): Promise<void> {
    for await (const _chunk of this.stream(file)) {
      // hashing happens in stream()
    }
  }

  /** The file's bytes; throws BackupIntegrityError after the last chunk when they do not match. */
  async *stream(file: ExportedFile): AsyncGenerator<Buffer> {
    let source: AsyncIterable<Buffer>;
    try {
      source = (await this.store.openRead(file.blob)) as AsyncIterable<Buffer>;
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode === 404) throw new BackupFileMissingError(file);
      throw error;
    }
    const hash = createHash("sha256");
    let size = 0;
    for await (const chunk of source) {
      const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
      size += buffer.length;
      if (size > file.size) throw new BackupIntegrityError(file, `more than ${file.size} bytes`);
      hash.update(buffer);
      yield buffer;
    }
    if (size !== file.size) throw new BackupIntegrityError(file, `${size} bytes instead of ${file.size}`);
    const digest = hash.digest("hex");
    if (digest !== file.sha256) throw new BackupIntegrityError(file, "SHA-256 differs");
  }

  /** Lines of an NDJSON file (UTF-8 safe across chunk boundaries), checked like stream(). */
  async *lines(file: ExportedFile): AsyncGenerator<string> {
    yield* splitLines(this.stream(file));
  }
}

/** Re-chunks a byte stream into parts of exactly `size` bytes (the last one shorter). */
export async function* parts(source: AsyncIterable<Buffer>, size: number): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  for await (const chunk of source) {
    let offset = 0;
    while (offset < chunk.length) {
      const take = Math.min(size - pendingBytes, chunk.length - offset);
      pending.push(chunk.subarray(offset, offset + take));
      pendingBytes += take;
      offset += take;
      if (pendingBytes === size) {
        yield Buffer.concat(pending);
        pending = [];
        pendingBytes = 0;
      }
    }
  }
  if (pendingBytes > 0) yield Buffer.concat(pending);
}

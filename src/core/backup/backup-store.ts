import { createHash } from "node:crypto";
import type { Readable } from "node:stream";
import type { ContainerClient } from "@azure/storage-blob";
import type { CachedFile } from "./cache.js";

export interface StoredFile {
  /** Relative to the identity's prefix. */
  blob: string;
  size: number;
  sha256: string;
  contentType: string;
}

const UPLOAD_BLOCK = 8 * 1024 * 1024;

/**
 * An identity's part of its backup container: every name is relative to `<identityId>/`.
 * Files are uploaded from the cache folder in parallel blocks, so memory stays flat.
 */
export class BackupStore {
  constructor(
    readonly container: ContainerClient,
    readonly identityId: string,
  ) {}

  blobName(relative: string): string {
    return `${this.identityId}/${relative}`;
  }

  async uploadCached(relative: string, file: CachedFile, contentType: string): Promise<StoredFile> {
    await this.container.getBlockBlobClient(this.blobName(relative)).uploadFile(file.path, {
      blockSize: UPLOAD_BLOCK,
      concurrency: 4,
      blobHTTPHeaders: { blobContentType: contentType },
      metadata: { sha256: file.sha256 },
    });
    return { blob: relative, size: file.size, sha256: file.sha256, contentType };
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
    return this.uploadBuffer(relative, Buffer.from(JSON.stringify(value, null, 2)), "application/json");
  }

  async exists(relative: string): Promise<boolean> {
    return this.container.getBlobClient(this.blobName(relative)).exists();
  }

  async readJson<T>(relative: string): Promise<T | undefined> {
    try {
      const buffer = await this.container.getBlobClient(this.blobName(relative)).downloadToBuffer();
      return JSON.parse(buffer.toString("utf8")) as T;
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode === 404) return undefined;
      throw error;
    }
  }

  async openRead(relative: string): Promise<Readable> {
    const response = await this.container.getBlobClient(this.blobName(relative)).download();
    return response.readableStreamBody as Readable;
  }

  /** Names (relative) under a prefix, in name order. */
  async *list(prefix: string): AsyncGenerator<string> {
    const base = this.blobName("");
    for await (const blob of this.container.listBlobsFlat({ prefix: this.blobName(prefix) })) {
      yield blob.name.slice(base.length);
    }
  }
}

import { StoredDocumentError } from "../stored-document.js";
import type { BackupStore } from "./backup-store.js";
import { type ExportedFile, type VersionMarker, versionMarkerSchema } from "./export-item.js";
import { completionMarkerName } from "./layout.js";

/**
 * The files an earlier version of an item stored, which a new version of the same item reuses
 * when its file has the same SHA-256 and size: the new version's entry then names the blob that
 * already holds those bytes, and nothing is uploaded. Files are still downloaded (the portal gives
 * no hash). Blobs are shared between versions of one item only, so a prune counts references per
 * blob (see prune.ts).
 */
export class ReusableFiles {
  static readonly none = new ReusableFiles([]);

  private readonly bySize = new Map<number, ExportedFile[]>();

  constructor(files: readonly ExportedFile[]) {
    for (const file of files) {
      const same = this.bySize.get(file.size) ?? [];
      same.push(file);
      this.bySize.set(file.size, same);
    }
  }

  /**
   * Whether a download of this size (undefined: not announced) could be one of the stored files:
   * only then is it cached whole before it is uploaded, to learn its hash first.
   */
  mayMatch(size: number | undefined): boolean {
    return this.bySize.size > 0 && (size === undefined || this.bySize.has(size));
  }

  /** The stored file with these bytes, if there is one. */
  match(size: number, sha256: string): ExportedFile | undefined {
    return this.bySize.get(size)?.find((file) => file.sha256 === sha256);
  }
}

/**
 * The completion marker of the item's version that the newest earlier run captured (its files,
 * and how its layers are stored), or none when that version is gone or its marker is damaged: the
 * new version then stores every file. A storage failure is thrown, like any other of the export.
 */
export async function previousMarkerOf(
  store: BackupStore,
  itemId: string,
  previousVersion: string | undefined,
): Promise<VersionMarker | undefined> {
  if (!previousVersion) return undefined;
  return store
    .readJson(completionMarkerName(itemId, previousVersion), versionMarkerSchema)
    .catch((error: unknown) => {
      if (error instanceof StoredDocumentError) return undefined;
      throw error;
    });
}

import { randomUUID } from "node:crypto";
import { mkdir, realpath, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { AppError, ValidationError } from "./errors.js";
import { withDeadline } from "./with-deadline.js";

/** A file-system check answers while the user waits: a stuck mount becomes an error, not a hang. */
export const FS_CHECK_TIMEOUT_MS = 5_000;

export function errnoCode(error: unknown): string {
  return (error as NodeJS.ErrnoException).code ?? "unknown error";
}

/**
 * mkdir -p, one level at a time. Node's own recursive mkdir never settles when the OS answers
 * ENOENT for a folder whose parent exists (/proc/x): it retries forever, spinning a core.
 */
export async function makeDirectory(folder: string): Promise<void> {
  try {
    await mkdir(folder);
  } catch (error) {
    const code = errnoCode(error);
    const parent = path.dirname(folder);
    if (code === "EEXIST") return;
    if (code !== "ENOENT" || parent === folder) throw error;
    await makeDirectory(parent);
    await mkdir(folder).catch((again: unknown) => {
      if (errnoCode(again) !== "EEXIST") throw again;
    });
  }
}

/** Creates the folder when missing and proves it writable with a probe file; raw errno errors. */
export async function proveWritableDirectory(folder: string): Promise<void> {
  await makeDirectory(folder);
  const probe = path.join(folder, `.write-probe-${randomUUID()}`);
  // wx: the probe never replaces, and so is never followed by removing, a file the app did not make.
  await writeFile(probe, "probe", { flag: "wx" });
  await rm(probe);
}

/** The real path of `absolute`: symlinks and `..` of the part that exists resolved, the rest appended. */
async function realpathOfExisting(absolute: string): Promise<string> {
  const missing: string[] = [];
  for (let current = absolute; ; current = path.dirname(current)) {
    try {
      return path.join(await realpath(current), ...missing.reverse());
    } catch (error) {
      if (errnoCode(error) !== "ENOENT" || path.dirname(current) === current) throw error;
      missing.push(path.basename(current));
    }
  }
}

/**
 * An identity's cache folder: `directory` (relative to `root`, or absolute) must stay inside
 * `root` (CACHE_ROOT) once `..` and symlinks are resolved, and be creatable and writable. Returns
 * its real path; anything else is a 400 naming the field, also when the file system does not
 * answer within FS_CHECK_TIMEOUT_MS.
 */
export async function checkCacheDirectory(directory: string, root: string, field: string): Promise<string> {
  const check = async () => {
    const realRoot = await realpathOfExisting(path.resolve(root));
    const folder = await realpathOfExisting(path.resolve(root, directory));
    const inside = path.relative(realRoot, folder);
    if (inside === "" || inside === ".." || inside.startsWith(`..${path.sep}`) || path.isAbsolute(inside)) {
      throw new ValidationError(`${field} must be a folder inside CACHE_ROOT (${realRoot})`, field);
    }
    await proveWritableDirectory(folder);
    return folder;
  };
  try {
    return await withDeadline(
      check(),
      FS_CHECK_TIMEOUT_MS,
      () =>
        new ValidationError(
          `${field} ${directory}: the file system did not answer within ${FS_CHECK_TIMEOUT_MS / 1000} s`,
          field,
        ),
    );
  } catch (error) {
    if (error instanceof AppError) throw error;
    throw new ValidationError(`${field} ${directory} is not a writable folder (${errnoCode(error)})`, field);
  }
}

import { randomUUID } from "node:crypto";
import { mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { ValidationError } from "./errors.js";

/** Creates the folder when missing and proves it is writable; the error names the field. */
export async function ensureWritableDirectory(directory: string, field: string): Promise<string> {
  const absolute = path.resolve(directory);
  const probe = path.join(absolute, `.write-probe-${randomUUID()}`);
  try {
    await mkdir(absolute, { recursive: true });
    await writeFile(probe, "probe");
    await rm(probe, { force: true });
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? "unknown error";
    throw new ValidationError(`${field} ${absolute} is not a writable folder (${reason})`, field);
  }
  return absolute;
}

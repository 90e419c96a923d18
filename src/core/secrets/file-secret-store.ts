import { randomBytes } from "node:crypto";
import { chmod, mkdir, open, readFile, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import {
  assertSecretName,
  SECRET_STORE_ERROR_CODES,
  type SecretStore,
  SecretStoreError,
} from "./secret-store.js";

interface SecretEntry {
  value: string;
  tags?: Record<string, string>;
  updated: string;
}

interface SecretFile {
  version: 1;
  secrets: Record<string, SecretEntry>;
}

/** One queue per resolved file path, shared by every instance in this process. */
const queues = new Map<string, Promise<unknown>>();

/**
 * Development-only secret store: one JSON file, created with mode 0600 in a folder created with
 * mode 0700. Each write goes to a temp file in the same folder (0600, fsync'd) that is renamed
 * over the file, so a crash leaves the old or the new content, never half. Operations on one
 * path are serialized within the process (not across processes: one dev host at a time).
 * Never use in Azure: the value sits on disk unencrypted.
 */
export class FileSecretStore implements SecretStore {
  readonly kind = "file" as const;
  readonly filePath: string;

  constructor(filePath: string) {
    this.filePath = path.resolve(filePath);
  }

  async get(name: string): Promise<string | undefined> {
    assertSecretName(name);
    return this.serialize(async () => {
      const { secrets } = await this.read();
      return Object.hasOwn(secrets, name) ? secrets[name]?.value : undefined;
    });
  }

  async set(name: string, value: string, tags?: Record<string, string>): Promise<void> {
    assertSecretName(name);
    if (typeof value !== "string") throw new TypeError("Secret values are strings");
    return this.serialize(async () => {
      const data = await this.read();
      data.secrets[name] = {
        value,
        ...(tags ? { tags: { ...tags } } : {}),
        updated: new Date().toISOString(),
      };
      await this.write(data);
    });
  }

  async delete(name: string): Promise<void> {
    assertSecretName(name);
    return this.serialize(async () => {
      const data = await this.read();
      if (!Object.hasOwn(data.secrets, name)) return;
      delete data.secrets[name];
      await this.write(data);
    });
  }

  async list(prefix = ""): Promise<string[]> {
    return this.serialize(async () =>
      Object.keys((await this.read()).secrets)
        .filter((name) => name.startsWith(prefix))
        .sort(),
    );
  }

  /** The folder can be created and written, and the file (when present) parses. */
  async check(): Promise<void> {
    return this.serialize(async () => {
      await this.ensureFolder();
      await this.read();
      const probe = path.join(path.dirname(this.filePath), `.probe-${randomBytes(6).toString("hex")}`);
      try {
        const handle = await open(probe, "wx", 0o600);
        await handle.close();
        await rm(probe, { force: true });
      } catch (error) {
        throw this.fail("is not writable", error);
      }
    });
  }

  private serialize<T>(work: () => Promise<T>): Promise<T> {
    const previous = queues.get(this.filePath) ?? Promise.resolve();
    const result = previous.then(work, work);
    const tail = result.catch(() => undefined);
    queues.set(this.filePath, tail);
    void tail.then(() => {
      if (queues.get(this.filePath) === tail) queues.delete(this.filePath);
    });
    return result;
  }

  private async read(): Promise<SecretFile> {
    let text: string;
    try {
      text = await readFile(this.filePath, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return { version: 1, secrets: {} };
      throw this.fail("cannot be read", error);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      // The parser's message can quote the file's content: never pass it on.
      throw this.fail("is not valid JSON", undefined);
    }
    if (!isSecretFile(parsed)) throw this.fail("does not have the expected shape", undefined);
    const secrets: Record<string, SecretEntry> = Object.create(null);
    return { version: 1, secrets: Object.assign(secrets, parsed.secrets) };
  }

  private async write(data: SecretFile): Promise<void> {
    await this.ensureFolder();
    const temp = `${this.filePath}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
    try {
      const handle = await open(temp, "wx", 0o600);
      try {
        await handle.chmod(0o600); // in case of an unusual umask
        await handle.writeFile(`${JSON.stringify(data, null, 2)}\n`, "utf8");
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temp, this.filePath);
    } catch (error) {
      await rm(temp, { force: true }).catch(() => undefined);
      throw this.fail("cannot be written", error);
    }
  }

  private async ensureFolder(): Promise<void> {
    const folder = path.dirname(this.filePath);
    try {
      const created = await mkdir(folder, { recursive: true, mode: 0o700 });
      if (created !== undefined) await chmod(folder, 0o700);
      else if (!(await stat(folder)).isDirectory()) throw new Error("not a directory");
    } catch (error) {
      throw this.fail("folder cannot be created", error);
    }
  }

  private fail(problem: string, error: unknown): SecretStoreError {
    const code = (error as NodeJS.ErrnoException | undefined)?.code;
    return new SecretStoreError(
      SECRET_STORE_ERROR_CODES.file,
      `The development secret file ${this.filePath} ${problem}${code ? ` (${code})` : ""}`,
      code ? new Error(code) : undefined,
    );
  }
}

function isSecretFile(value: unknown): value is SecretFile {
  if (typeof value !== "object" || value === null) return false;
  const secrets = (value as { secrets?: unknown }).secrets;
  if (typeof secrets !== "object" || secrets === null || Array.isArray(secrets)) return false;
  return Object.values(secrets).every(
    (entry) =>
      typeof entry === "object" && entry !== null && typeof (entry as SecretEntry).value === "string",
  );
}

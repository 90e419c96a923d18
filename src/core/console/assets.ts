import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { gzipSync } from "node:zlib";

/**
 * The console's files: the page and its stylesheet as written (`src/console/static/`), its
 * scripts as the build compiled them (`dist/console/`, from `src/console/*.ts` by
 * `src/console/tsconfig.json`). Only flat names of those three kinds are served, so no path
 * reaches anything else. Each file is read once and kept with its gzip form and an ETag.
 */

export interface ConsoleAsset {
  body: Buffer;
  gzip: Buffer;
  contentType: string;
  etag: string;
}

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
};

const ASSET_NAME = /^[a-z0-9][a-z0-9-]*\.(html|css|js)$/;

/** The folder with host.json above this module: the app root, from source or from dist/. */
export function appRoot(start = import.meta.dirname): string {
  let dir = start;
  while (!existsSync(path.join(dir, "host.json"))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`No host.json above ${start}`);
    dir = parent;
  }
  return dir;
}

function consoleScriptsDir(root = appRoot()): string {
  return path.join(root, "dist", "console");
}

export class ConsoleAssets {
  private readonly cache = new Map<string, Promise<ConsoleAsset | undefined>>();

  constructor(private readonly root = appRoot()) {}

  /** The file `name` (empty: the page), or undefined when the console has no such file. */
  get(name: string): Promise<ConsoleAsset | undefined> {
    const file = name === "" ? "index.html" : name;
    if (!ASSET_NAME.test(file)) return Promise.resolve(undefined);
    let asset = this.cache.get(file);
    if (!asset) {
      asset = this.load(file);
      this.cache.set(file, asset);
    }
    return asset;
  }

  private async load(file: string): Promise<ConsoleAsset | undefined> {
    const extension = path.extname(file);
    const dir =
      extension === ".js" ? consoleScriptsDir(this.root) : path.join(this.root, "src", "console", "static");
    let body: Buffer;
    try {
      body = await readFile(path.join(dir, file));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw error;
    }
    const etag = `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"`;
    return { body, gzip: gzipSync(body), contentType: CONTENT_TYPES[extension] ?? "", etag };
  }
}

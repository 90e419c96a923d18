import { type ChildProcess, spawn } from "node:child_process";

/**
 * Node flags the local host runs with (`npm start` passes the same; a test keeps them in step).
 * The heap may grow to 1.5× what is live before a full collection: the unchanged second run of the
 * 100,000-item org peaked at 279 MB against 324 MB at 2×, and the 2,010-item backup bench at 229 MB
 * against 252 MB, its CPU per item no higher and the 2 GB file at 0.91 of the plain pipeline (README).
 * Much less, and a large download (whose buffers count against that margin) collects every few MB.
 * The young generation's semi-spaces are 8 MB (16 by default): 16 MB less resident, for scavenges
 * twice as often, each as short (at 100,000 items 16 MB semi-spaces peaked at 343 MB). The 2 GB
 * ceiling is there only because below it V8 picks a small-device policy with a low margin.
 */
export const LOCAL_HOST_NODE_FLAGS = [
  "--max-old-space-size=2048",
  "--heap-growing-percent=50",
  "--max-semi-space-size=8",
];

export interface SpawnedHost {
  child: ChildProcess;
  /** e.g. http://127.0.0.1:41234 */
  baseUrl: string;
}

/**
 * Runs the local host in a process of its own (the way `npm start` does, with its Node flags) and resolves once it
 * prints where it listens. `args` follow `node`: e.g. ["dist/tools/local-host/main.js", "--port", "0"]
 * or ["--import", "tsx", "tools/local-host/main.ts", …].
 */
export function spawnLocalHost(options: {
  args: string[];
  cwd: string;
  env: Record<string, string | undefined>;
  startTimeoutMs?: number;
}): Promise<SpawnedHost> {
  const child = spawn(process.execPath, [...LOCAL_HOST_NODE_FLAGS, ...options.args], {
    cwd: options.cwd,
    env: options.env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  return new Promise<SpawnedHost>((resolve, reject) => {
    let output = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`the host did not start:\n${output}`));
    }, options.startTimeoutMs ?? 30_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /Listening on (http:\/\/\S+)/.exec(output);
      if (!match?.[1]) return;
      clearTimeout(timer);
      child.stdout?.off("data", onData);
      child.stderr?.off("data", onData);
      // Keep draining so a full pipe never blocks the host.
      child.stdout?.resume();
      child.stderr?.resume();
      resolve({ child, baseUrl: match[1] });
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the host exited with code ${code}:\n${output}`));
    });
  });
}

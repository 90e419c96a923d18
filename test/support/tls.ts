import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** A throwaway certificate authority and a localhost server certificate it signed. PEM text. */
export interface TestTls {
  /** The CA certificate, to trust in a client (`tlsOptions: { ca }` or `new https.Agent({ ca })`). */
  ca: string;
  /** The server certificate (CN=localhost, SAN DNS:localhost, IP:127.0.0.1, IP:::1). */
  cert: string;
  /** The server's private key; lives only in memory, never on disk after this returns. */
  key: string;
}

let cached: Promise<TestTls> | undefined;

/**
 * Generates a fresh CA and a server certificate for localhost with openssl, in a temp folder
 * that is removed before returning: no private key is ever written to the repository. EC P-256
 * keys keep it fast (about 50 ms). Cached per process (per vitest worker).
 */
export function testTls(): Promise<TestTls> {
  cached ??= generate();
  return cached;
}

async function generate(): Promise<TestTls> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "test-tls-"));
  const file = (name: string) => path.join(dir, name);
  try {
    const openssl = (args: string[]) => run("openssl", args, { cwd: dir });
    await openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", file("ca.key")]);
    await openssl([
      "req",
      "-x509",
      "-new",
      "-key",
      file("ca.key"),
      "-sha256",
      "-days",
      "2",
      "-subj",
      "/CN=arcgis-org-backup test CA",
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
      "-out",
      file("ca.pem"),
    ]);
    await openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", file("server.key")]);
    await openssl([
      "req",
      "-new",
      "-key",
      file("server.key"),
      "-subj",
      "/CN=localhost",
      "-out",
      file("server.csr"),
    ]);
    await writeFile(
      file("server.ext"),
      [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        "extendedKeyUsage=serverAuth",
        "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1",
        "",
      ].join("\n"),
    );
    await openssl([
      "x509",
      "-req",
      "-in",
      file("server.csr"),
      "-CA",
      file("ca.pem"),
      "-CAkey",
      file("ca.key"),
      "-CAcreateserial",
      "-sha256",
      "-days",
      "2",
      "-extfile",
      file("server.ext"),
      "-out",
      file("server.pem"),
    ]);
    const [ca, cert, key] = await Promise.all([
      readFile(file("ca.pem"), "utf8"),
      readFile(file("server.pem"), "utf8"),
      readFile(file("server.key"), "utf8"),
    ]);
    return { ca, cert, key };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

import type { TokenCredential } from "@azure/identity";
import {
  AnonymousCredential,
  ContainerClient,
  newPipeline,
  type Pipeline,
  type StoragePipelineOptions,
  type StorageRetryOptions,
  StorageSharedKeyCredential,
} from "@azure/storage-blob";
import { BLOB_RETRY_OPTIONS } from "../azure-retries.js";
import { developmentStorageConnectionString } from "../config.js";
import { ValidationError } from "../errors.js";
import { GuardedHttpAgent, GuardedHttpsAgent } from "../net/guarded-agents.js";
import { assertSecureUrl, isLoopbackHost } from "../net/host-policy.js";
import { resumableDownloads } from "./resumable-downloads.js";
import { STORAGE_ERROR_CODES, StorageError } from "./storage-errors.js";

/** Backup storage of an identity: a container reached with a connection string (a secret). */
export interface ConnectionStringBlobTarget {
  type: "azure-blob";
  container: string;
  connectionString: string;
}

/** Backup storage reached with the app's managed identity (no secret). */
export interface AccountUrlBlobTarget {
  type: "azure-blob";
  container: string;
  /** https://<account>.blob.core.windows.net (no query string: a SAS is a secret). */
  accountUrl: string;
}

export type BlobStorageTarget = ConnectionStringBlobTarget | AccountUrlBlobTarget;

export interface OpenBlobContainerOptions {
  /** Needed for accountUrl targets (the app's managed identity in production). */
  credential?: TokenCredential;
  /** Allows http:// endpoints on loopback (Azurite in development and tests). */
  allowInsecureLoopback?: boolean;
  /** Merged over BLOB_RETRY_OPTIONS. */
  retryOptions?: StorageRetryOptions;
}

const CONTAINER_NAME = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/;

/**
 * Azure's container naming rule: 3-63 characters, lowercase letters, digits and hyphens,
 * starting and ending with a letter or digit, no two hyphens in a row. Returns the problem, or
 * undefined when valid.
 */
export function containerNameProblem(name: unknown): string | undefined {
  if (typeof name !== "string" || name.length === 0) return "A container name is required";
  if (name.length < 3 || name.length > 63) return "Container names are 3 to 63 characters long";
  if (!CONTAINER_NAME.test(name)) {
    return "Container names use lowercase letters, digits and hyphens, and start and end with a letter or digit";
  }
  if (name.includes("--")) return "Container names cannot contain two hyphens in a row";
  return undefined;
}

/** Throws ValidationError (field "container") unless the name follows Azure's rules. */
export function assertContainerName(name: unknown): asserts name is string {
  const problem = containerNameProblem(name);
  if (problem) throw new ValidationError(problem, "container");
}

/** The parts of a connection string a blob client needs, checked; `account` is the account name. */
export interface ParsedBlobConnectionString {
  account: string;
  /** Blob service endpoint without a trailing slash. */
  blobEndpoint: string;
  accountKey?: string;
  /** SAS query (no leading "?"). */
  sas?: string;
}

const KNOWN_KEYS = new Map(
  [
    "DefaultEndpointsProtocol",
    "AccountName",
    "AccountKey",
    "EndpointSuffix",
    "BlobEndpoint",
    "SharedAccessSignature",
    "UseDevelopmentStorage",
  ].map((key) => [key.toLowerCase(), key]),
);

function malformedConnectionString(problem: string, field: string): StorageError {
  return new StorageError(
    STORAGE_ERROR_CODES.connectionString,
    `The connection string is malformed: ${problem}`,
    { field },
  );
}

/** The transport rule, and the field errors name ("storage.connectionString" in an identity). */
interface EndpointOptions {
  allowInsecureLoopback?: boolean;
  field?: string;
}

/**
 * Parses an Azure Storage connection string (account key or SAS form). Throws StorageError
 * ERR_STORAGE_CONNECTION_STRING naming what is wrong, never quoting the string. The endpoint
 * must be https unless it is loopback and allowInsecureLoopback is set, and never a link-local
 * or metadata address (ERR_VALIDATION). The one check of a connection string, on every input.
 */
export function parseBlobConnectionString(
  connectionString: string,
  options: EndpointOptions = {},
): ParsedBlobConnectionString {
  const field = options.field ?? "connectionString";
  const malformed = (problem: string) => malformedConnectionString(problem, field);
  if (typeof connectionString !== "string" || connectionString.trim() === "") {
    throw malformed("it is empty");
  }
  const parts = new Map<string, string>();
  for (const raw of connectionString.trim().split(";")) {
    const part = raw.trim();
    if (part === "") continue;
    const eq = part.indexOf("=");
    if (eq <= 0) throw malformed("every part must be Key=Value, separated by ';'");
    const key = KNOWN_KEYS.get(part.slice(0, eq).trim().toLowerCase());
    if (!key) continue; // QueueEndpoint, TableEndpoint, FileEndpoint…: not needed here
    if (parts.has(key)) throw malformed(`${key} appears more than once`);
    parts.set(key, part.slice(eq + 1).trim());
  }
  if (parts.get("UseDevelopmentStorage")?.toLowerCase() === "true") {
    if (!options.allowInsecureLoopback) {
      throw malformed("UseDevelopmentStorage=true is only for local development (ALLOW_INSECURE_LOOPBACK)");
    }
    return parseBlobConnectionString(developmentStorageConnectionString(), options);
  }
  const accountName = parts.get("AccountName");
  const accountKey = parts.get("AccountKey");
  const sas = parts.get("SharedAccessSignature")?.replace(/^\?/, "");
  if (accountName !== undefined && !/^[a-z0-9]{3,24}$/.test(accountName)) {
    throw malformed("AccountName must be 3-24 lowercase letters and digits");
  }
  if (accountKey !== undefined) {
    if (!accountName) throw malformed("AccountKey needs AccountName");
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(accountKey) || accountKey.length % 4 !== 0) {
      throw malformed("AccountKey is not valid base64");
    }
  } else if (sas !== undefined) {
    const query = new URLSearchParams(sas);
    if (!query.get("sig") || !query.get("sv"))
      throw malformed("SharedAccessSignature lacks the sv or sig parameter");
  } else {
    throw malformed("it needs AccountName and AccountKey, or SharedAccessSignature and BlobEndpoint");
  }

  let endpoint = parts.get("BlobEndpoint");
  if (!endpoint) {
    if (!accountName) throw malformed("a SAS connection string needs BlobEndpoint");
    const protocol = (parts.get("DefaultEndpointsProtocol") ?? "https").toLowerCase();
    if (protocol !== "https" && protocol !== "http")
      throw malformed("DefaultEndpointsProtocol must be https");
    const suffix = parts.get("EndpointSuffix") ?? "core.windows.net";
    if (!/^[a-z0-9.-]+$/i.test(suffix)) throw malformed("EndpointSuffix is not a host name suffix");
    endpoint = `${protocol}://${accountName}.blob.${suffix}`;
  }
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw malformed("BlobEndpoint is not a URL");
  }
  if ((url.protocol !== "https:" && url.protocol !== "http:") || url.search || url.username || url.password) {
    throw malformed("BlobEndpoint must be a plain https URL");
  }
  assertSecureUrl(url, field, options.allowInsecureLoopback === true);
  const blobEndpoint = `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
  const account = accountName ?? accountFromEndpoint(url);
  return {
    account,
    blobEndpoint,
    ...(accountKey !== undefined ? { accountKey } : { sas: sas! }),
  };
}

/** account from https://<account>.blob.… or a path-style (Azurite) http://127.0.0.1:port/<account>. */
function accountFromEndpoint(url: URL): string {
  const first = url.pathname.split("/").find(Boolean);
  if (first && (isLoopbackHost(url.hostname) || /^\d+\.\d+\.\d+\.\d+$/.test(url.hostname))) return first;
  return url.hostname.split(".")[0] ?? url.hostname;
}

/** Checks an accountUrl target's URL (https, no SAS, no metadata host); errors name `field`. */
export function parseAccountUrl(accountUrl: string, options: EndpointOptions = {}): URL {
  const field = options.field ?? "accountUrl";
  let url: URL;
  try {
    url = new URL(accountUrl);
  } catch {
    throw new ValidationError(`${field} is not a URL`, field);
  }
  if (url.search || url.hash) {
    throw new ValidationError(
      `${field} must be the plain blob endpoint (a SAS is a secret: give it as a connection string with SharedAccessSignature=…)`,
      field,
    );
  }
  assertSecureUrl(url, field, options.allowInsecureLoopback === true);
  return url;
}

/**
 * Agents that refuse link-local and metadata addresses, after DNS and on redirects too (exported
 * so a test can see the blob traffic goes through them).
 */
export const BLOB_AGENTS = {
  "http:": new GuardedHttpAgent({ keepAlive: true }),
  "https:": new GuardedHttpsAgent({ keepAlive: true }),
};

/** The pipeline of a backup container's clients: bounded retries, guarded agents, resumable downloads. */
function blobPipeline(
  endpoint: string,
  credential: StorageSharedKeyCredential | AnonymousCredential | TokenCredential,
  options: OpenBlobContainerOptions,
): Pipeline {
  const protocol = new URL(endpoint).protocol === "http:" ? "http:" : "https:";
  // `agent` is core-rest-pipeline's PipelineOptions.agent, which the storage client passes on
  // to its pipeline (an agent policy) although its own options type does not list it.
  const pipelineOptions: StoragePipelineOptions & { agent: GuardedHttpAgent | GuardedHttpsAgent } = {
    retryOptions: { ...BLOB_RETRY_OPTIONS, ...options.retryOptions },
    agent: BLOB_AGENTS[protocol],
  };
  const pipeline = newPipeline(credential, pipelineOptions);
  pipeline.factories.push(resumableDownloads);
  return pipeline;
}

/**
 * A ContainerClient for an identity's backup container, with bounded retries and per-try
 * timeouts, whose downloads are read on after a cut. Synchronous and makes no request. Throws
 * ValidationError (container name, insecure URL), StorageError ERR_STORAGE_CONNECTION_STRING, or
 * ERR_STORAGE_NO_CREDENTIAL for an accountUrl target without a credential.
 */
export function openBlobContainer(
  target: BlobStorageTarget,
  options: OpenBlobContainerOptions = {},
): ContainerClient {
  assertContainerName(target.container);
  const container = encodeURIComponent(target.container);
  if ("connectionString" in target && target.connectionString !== undefined) {
    const parsed = parseBlobConnectionString(target.connectionString, options);
    if (parsed.accountKey !== undefined) {
      const credential = new StorageSharedKeyCredential(parsed.account, parsed.accountKey);
      return new ContainerClient(
        `${parsed.blobEndpoint}/${container}`,
        blobPipeline(parsed.blobEndpoint, credential, options),
      );
    }
    return new ContainerClient(
      `${parsed.blobEndpoint}/${container}?${parsed.sas}`,
      blobPipeline(parsed.blobEndpoint, new AnonymousCredential(), options),
    );
  }
  if (!("accountUrl" in target) || typeof target.accountUrl !== "string") {
    throw new ValidationError("Give either connectionString or accountUrl", "connectionString");
  }
  const url = parseAccountUrl(target.accountUrl, options);
  if (!options.credential) {
    throw new StorageError(
      STORAGE_ERROR_CODES.noCredential,
      "The app has no Azure credential to reach storage by accountUrl (managed identity not configured)",
    );
  }
  const base = `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
  return new ContainerClient(`${base}/${container}`, blobPipeline(base, options.credential, options));
}

import { lookup as dnsLookup, type LookupAddress, type LookupAllOptions } from "node:dns";
import { type AgentOptions, type ClientRequestArgs, Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent, type AgentOptions as HttpsAgentOptions } from "node:https";
import type { LookupFunction } from "node:net";
import type { Duplex } from "node:stream";
import { AppError } from "../errors.js";
import { BLOCKED_HOST_TEXT, isBlockedHost } from "./host-policy.js";

export const BLOCKED_ADDRESS_CODE = "ERR_BLOCKED_ADDRESS";

/** A connection the app refused: the host is, or resolves to, a link-local or metadata address. */
export class BlockedAddressError extends AppError {
  constructor(host: string) {
    super(`Refused to connect to ${host}: it is or resolves to ${BLOCKED_HOST_TEXT}`, {
      code: BLOCKED_ADDRESS_CODE,
      status: 400,
    });
  }
}

/** dns.lookup's shape with `all: true`; tests give their own to make a name resolve anywhere. */
export type Resolver = (
  hostname: string,
  options: LookupAllOptions,
  callback: (error: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void,
) => void;

/**
 * A lookup that fails when any address of the name is blocked: a name passes the input check
 * but may resolve (now, or after a redirect) to a metadata address.
 */
export function guardedLookup(resolve: Resolver = dnsLookup): LookupFunction {
  return (hostname, options, callback) => {
    resolve(hostname, { ...options, all: true }, (error, addresses) => {
      if (error) return callback(error, "");
      const blocked = addresses.find((entry) => isBlockedHost(entry.address));
      if (blocked) return callback(new BlockedAddressError(`${hostname} (${blocked.address})`), "");
      const first = addresses[0];
      if (options.all || !first) return callback(null, addresses);
      callback(null, first.address, first.family);
    });
  };
}

type ConnectionCallback = (error: Error | null, stream: Duplex) => void;

/**
 * Every socket of the guarded agents passes here, the first request's and every redirect's: an
 * address literal is checked as it is (no lookup happens for one), a name by the lookup.
 */
function guardConnection(
  options: ClientRequestArgs,
  callback: ConnectionCallback | undefined,
  lookup: LookupFunction,
  connect: (options: ClientRequestArgs, callback?: ConnectionCallback) => Duplex | null | undefined,
): Duplex | null | undefined {
  const host = options.host ?? options.hostname ?? "localhost";
  if (isBlockedHost(host)) {
    const error = new BlockedAddressError(host);
    if (!callback) throw error;
    callback(error, undefined as unknown as Duplex);
    return undefined;
  }
  options.lookup = lookup;
  return connect(options, callback);
}

/** node:http's Agent that never connects to a link-local or cloud metadata address. */
export class GuardedHttpAgent extends HttpAgent {
  private readonly guardedLookup: LookupFunction;

  constructor(options: AgentOptions = {}, resolve?: Resolver) {
    super(options);
    this.guardedLookup = guardedLookup(resolve);
  }

  override createConnection(options: ClientRequestArgs, callback?: ConnectionCallback) {
    return guardConnection(options, callback, this.guardedLookup, (o, cb) => super.createConnection(o, cb));
  }
}

/** node:https's Agent that never connects to a link-local or cloud metadata address. */
export class GuardedHttpsAgent extends HttpsAgent {
  private readonly guardedLookup: LookupFunction;

  constructor(options: HttpsAgentOptions = {}, resolve?: Resolver) {
    super(options);
    this.guardedLookup = guardedLookup(resolve);
  }

  override createConnection(options: ClientRequestArgs, callback?: ConnectionCallback) {
    return guardConnection(options, callback, this.guardedLookup, (o, cb) => super.createConnection(o, cb));
  }
}

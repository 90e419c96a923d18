import { BlockList, isIP } from "node:net";
import { ValidationError } from "../errors.js";

/**
 * Where the app may connect on a user's behalf. Portal and storage URLs come from users (and
 * item URLs from any member of an org), so a link-local or cloud metadata address would let
 * them make the app fetch its own instance metadata or managed identity tokens. Private ranges
 * and loopback stay allowed: Enterprise portals live on private networks, tests on loopback.
 */
const BLOCKED_ADDRESSES = new BlockList();
BLOCKED_ADDRESSES.addSubnet("169.254.0.0", 16, "ipv4"); // link-local: Azure, AWS, GCP, OCI metadata
BLOCKED_ADDRESSES.addSubnet("0.0.0.0", 8, "ipv4"); // "this host": reaches local services
BLOCKED_ADDRESSES.addAddress("100.100.100.200", "ipv4"); // Alibaba Cloud metadata
BLOCKED_ADDRESSES.addAddress("168.63.129.16", "ipv4"); // Azure WireServer
BLOCKED_ADDRESSES.addSubnet("fe80::", 10, "ipv6"); // link-local
BLOCKED_ADDRESSES.addAddress("fd00:ec2::254", "ipv6"); // AWS metadata over IPv6
BLOCKED_ADDRESSES.addAddress("::", "ipv6"); // unspecified

/** Names of metadata services (they resolve to blocked addresses, but say so before any lookup). */
const BLOCKED_NAMES = new Set([
  "metadata",
  "metadata.google.internal",
  "metadata.goog",
  "metadata.azure.internal",
  "instance-data",
  "instance-data.ec2.internal",
]);

const LOOPBACK_NAMES = new Set(["localhost", "::1"]);

/** A URL's hostname without IPv6 brackets, lowercase, without the trailing dot DNS ignores. */
function bareHost(hostname: string): string {
  return hostname
    .replace(/^\[|\]$/g, "")
    .toLowerCase()
    .replace(/\.+$/, "");
}

export function isLoopbackHost(hostname: string): boolean {
  const host = bareHost(hostname);
  return LOOPBACK_NAMES.has(host) || /^127(?:\.\d{1,3}){3}$/.test(host);
}

/** True for a link-local or cloud metadata address or name: the app never connects there. */
export function isBlockedHost(hostname: string): boolean {
  const host = bareHost(hostname);
  const family = isIP(host);
  if (family === 0) return BLOCKED_NAMES.has(host);
  // IPv4-mapped IPv6 (::ffff:169.254.169.254) is checked against the IPv4 rules by BlockList.
  return BLOCKED_ADDRESSES.check(host, family === 6 ? "ipv6" : "ipv4");
}

export const BLOCKED_HOST_TEXT = "a link-local or cloud metadata address";

/**
 * Checks a user-given URL: https (http only on loopback when allowInsecureLoopback), no
 * credentials in it, and not a link-local or metadata host. The error names the field.
 */
export function assertSecureUrl(url: URL, field: string, allowInsecureLoopback: boolean): void {
  if (url.username || url.password) throw new ValidationError(`${field} must not contain credentials`, field);
  if (isBlockedHost(url.hostname)) {
    throw new ValidationError(`${field} must not point to ${BLOCKED_HOST_TEXT}`, field);
  }
  if (url.protocol === "https:") return;
  if (url.protocol === "http:" && allowInsecureLoopback && isLoopbackHost(url.hostname)) return;
  throw new ValidationError(
    allowInsecureLoopback
      ? `${field} must use https (http is allowed only on loopback)`
      : `${field} must use https (http on loopback needs ALLOW_INSECURE_LOOPBACK=true)`,
    field,
  );
}

/** Parses and checks a user-given URL (see assertSecureUrl). */
export function parseSecureUrl(value: string, field: string, allowInsecureLoopback: boolean): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ValidationError(`${field} must be an absolute URL`, field);
  }
  assertSecureUrl(url, field, allowInsecureLoopback);
  return url;
}

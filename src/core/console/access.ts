import { SETTINGS } from "../config.js";

/**
 * Who may use the console, decided from the request alone (pure, no I/O).
 *
 * - Locally (not on Azure's App Service platform) the console is open, as the API is, but only
 *   when the request was addressed to a loopback host: a page of another site that rebinds its
 *   name to 127.0.0.1 arrives with its own name in `Host` and is refused.
 * - On Azure, App Service Authentication (EasyAuth, set up by infra/) signs people in with
 *   Microsoft Entra ID and passes the session's claims in `x-ms-client-principal`, a header it
 *   strips from what clients send. That header is trusted only when the platform says EasyAuth
 *   is on (WEBSITE_AUTH_ENABLED): without it a client could forge one. The principal must carry
 *   the app role named by CONSOLE_ALLOWED_ROLE.
 * - Writes need proof that the page itself sent them (CSRF): `Sec-Fetch-Site: same-origin`, or
 *   an `Origin` equal to the app's own. A request a browser marks as cross-site is refused even
 *   for reading.
 */

const CONSOLE_ROLE_SETTING = "CONSOLE_ALLOWED_ROLE";

/** Where EasyAuth starts an Entra ID sign-in. */
export const SIGN_IN_PATH = "/.auth/login/aad";

export type ConsoleHosting = { kind: "local" } | { kind: "azure"; easyAuth: boolean };

type Env = Record<string, string | undefined>;

/** Azure's App Service platform (Functions included) sets these for every app it runs. */
export function consoleHosting(env: Env = process.env): ConsoleHosting {
  const onAzure = Boolean(env.WEBSITE_SITE_NAME?.trim() || env.WEBSITE_INSTANCE_ID?.trim());
  if (!onAzure) return { kind: "local" };
  return { kind: "azure", easyAuth: env.WEBSITE_AUTH_ENABLED?.trim().toLowerCase() === "true" };
}

export function allowedConsoleRole(env: Env = process.env): string {
  const configured = env[CONSOLE_ROLE_SETTING]?.trim();
  if (configured) return configured;
  return SETTINGS.find((s) => s.name === CONSOLE_ROLE_SETTING)?.defaultValue ?? "Console.Admin";
}

export interface ClientPrincipal {
  name: string | undefined;
  roles: string[];
}

const ROLE_CLAIM_TYPES = ["roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"];
const NAME_CLAIM_TYPES = [
  "name",
  "preferred_username",
  "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
];

/** EasyAuth's `x-ms-client-principal`: base64 of `{ auth_typ, claims: [{ typ, val }], name_typ, role_typ }`. */
export function parseClientPrincipal(header: string | null | undefined): ClientPrincipal | undefined {
  if (!header) return undefined;
  let decoded: unknown;
  try {
    decoded = JSON.parse(Buffer.from(header, "base64").toString("utf8"));
  } catch {
    return undefined;
  }
  if (typeof decoded !== "object" || decoded === null) return undefined;
  const principal = decoded as { claims?: unknown; name_typ?: unknown; role_typ?: unknown };
  if (!Array.isArray(principal.claims)) return undefined;
  const claims = principal.claims.flatMap((claim: unknown) => {
    const { typ, val } = (claim ?? {}) as { typ?: unknown; val?: unknown };
    return typeof typ === "string" && typeof val === "string" ? [{ typ, val }] : [];
  });
  const roleTypes = new Set([...ROLE_CLAIM_TYPES, String(principal.role_typ ?? "")]);
  const nameTypes = [String(principal.name_typ ?? ""), ...NAME_CLAIM_TYPES];
  const name = nameTypes.map((t) => claims.find((c) => c.typ === t)?.val).find((v) => v !== undefined);
  return { name, roles: claims.filter((c) => roleTypes.has(c.typ)).map((c) => c.val) };
}

export interface ConsoleRequest {
  method: string;
  url: string;
  headers: Headers;
}

export type AccessDecision =
  | { ok: true; user: string | undefined }
  | { ok: false; status: 401 | 403; code: string; message: string; signIn?: string };

const READ_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);
const LOOPBACK_HOSTS = new Set(["127.0.0.1", "localhost", "[::1]", "::1"]);

export function decideConsoleAccess(
  request: ConsoleRequest,
  options: { hosting: ConsoleHosting; allowedRole: string; publicBaseUrl?: string | undefined },
): AccessDecision {
  const crossSite = crossSiteRefusal(request, options.publicBaseUrl);
  if (crossSite) return crossSite;
  const { hosting } = options;
  if (hosting.kind === "local") {
    if (LOOPBACK_HOSTS.has(new URL(request.url).hostname.toLowerCase())) return { ok: true, user: undefined };
    return deny(
      403,
      "ERR_CONSOLE_NOT_LOOPBACK",
      "Without App Service Authentication the console answers only on a loopback address (127.0.0.1 or localhost)",
    );
  }
  if (!hosting.easyAuth) {
    return deny(
      403,
      "ERR_CONSOLE_AUTH_DISABLED",
      "App Service Authentication (Microsoft Entra ID) is not enabled on this app; the console needs it (see the README, The console)",
    );
  }
  const principal = parseClientPrincipal(request.headers.get("x-ms-client-principal"));
  if (!principal) {
    return {
      ...deny(401, "ERR_CONSOLE_SIGN_IN", "Sign in with Microsoft Entra ID first"),
      signIn: SIGN_IN_PATH,
    };
  }
  if (!principal.roles.includes(options.allowedRole)) {
    return deny(
      403,
      "ERR_CONSOLE_FORBIDDEN",
      `${principal.name ?? "This account"} does not have the app role ${options.allowedRole} that the console requires`,
    );
  }
  return { ok: true, user: principal.name };
}

/** A browser-marked cross-site request, or a write without proof that this app's page sent it. */
function crossSiteRefusal(
  request: ConsoleRequest,
  publicBaseUrl: string | undefined,
): AccessDecision | undefined {
  const site = request.headers.get("sec-fetch-site")?.toLowerCase();
  const read = READ_METHODS.has(request.method.toUpperCase());
  // Following a link to the console from elsewhere is a (harmless) cross-site navigation.
  const navigation = read && request.headers.get("sec-fetch-mode")?.toLowerCase() === "navigate";
  if (site && site !== "same-origin" && site !== "none" && !navigation) {
    return deny(403, "ERR_CONSOLE_CROSS_SITE", `The console refuses ${site} requests`);
  }
  if (read) return undefined;
  if (site === "same-origin") return undefined;
  const origin = request.headers.get("origin");
  const own = [new URL(request.url).origin, publicBaseUrl ? new URL(publicBaseUrl).origin : undefined];
  if (origin && own.includes(origin)) return undefined;
  return deny(
    403,
    "ERR_CONSOLE_CSRF",
    "A change through the console must come from the console's own page (same-origin Origin or Sec-Fetch-Site)",
  );
}

function deny(status: 401 | 403, code: string, message: string): AccessDecision & { ok: false } {
  return { ok: false, status, code, message };
}

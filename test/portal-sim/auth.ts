import { createHash, randomBytes } from "node:crypto";

export interface TokenEntry {
  /** null for an app (client_credentials) token. */
  username: string | null;
  clientId: string | null;
  expires: number;
}

interface CodeEntry {
  username: string;
  clientId: string;
  redirectUri: string;
  challenge: string | null;
  method: string | null;
  expires: number;
}

export type TokenCheck = { ok: true; entry: TokenEntry } | { ok: false; reason: "invalid" | "expired" };

/** Token, refresh-token and authorization-code bookkeeping for one org. */
export class AuthState {
  private readonly tokens = new Map<string, TokenEntry>();
  private readonly refresh = new Map<string, TokenEntry>();
  private readonly codes = new Map<string, CodeEntry>();
  /** Tokens issued so far (for tests). */
  issued = 0;

  constructor(
    private readonly prefix: string,
    public ttlSeconds: number,
  ) {}

  issue(
    username: string | null,
    clientId: string | null,
    requestedSeconds?: number,
  ): { token: string; expires: number } {
    const ttl = Math.max(1, Math.min(this.ttlSeconds, requestedSeconds ?? this.ttlSeconds));
    const token = `${this.prefix}${randomBytes(24).toString("base64url")}`;
    const expires = Date.now() + ttl * 1000;
    this.tokens.set(token, { username, clientId, expires });
    this.issued++;
    return { token, expires };
  }

  check(token: string): TokenCheck {
    const entry = this.tokens.get(token);
    if (!entry) return { ok: false, reason: "invalid" };
    if (entry.expires <= Date.now()) return { ok: false, reason: "expired" };
    return { ok: true, entry };
  }

  revoke(token: string): void {
    this.tokens.delete(token);
  }

  /** Makes every live token expire now (tests). */
  expireAll(): void {
    for (const e of this.tokens.values()) e.expires = Date.now() - 1;
  }

  issueRefresh(
    username: string,
    clientId: string,
    seconds = 14 * 86_400,
  ): { refreshToken: string; expiresIn: number } {
    const refreshToken = `${this.prefix}R${randomBytes(24).toString("base64url")}`;
    this.refresh.set(refreshToken, { username, clientId, expires: Date.now() + seconds * 1000 });
    return { refreshToken, expiresIn: seconds };
  }

  checkRefresh(token: string, clientId: string): TokenEntry | null {
    const e = this.refresh.get(token);
    if (!e || e.expires <= Date.now() || e.clientId !== clientId) return null;
    return e;
  }

  revokeRefresh(token: string): void {
    this.refresh.delete(token);
  }

  issueCode(entry: Omit<CodeEntry, "expires">): string {
    const code = randomBytes(18).toString("base64url");
    this.codes.set(code, { ...entry, expires: Date.now() + 5 * 60_000 });
    return code;
  }

  /** Consumes a code; returns null when unknown, expired, mismatched or the PKCE proof fails. */
  redeemCode(
    code: string,
    clientId: string,
    redirectUri: string,
    verifier: string | undefined,
  ): CodeEntry | null {
    const e = this.codes.get(code);
    if (!e) return null;
    this.codes.delete(code);
    if (e.expires <= Date.now() || e.clientId !== clientId || e.redirectUri !== redirectUri) return null;
    if (e.challenge) {
      if (!verifier) return null;
      const proof =
        e.method === "plain" ? verifier : createHash("sha256").update(verifier).digest("base64url");
      if (proof !== e.challenge) return null;
    }
    return e;
  }
}

export function isLoopbackRedirect(uri: string): boolean {
  try {
    const u = new URL(uri);
    return (
      (u.protocol === "http:" || u.protocol === "https:") &&
      (u.hostname === "127.0.0.1" || u.hostname === "localhost" || u.hostname === "[::1]")
    );
  } catch {
    return false;
  }
}

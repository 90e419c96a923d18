import { createHash, randomBytes } from "node:crypto";
import type { PortalClient, TokenProvider } from "./portal-client.js";
import { PortalError, PortalSignInError } from "./portal-errors.js";

interface IssuedToken {
  token: string;
  expiresAt: number;
}

/**
 * Caches one token, refreshes it a little before it expires, and lets concurrent callers share
 * a single in-flight refresh. A failed refresh surfaces as PortalSignInError.
 */
abstract class CachedTokenProvider implements TokenProvider {
  private cached: (IssuedToken & { issuedAt: number }) | undefined;
  private inflight: Promise<string> | undefined;

  constructor(
    protected readonly client: PortalClient,
    private readonly now: () => number = Date.now,
  ) {}

  protected abstract issue(): Promise<IssuedToken>;

  getToken(): Promise<string> {
    const cached = this.cached;
    if (cached && !this.expiresSoon(cached)) return Promise.resolve(cached.token);
    this.inflight ??= this.issue()
      .then((issued) => {
        this.cached = { ...issued, issuedAt: this.now() };
        return issued.token;
      }, signInError)
      .finally(() => {
        this.inflight = undefined;
      });
    return this.inflight;
  }

  invalidate(token: string): void {
    if (this.cached?.token === token) this.cached = undefined;
  }

  private expiresSoon(issued: IssuedToken & { issuedAt: number }): boolean {
    const remaining = issued.expiresAt - this.now();
    // Short-lived tokens refresh at 90% of their life, long ones 2 minutes early.
    return remaining < Math.min(120_000, (issued.expiresAt - issued.issuedAt) / 10);
  }
}

function signInError(error: unknown): never {
  if (error instanceof PortalError && !(error instanceof PortalSignInError)) {
    throw new PortalSignInError(`Sign-in failed: ${error.message}`, {
      code: "ERR_PORTAL_SIGN_IN",
      status: 401,
      ...(error.arcgisCode !== undefined ? { arcgisCode: error.arcgisCode } : {}),
      ...(error.messageCode ? { messageCode: error.messageCode } : {}),
      cause: error,
    });
  }
  throw error;
}

/** Built-in (portal) accounts: generateToken, bound to the referer our client sends. */
export class UsernamePasswordTokenProvider extends CachedTokenProvider {
  constructor(
    client: PortalClient,
    private readonly credentials: { username: string; password: string; referer: string },
  ) {
    super(client);
  }

  protected async issue(): Promise<IssuedToken> {
    const response = await this.client.json<{ token?: string; expires?: number }>(
      "generateToken",
      {
        username: this.credentials.username,
        password: this.credentials.password,
        client: "referer",
        referer: this.credentials.referer,
        expiration: 60,
      },
      { auth: false },
    );
    if (!response.token) throw missingToken("generateToken");
    return { token: response.token, expiresAt: response.expires ?? Date.now() + 60 * 60_000 };
  }
}

interface OAuthTokenResponse {
  access_token?: string;
  expires_in?: number;
  refresh_token?: string;
  refresh_token_expires_in?: number;
  username?: string;
}

/** OAuth 2.0 app credentials (client_credentials): an app token with the app owner's reach. */
export class AppCredentialsTokenProvider extends CachedTokenProvider {
  constructor(
    client: PortalClient,
    private readonly credentials: { clientId: string; clientSecret: string },
  ) {
    super(client);
  }

  protected async issue(): Promise<IssuedToken> {
    const response = await this.client.json<OAuthTokenResponse>(
      "oauth2/token",
      {
        client_id: this.credentials.clientId,
        client_secret: this.credentials.clientSecret,
        grant_type: "client_credentials",
        expiration: 120,
      },
      { auth: false },
    );
    return accessTokenFrom(response, "oauth2/token");
  }
}

export interface RefreshTokenState {
  refreshToken: string;
  /** Epoch ms; unknown when the portal did not say. */
  expiresAt: number | undefined;
}

export interface UserTokenProviderOptions {
  clientId: string;
  redirectUri: string;
  state: RefreshTokenState;
  /** Persists a rotated refresh token before it is used. */
  onRotated: (state: RefreshTokenState) => Promise<void>;
  /** Rotate when less than this remains (default 7 days; at most half the lifetime). */
  rotateWithinMs?: number;
}

/**
 * OAuth 2.0 user credentials (authorization code + PKCE): access tokens from the stored refresh
 * token, and the refresh token itself exchanged for a new one before it expires, so a
 * scheduled backup never stops on an expired credential.
 */
export class RefreshTokenProvider extends CachedTokenProvider {
  private state: RefreshTokenState;

  constructor(
    client: PortalClient,
    private readonly options: UserTokenProviderOptions,
  ) {
    super(client);
    this.state = options.state;
  }

  protected async issue(): Promise<IssuedToken> {
    if (this.shouldRotate()) await this.rotate();
    const response = await this.client.json<OAuthTokenResponse>(
      "oauth2/token",
      {
        client_id: this.options.clientId,
        grant_type: "refresh_token",
        refresh_token: this.state.refreshToken,
      },
      { auth: false },
    );
    return accessTokenFrom(response, "oauth2/token");
  }

  private shouldRotate(): boolean {
    if (this.state.expiresAt === undefined) return false;
    const within = this.options.rotateWithinMs ?? 7 * 24 * 3600_000;
    return this.state.expiresAt - Date.now() < within;
  }

  private async rotate(): Promise<void> {
    const response = await this.client.json<OAuthTokenResponse>(
      "oauth2/token",
      {
        client_id: this.options.clientId,
        grant_type: "exchange_refresh_token",
        refresh_token: this.state.refreshToken,
        redirect_uri: this.options.redirectUri,
      },
      { auth: false },
    );
    if (!response.refresh_token) throw missingToken("exchange_refresh_token");
    const next: RefreshTokenState = {
      refreshToken: response.refresh_token,
      expiresAt: response.refresh_token_expires_in
        ? Date.now() + response.refresh_token_expires_in * 1000
        : undefined,
    };
    await this.options.onRotated(next);
    this.state = next;
  }
}

function accessTokenFrom(response: OAuthTokenResponse, endpoint: string): IssuedToken {
  if (!response.access_token) throw missingToken(endpoint);
  return { token: response.access_token, expiresAt: Date.now() + (response.expires_in ?? 1800) * 1000 };
}

function missingToken(endpoint: string): PortalSignInError {
  return new PortalSignInError(`The portal's ${endpoint} answered without a token`, {
    code: "ERR_PORTAL_SIGN_IN",
    status: 401,
  });
}

/** PKCE (RFC 7636, S256) pair for the authorization-code flow. */
export function createPkcePair(): { verifier: string; challenge: string } {
  const verifier = randomBytes(48).toString("base64url");
  const challenge = createHash("sha256").update(verifier).digest("base64url");
  return { verifier, challenge };
}

export function authorizeUrl(
  sharingUrl: string,
  options: { clientId: string; redirectUri: string; state: string; codeChallenge: string },
): string {
  const url = new URL(`${sharingUrl}/oauth2/authorize`);
  url.searchParams.set("client_id", options.clientId);
  url.searchParams.set("response_type", "code");
  url.searchParams.set("redirect_uri", options.redirectUri);
  url.searchParams.set("state", options.state);
  url.searchParams.set("code_challenge", options.codeChallenge);
  url.searchParams.set("code_challenge_method", "S256");
  // Ask for the longest refresh token the portal grants (two weeks, in minutes).
  url.searchParams.set("expiration", String(20160));
  return url.toString();
}

/** Exchanges an authorization code for the first refresh token (and the username). */
export async function exchangeAuthorizationCode(
  client: PortalClient,
  options: { clientId: string; redirectUri: string; code: string; codeVerifier: string },
): Promise<RefreshTokenState & { username: string | undefined }> {
  let response: OAuthTokenResponse;
  try {
    response = await client.json<OAuthTokenResponse>(
      "oauth2/token",
      {
        client_id: options.clientId,
        grant_type: "authorization_code",
        code: options.code,
        redirect_uri: options.redirectUri,
        code_verifier: options.codeVerifier,
      },
      { auth: false },
    );
  } catch (error) {
    signInError(error);
  }
  if (!response.refresh_token) throw missingToken("authorization_code");
  return {
    refreshToken: response.refresh_token,
    expiresAt: response.refresh_token_expires_in
      ? Date.now() + response.refresh_token_expires_in * 1000
      : undefined,
    username: response.username,
  };
}

import {
  PortalClient,
  type PortalClientOptions,
  type RequestPacer,
  type TokenProvider,
} from "../arcgis/portal-client.js";
import { PortalSignInError } from "../arcgis/portal-errors.js";
import {
  AppCredentialsTokenProvider,
  RefreshTokenProvider,
  UsernamePasswordTokenProvider,
} from "../arcgis/token-providers.js";
import type { Identity, SecretField } from "./identity.js";

export interface PortalSessionOptions {
  secrets: Partial<Record<SecretField, string>>;
  /** Redirect URI registered for the oauth2-user flow (needed to rotate refresh tokens). */
  redirectUri: string;
  /** Persists a rotated refresh token. */
  saveRefreshToken: (token: { refreshToken: string; expiresAt: number | undefined }) => Promise<void>;
  pacer?: RequestPacer;
  client?: Partial<Omit<PortalClientOptions, "sharingUrl" | "tokens" | "pacer">>;
}

/** A signed-in portal client for an identity, with the token provider its auth type needs. */
export function openPortalSession(identity: Identity, options: PortalSessionOptions): PortalClient {
  const base = { sharingUrl: identity.sharingUrl, ...options.client };
  // Token requests are never paced by the org's feature budget; they have their own client.
  const tokenClient = new PortalClient(base);
  const tokens = tokenProviderFor(identity, tokenClient, options);
  return new PortalClient({ ...base, tokens, ...(options.pacer ? { pacer: options.pacer } : {}) });
}

function tokenProviderFor(
  identity: Identity,
  client: PortalClient,
  options: PortalSessionOptions,
): TokenProvider {
  const { auth } = identity;
  switch (auth.type) {
    case "builtin":
      return new UsernamePasswordTokenProvider(client, {
        username: auth.username,
        password: required(options.secrets.password, "password"),
        referer: client.referer,
      });
    case "oauth2-app":
      return new AppCredentialsTokenProvider(client, {
        clientId: auth.clientId,
        clientSecret: required(options.secrets.clientSecret, "client secret"),
      });
    case "oauth2-user":
      return new RefreshTokenProvider(client, {
        clientId: auth.clientId,
        redirectUri: options.redirectUri,
        state: {
          refreshToken: required(
            options.secrets.refreshToken,
            "refresh token (sign in first: POST /api/identities/{id}/oauth/start)",
          ),
          expiresAt: auth.refreshTokenExpiresAt,
        },
        onRotated: options.saveRefreshToken,
      });
  }
}

function required(value: string | undefined, what: string): string {
  if (value === undefined) {
    throw new PortalSignInError(`The identity has no stored ${what}`, {
      code: "ERR_IDENTITY_NOT_SIGNED_IN",
      status: 409,
    });
  }
  return value;
}

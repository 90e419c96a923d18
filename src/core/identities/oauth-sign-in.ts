import { randomBytes } from "node:crypto";
import { RestError, type TableClient } from "@azure/data-tables";
import { PortalClient } from "../arcgis/portal-client.js";
import { authorizeUrl, createPkcePair, exchangeAuthorizationCode } from "../arcgis/token-providers.js";
import { AppError, NotFoundError, ValidationError } from "../errors.js";
import type { SecretStore } from "../secrets/secret-store.js";
import type { StoredIdentity } from "./identity.js";
import type { IdentityService } from "./identity-service.js";

const PARTITION = "oauth-state";
/** How long an admin has to finish signing in at the portal. */
export const SIGN_IN_WINDOW_MS = 15 * 60_000;

interface PendingSignIn {
  partitionKey: string;
  rowKey: string;
  identityId: string;
  redirectUri: string;
  createdAt: number;
}

/**
 * The oauth2-user flow: `start` returns the portal's authorize URL (PKCE S256, a one-time
 * state), `complete` exchanges the code and stores the refresh token in the secret store.
 * The PKCE verifier is a secret too, so it waits in the secret store, not in the table.
 */
export class OAuthSignIn {
  constructor(
    private readonly identities: IdentityService,
    private readonly pending: TableClient,
    private readonly secrets: SecretStore,
  ) {}

  async start(identityId: string, redirectUri: string) {
    const identity = await this.identities.get(identityId);
    if (identity.auth.type !== "oauth2-user") {
      throw new ValidationError(
        "OAuth sign-in is only for identities with auth.type oauth2-user",
        "auth.type",
      );
    }
    const state = randomBytes(24).toString("hex");
    const { verifier, challenge } = createPkcePair();
    await this.secrets.set(verifierName(state), verifier, { identityId, purpose: "oauth-pkce" });
    const row: PendingSignIn = {
      partitionKey: PARTITION,
      rowKey: state,
      identityId,
      redirectUri,
      createdAt: Date.now(),
    };
    await this.pending.createEntity(row);
    return {
      authorizeUrl: authorizeUrl(identity.sharingUrl, {
        clientId: identity.auth.clientId,
        redirectUri,
        state,
        codeChallenge: challenge,
      }),
      redirectUri,
      expiresAt: new Date(row.createdAt + SIGN_IN_WINDOW_MS).toISOString(),
    };
  }

  async complete(query: {
    state?: string | null;
    code?: string | null;
    error?: string | null;
  }): Promise<StoredIdentity> {
    const state = query.state ?? "";
    if (!/^[0-9a-f]{48}$/.test(state)) throw new ValidationError("state is missing or malformed", "state");
    const row = await this.take(state);
    const verifier = await this.secrets.get(verifierName(state));
    await this.secrets.delete(verifierName(state)).catch(() => {});
    if (query.error) {
      throw new AppError(`The portal did not grant access: ${query.error}`, {
        code: "ERR_OAUTH_DENIED",
        status: 400,
      });
    }
    if (!query.code) throw new ValidationError("code is required", "code");
    if (!verifier || Date.now() - row.createdAt > SIGN_IN_WINDOW_MS) {
      throw new AppError("The sign-in took too long; start it again", {
        code: "ERR_OAUTH_EXPIRED",
        status: 400,
      });
    }
    const identity = await this.identities.get(row.identityId);
    if (identity.auth.type !== "oauth2-user") {
      throw new ValidationError("The identity no longer uses oauth2-user sign-in", "auth.type");
    }
    const client = new PortalClient({ sharingUrl: identity.sharingUrl });
    const token = await exchangeAuthorizationCode(client, {
      clientId: identity.auth.clientId,
      redirectUri: row.redirectUri,
      code: query.code,
      codeVerifier: verifier,
    });
    return this.identities.saveRefreshToken(identity.id, { ...token, redirectUri: row.redirectUri });
  }

  /** Reads and removes the pending sign-in, so a state works once. */
  private async take(state: string): Promise<PendingSignIn> {
    try {
      const row = await this.pending.getEntity<PendingSignIn>(PARTITION, state);
      await this.pending.deleteEntity(PARTITION, state, { etag: row.etag });
      return row;
    } catch (error) {
      if (error instanceof RestError && (error.statusCode === 404 || error.statusCode === 412)) {
        throw new NotFoundError("Unknown or already used sign-in state");
      }
      throw error;
    }
  }
}

function verifierName(state: string): string {
  return `oauth-pkce-${state}`;
}

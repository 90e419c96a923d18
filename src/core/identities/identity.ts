import { z } from "zod";
import type { PortalKind } from "../arcgis/portal-url.js";
import { type RetentionPolicy, retentionPolicySchema } from "../backup/retention-policy.js";
import { storageInputSchema, storagePatchSchema } from "../storage/storage-input.js";

/** Secret values an identity may hold; each lives in the secret store, never in the table. */
export const SECRET_FIELDS = ["password", "clientSecret", "refreshToken", "connectionString"] as const;
export type SecretField = (typeof SECRET_FIELDS)[number];

const text = (max: number) => z.string().trim().min(1).max(max);

const builtinAuth = z.strictObject({
  type: z.literal("builtin"),
  username: text(256),
  password: z.string().min(1).max(1024),
});
const appAuth = z.strictObject({
  type: z.literal("oauth2-app"),
  clientId: text(256),
  clientSecret: z.string().min(1).max(1024),
});
const userAuth = z.strictObject({ type: z.literal("oauth2-user"), clientId: text(256) });

export const authInputSchema = z.discriminatedUnion("type", [builtinAuth, appAuth, userAuth]);

export const scheduleSchema = z.strictObject({ cron: text(200), enabled: z.boolean().default(true) });

const commonFields = {
  name: text(100),
  kind: z.enum(["arcgis-online", "arcgis-enterprise"]),
  portalUrl: text(2048),
  cacheDirectory: text(1024).optional(),
  schedule: scheduleSchema.optional(),
  /** Share of the org's request-unit budget a backup may use. */
  maxOrgBudgetShare: z.number().gt(0).lte(1).optional(),
  /** Which runs to keep; absent: every run. */
  retention: retentionPolicySchema.optional(),
};

export const identityInputSchema = z.strictObject({
  ...commonFields,
  auth: authInputSchema,
  storage: storageInputSchema,
});
export type IdentityInput = z.infer<typeof identityInputSchema>;

/** PATCH: any subset; inside auth and storage a secret left out keeps its stored value. */
export const identityPatchSchema = z.strictObject({
  name: commonFields.name.optional(),
  kind: commonFields.kind.optional(),
  portalUrl: commonFields.portalUrl.optional(),
  cacheDirectory: commonFields.cacheDirectory,
  schedule: scheduleSchema.nullable().optional(),
  maxOrgBudgetShare: commonFields.maxOrgBudgetShare,
  /** A PATCH replaces the whole policy; null removes it. */
  retention: retentionPolicySchema.nullable().optional(),
  auth: z
    .discriminatedUnion("type", [
      builtinAuth.partial({ password: true }),
      appAuth.partial({ clientSecret: true }),
      userAuth,
    ])
    .optional(),
  storage: storagePatchSchema.optional(),
});
export type IdentityPatch = z.infer<typeof identityPatchSchema>;

export type StoredAuth =
  | { type: "builtin"; username: string }
  | { type: "oauth2-app"; clientId: string }
  | {
      type: "oauth2-user";
      clientId: string;
      /** Set once the admin has signed in through the OAuth flow. */
      username?: string;
      /** The redirect URI the sign-in used; exchanging the refresh token needs it again. */
      redirectUri?: string;
      refreshTokenExpiresAt?: number;
    };

export interface StoredStorage {
  type: "azure-blob";
  container: string;
  accountUrl?: string;
}

export interface VerificationResult {
  ok: boolean;
  at: string;
  portal?: { id: string; name: string; urlKey?: string; isPortal: boolean };
  user?: { username: string; role: string; privileges: string[] };
  warnings: string[];
  error?: { code: string; message: string };
}

/** The identity as the table holds it: no secret values, only the names of their secrets. */
export interface Identity {
  id: string;
  name: string;
  kind: PortalKind;
  portalUrl: string;
  sharingUrl: string;
  auth: StoredAuth;
  storage: StoredStorage;
  cacheDirectory: string;
  schedule?: { cron: string; enabled: boolean };
  maxOrgBudgetShare: number;
  retention?: RetentionPolicy;
  secretNames: Partial<Record<SecretField, string>>;
  createdAt: string;
  updatedAt: string;
  lastVerifiedAt?: string;
  lastVerification?: VerificationResult;
  /** When the scheduler last started (or skipped) a scheduled run. */
  lastScheduledAt?: string;
}

export interface StoredIdentity extends Identity {
  etag: string;
}

/** What the API shows: secrets only as "is set". */
export type IdentityView = Omit<Identity, "secretNames"> & {
  secrets: Partial<Record<SecretField, true>>;
  etag: string;
};

export function toView(identity: StoredIdentity): IdentityView {
  const { secretNames, ...rest } = identity;
  const secrets: Partial<Record<SecretField, true>> = {};
  for (const field of SECRET_FIELDS) if (secretNames[field]) secrets[field] = true;
  return { ...rest, secrets };
}

export const DEFAULT_BUDGET_SHARE = 0.5;

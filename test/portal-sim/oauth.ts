import { isLoopbackRedirect } from "./auth.js";
import type { Handler, SimContext } from "./context.js";
import { err, type Reply } from "./http.js";

/** generateToken: username/password, or an existing token + serverUrl (federated server token). */
export const generateToken: Handler = (ctx, req) => {
  const p = req.params;
  const minutes = p.expiration ? Number(p.expiration) : undefined;
  const seconds = minutes && Number.isFinite(minutes) ? minutes * 60 : undefined;
  if (p.username !== undefined || p.password !== undefined) {
    const u = p.username ? ctx.org.user(p.username) : undefined;
    if (!u || u.password !== p.password)
      return err(400, "Unable to generate token.", ["Invalid username or password."]);
    const t = ctx.auth.issue(u.username, null, seconds);
    return { json: { token: t.token, expires: t.expires, ssl: false } };
  }
  const existing = p.token ?? bearer(req.headers);
  if (existing && p.serverUrl) {
    const check = ctx.auth.check(existing);
    if (!check.ok) return err(498, "Invalid token.", ["Invalid token."]);
    const remaining = Math.floor((check.entry.expires - Date.now()) / 1000);
    const t = ctx.auth.issue(
      check.entry.username,
      check.entry.clientId,
      Math.min(remaining, seconds ?? remaining),
    );
    return { json: { token: t.token, expires: t.expires, ssl: false } };
  }
  return err(400, "Unable to generate token.", [
    "'username' must be specified.",
    "'password' must be specified.",
  ]);
};

export function bearer(headers: Record<string, string | string[] | undefined>): string | undefined {
  for (const h of ["x-esri-authorization", "authorization"]) {
    const v = headers[h];
    const s = Array.isArray(v) ? v[0] : v;
    const m = s ? /^Bearer\s+(\S+)/i.exec(s) : null;
    if (m?.[1]) return m[1];
  }
  return undefined;
}

const oauthError = (code: number, error: string, description: string): Reply => ({
  json: { error: { code, error, error_description: description, message: description, details: [] } },
});

function redirectAllowed(ctx: SimContext, uri: string): boolean {
  return (
    uri === "urn:ietf:wg:oauth:2.0:oob" || ctx.oauthApp.redirectUris.includes(uri) || isLoopbackRedirect(uri)
  );
}

export const oauthToken: Handler = (ctx, req) => {
  const p = req.params;
  const clientId = p.client_id ?? "";
  if (clientId !== ctx.oauthApp.clientId) return oauthError(400, "invalid_request", "Invalid client_id");
  const ttl = ctx.auth.ttlSeconds;
  switch (p.grant_type) {
    case "client_credentials": {
      if (p.client_secret !== ctx.oauthApp.clientSecret)
        return oauthError(400, "invalid_client", "Invalid client_secret");
      const t = ctx.auth.issue(null, clientId);
      return { json: { access_token: t.token, expires_in: ttl } };
    }
    case "authorization_code": {
      const code = ctx.auth.redeemCode(p.code ?? "", clientId, p.redirect_uri ?? "", p.code_verifier);
      if (!code) return oauthError(400, "invalid_request", "Invalid authorization code");
      const t = ctx.auth.issue(code.username, clientId);
      const r = ctx.auth.issueRefresh(code.username, clientId);
      return {
        json: {
          access_token: t.token,
          expires_in: ttl,
          username: code.username,
          ssl: false,
          refresh_token: r.refreshToken,
          refresh_token_expires_in: r.expiresIn,
        },
      };
    }
    case "refresh_token": {
      const e = ctx.auth.checkRefresh(p.refresh_token ?? "", clientId);
      if (!e?.username) return oauthError(498, "invalid_request", "Invalid refresh_token");
      const t = ctx.auth.issue(e.username, clientId);
      return { json: { access_token: t.token, expires_in: ttl, username: e.username, ssl: false } };
    }
    case "exchange_refresh_token": {
      const e = ctx.auth.checkRefresh(p.refresh_token ?? "", clientId);
      if (!e?.username) return oauthError(498, "invalid_request", "Invalid refresh_token");
      ctx.auth.revokeRefresh(p.refresh_token ?? "");
      const t = ctx.auth.issue(e.username, clientId);
      const r = ctx.auth.issueRefresh(e.username, clientId);
      return {
        json: {
          access_token: t.token,
          expires_in: ttl,
          username: e.username,
          ssl: false,
          refresh_token: r.refreshToken,
          refresh_token_expires_in: r.expiresIn,
        },
      };
    }
    default:
      return oauthError(400, "unsupported_grant_type", `Unsupported grant_type ${p.grant_type ?? ""}`);
  }
};

/**
 * oauth2/authorize auto-approves as the admin (or as `sim_user`, a simulator-only parameter)
 * and redirects to redirect_uri?code=…&state=….
 */
export const oauthAuthorize: Handler = (ctx, req) => {
  const p = req.params;
  if (p.client_id !== ctx.oauthApp.clientId) return oauthError(400, "invalid_request", "Invalid client_id");
  const redirectUri = p.redirect_uri ?? "";
  if (!redirectAllowed(ctx, redirectUri)) return oauthError(400, "invalid_request", "Invalid redirect_uri");
  if ((p.response_type ?? "code") !== "code")
    return oauthError(400, "unsupported_response_type", "Only response_type=code is supported");
  const user = p.sim_user ? ctx.org.user(p.sim_user) : ctx.org.admin;
  if (!user) return oauthError(400, "invalid_request", "Unknown sim_user");
  if (
    p.code_challenge &&
    (p.code_challenge_method ?? "plain") !== "S256" &&
    p.code_challenge_method !== "plain"
  )
    return oauthError(400, "invalid_request", "Unsupported code_challenge_method");
  const code = ctx.auth.issueCode({
    username: user.username,
    clientId: ctx.oauthApp.clientId,
    redirectUri,
    challenge: p.code_challenge ?? null,
    method: p.code_challenge ? (p.code_challenge_method ?? "plain") : null,
  });
  const target = new URL(redirectUri);
  target.searchParams.set("code", code);
  if (p.state !== undefined) target.searchParams.set("state", p.state);
  return { status: 302, headers: { location: target.toString() }, body: "" };
};

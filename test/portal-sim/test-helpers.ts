import type { PortalSim } from "./index.js";

export type Json = Record<string, unknown>;

export async function getJson(url: string, params: Record<string, string | number> = {}): Promise<Json> {
  const u = new URL(url);
  u.searchParams.set("f", "json");
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, String(v));
  const r = await fetch(u);
  return (await r.json()) as Json;
}

export async function postForm(url: string, params: Record<string, string | number> = {}): Promise<Json> {
  const body = new URLSearchParams({ f: "json" });
  for (const [k, v] of Object.entries(params)) body.set(k, String(v));
  const r = await fetch(url, { method: "POST", body });
  return (await r.json()) as Json;
}

export async function tokenFor(
  sim: PortalSim,
  username = sim.admin.username,
  password?: string,
): Promise<string> {
  const user = sim.model.user(username);
  const r = await postForm(`${sim.sharingUrl}/generateToken`, {
    username,
    password: password ?? user?.password ?? "",
    client: "referer",
    referer: "http://localhost",
    expiration: 60,
  });
  if (typeof r.token !== "string") throw new Error(`no token: ${JSON.stringify(r)}`);
  return r.token;
}

export const errorOf = (j: Json) =>
  j.error as { code: number; message: string; messageCode?: string; details: string[] };

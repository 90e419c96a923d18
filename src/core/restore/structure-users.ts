import { z } from "zod";
import type { PortalClient } from "../arcgis/portal-client.js";
import { isPortalRefusal } from "../arcgis/portal-errors.js";
import { pages } from "../backup/inventory.js";
import type { PagedResponse } from "../backup/portal-types.js";
import { writeOnce } from "./context.js";
import type { MissingUser, UsersMode } from "./structure-model.js";

/** At most this many invitations per `portals/self/invite` call. */
const INVITE_CHUNK = 100;

const BUILT_IN_ROLES = new Set(["org_admin", "org_publisher", "org_user"]);

/** A member of the source org as its backup lists them (`users.ndjson`). */
export const sourceUserSchema = z.looseObject({
  username: z.string(),
  email: z.string().nullish(),
  fullName: z.string().nullish(),
  role: z.string().nullish(),
  roleId: z.string().nullish(),
  userLicenseTypeId: z.string().nullish(),
  provider: z.string().nullish(),
  idpUsername: z.string().nullish(),
});
export type SourceUser = z.infer<typeof sourceUserSchema>;

export interface UsersInput {
  portal: PortalClient;
  apply: boolean;
  mode: UsersMode;
  missing: MissingUser[];
  sourceUsers: SourceUser[];
  /** Source custom role id → target role id (the roles the same step matched or created). */
  roleIds: ReadonlyMap<string, string>;
}

interface Invitation {
  user: MissingUser;
  entry: Record<string, string>;
}

/**
 * With `users: "invite"`, the missing users are invited (ArcGIS Online: an email each, pending
 * until accepted) or, on ArcGIS Enterprise, added when they sign in through the portal's identity
 * provider. Built-in Enterprise accounts are never created: a restore cannot know their password.
 * Whoever is a member or has an invitation pending is not invited again, so a retried step sends
 * nothing twice. Answers notes for the report.
 */
export async function inviteMissingUsers(input: UsersInput): Promise<string[]> {
  if (input.mode !== "invite" || input.missing.length === 0) return [];
  const self = await input.portal.json<{ isPortal?: boolean }>("portals/self", {}, { method: "GET" });
  const enterprise = self.isPortal === true;
  const pending = enterprise ? new Set<string>() : await pendingInvitations(input.portal);
  if (pending === undefined) {
    for (const user of input.missing)
      Object.assign(user, {
        action: "invite",
        status: input.apply ? "failed" : "skipped",
        reason: "the target refused to list its invitations (an administrator may invite)",
      });
    return [];
  }
  const byName = new Map(input.sourceUsers.map((u) => [u.username.toLowerCase(), u]));
  const invitations: Invitation[] = [];
  for (const user of input.missing) {
    const invitation = invitationFor(
      user,
      byName.get(user.username.toLowerCase()),
      enterprise,
      input.roleIds,
    );
    if (!invitation) continue;
    if (
      pending.has(user.targetUsername.toLowerCase()) ||
      pending.has(invitation.entry.email?.toLowerCase() ?? "")
    ) {
      Object.assign(user, { status: "pending", reason: "an invitation is already pending" });
    } else invitations.push(invitation);
  }
  for (let i = 0; i < invitations.length && input.apply; i += INVITE_CHUNK) {
    await sendInvitations(input.portal, invitations.slice(i, i + INVITE_CHUNK), enterprise);
  }
  if (enterprise) return [];
  return ["Invited users join their groups when the same restore is run again after they have accepted"];
}

/** The invitation for one user, or undefined with the reason recorded on the user. */
function invitationFor(
  user: MissingUser,
  source: SourceUser | undefined,
  enterprise: boolean,
  roleIds: ReadonlyMap<string, string>,
): Invitation | undefined {
  const action = enterprise ? "create" : "invite";
  const skip = (reason: string) => {
    Object.assign(user, { action, status: "skipped", reason });
    return undefined;
  };
  if (!source?.email) return skip("no email in the backup: not invitable");
  if (enterprise && (source.provider !== "enterprise" || !source.idpUsername)) {
    return skip("a built-in account: a restore cannot set its password; add it in the portal");
  }
  const customRole = source.roleId ? roleIds.get(source.roleId) : undefined;
  const role = customRole ?? (BUILT_IN_ROLES.has(source.role ?? "") ? (source.role as string) : "org_user");
  const entry: Record<string, string> = {
    username: user.targetUsername,
    email: source.email,
    fullname: source.fullName ?? user.targetUsername,
    role,
    ...(source.userLicenseTypeId ? { userLicenseType: source.userLicenseTypeId } : {}),
    // The invitation names the account's identity provider as `targetUserProvider` (as the ArcGIS
    // API for Python sends it), the user's own record as `provider`.
    ...(enterprise ? { targetUserProvider: "enterprise", idpUsername: source.idpUsername as string } : {}),
  };
  Object.assign(user, { action, status: "planned" });
  return { user, entry };
}

/** One `portals/self/invite` call; whoever the target did not take is reported failed. */
async function sendInvitations(
  portal: PortalClient,
  batch: Invitation[],
  enterprise: boolean,
): Promise<void> {
  const names = batch.map((i) => i.user.targetUsername.toLowerCase());
  // Not repeated blindly: when the answer is lost, the invitations may have been sent all the same.
  const answer = await writeOnce(
    (options) =>
      portal.json<{ notInvited?: string[] }>(
        "portals/self/invite",
        { invitationList: JSON.stringify({ invitations: batch.map((i) => i.entry) }) },
        options,
      ),
    async () => {
      const done = enterprise ? await memberNames(portal) : await pendingInvitations(portal);
      if (!done || !names.some((n) => done.has(n))) return undefined;
      return { notInvited: names.filter((n) => !done.has(n)) };
    },
  );
  const refused = new Set((answer.notInvited ?? []).map((n) => n.toLowerCase()));
  for (const { user, entry } of batch) {
    const failed =
      refused.has(user.targetUsername.toLowerCase()) || refused.has(entry.email?.toLowerCase() ?? "");
    Object.assign(
      user,
      failed
        ? { status: "failed", reason: "the target did not take the invitation" }
        : { status: enterprise ? "created" : "invited" },
    );
  }
}

/** Usernames and emails (lowercase) with an invitation pending; undefined when refused. */
async function pendingInvitations(portal: PortalClient): Promise<Set<string> | undefined> {
  const out = new Set<string>();
  try {
    for await (const page of pages<
      PagedResponse & { invitations?: Array<{ username?: string; email?: string }> }
    >(portal, "portals/self/invitations")) {
      for (const invitation of page.invitations ?? []) {
        if (invitation.username) out.add(invitation.username.toLowerCase());
        if (invitation.email) out.add(invitation.email.toLowerCase());
      }
    }
  } catch (error) {
    if (isPortalRefusal(error)) return undefined;
    throw error;
  }
  return out;
}

/** The target's usernames (lowercase): an Enterprise account added before the answer was lost. */
async function memberNames(portal: PortalClient): Promise<Set<string>> {
  const out = new Set<string>();
  for await (const page of pages<PagedResponse & { users?: Array<{ username: string }> }>(
    portal,
    "portals/self/users",
  )) {
    for (const user of page.users ?? []) out.add(user.username.toLowerCase());
  }
  return out;
}

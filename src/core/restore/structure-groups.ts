import { buffer } from "node:stream/consumers";
import type { PortalClient } from "../arcgis/portal-client.js";
import type { BackupStore } from "../backup/backup-store.js";
import { type GroupRecord, membershipsOf } from "../backup/org-structure.js";
import type { PortalGroup } from "../backup/portal-types.js";
import { writeOnce } from "./context.js";
import {
  type GroupOutcome,
  type MissingUser,
  mapUsername,
  matchGroup,
  recordFailure,
} from "./structure-model.js";
import { readTargetGroups, type TargetSelf, type TargetUser } from "./target.js";

const GROUP_ACCESS = new Set(["private", "org", "public"]);

/** At most this many users per addUsers call (the documented limit). */
const ADD_USERS_CHUNK = 25;

export interface GroupsInput {
  portal: PortalClient;
  store: BackupStore;
  self: TargetSelf;
  sameOrg: boolean;
  usernameMap?: Record<string, string>;
  apply: boolean;
  sourceGroups: GroupRecord[];
  sourceUsers: Array<{ username: string; role?: string | null; userLicenseTypeId?: string | null }>;
  targetUsers: Map<string, TargetUser>;
  targetGroups: { byId: Map<string, PortalGroup>; byTitle: Map<string, PortalGroup> };
}

/**
 * Each group of the backup into the target: the same group (same org, by id) or one of the same
 * title, else a new one with the backup's settings, thumbnail and category schema. Members whose
 * (mapped) user exists in the target are added; the others are listed, never created.
 */
export async function restoreGroups(
  input: GroupsInput,
): Promise<{ groups: GroupOutcome[]; missingUsers: MissingUser[] }> {
  const groups: GroupOutcome[] = [];
  for (const group of input.sourceGroups) groups.push(await restoreGroup(input, group));
  return { groups, missingUsers: missingUsersOf(input) };
}

async function restoreGroup(input: GroupsInput, group: GroupRecord): Promise<GroupOutcome> {
  const match = matchGroup(input.targetGroups, input.sameOrg, group);
  const outcome: GroupOutcome = {
    sourceId: group.id,
    title: group.title,
    action: match ? "match" : "create",
    targetId: match?.id ?? null,
    members: [],
    missingMembers: [],
    notAdded: [],
    thumbnail: !match && !!group.thumbnailBlob,
    categorySchema: !match && (group.categorySchema?.length ?? 0) > 0,
    notes: [],
    status: input.apply ? "done" : "planned",
  };
  const present = match
    ? await currentMembers(input.portal, match.id)
    : new Set([input.self.username.toLowerCase()]);
  for (const { username, memberType } of membershipsOf(group)) {
    const wanted = mapUsername(username, input.usernameMap);
    const user = input.targetUsers.get(wanted.toLowerCase());
    if (!user) outcome.missingMembers.push(username);
    else if (!present.has(user.username.toLowerCase()))
      // The owner of a new group is the restoring user; the original owner manages it.
      outcome.members.push({
        username: user.username,
        memberType: memberType === "member" ? "member" : "admin",
      });
  }
  if (
    !match &&
    group.owner &&
    mapUsername(group.owner, input.usernameMap).toLowerCase() !== input.self.username.toLowerCase()
  ) {
    outcome.notes.push(`Owned by ${input.self.username} in the target (owner in the backup: ${group.owner})`);
  }
  if (group.protected) outcome.notes.push("Delete protection is not set by a restore");
  if (!input.apply) return outcome;
  await recordFailure(outcome, async () => {
    if (!outcome.targetId) outcome.targetId = await createGroup(input, group);
    if (outcome.categorySchema) {
      await input.portal.json(`community/groups/${outcome.targetId}/assignCategorySchema`, {
        categorySchema: JSON.stringify({ categorySchema: group.categorySchema }),
      });
    }
    outcome.notAdded = await addMembers(input.portal, outcome.targetId, outcome.members);
  });
  return outcome;
}

/** Usernames (lowercase) in a target group now, so a retried step adds only the rest. */
async function currentMembers(portal: PortalClient, groupId: string): Promise<Set<string>> {
  const users = await portal.json<{ owner?: string; admins?: string[]; users?: string[] }>(
    `community/groups/${groupId}/users`,
    {},
    { method: "GET" },
  );
  return new Set(
    [users.owner, ...(users.admins ?? []), ...(users.users ?? [])]
      .filter(Boolean)
      .map((u) => String(u).toLowerCase()),
  );
}

async function createGroup(input: GroupsInput, group: GroupRecord): Promise<string> {
  const params: Record<string, unknown> = {
    title: group.title,
    access: GROUP_ACCESS.has(group.access ?? "") ? group.access : "private",
    description: group.description ?? "",
    snippet: group.snippet ?? "",
    tags: (group.tags ?? []).join(","),
    isInvitationOnly: group.isInvitationOnly ?? false,
    isViewOnly: group.isViewOnly ?? false,
    autoJoin: group.autoJoin ?? false,
  };
  if (group.sortField) params.sortField = group.sortField;
  if (group.sortOrder) params.sortOrder = group.sortOrder;
  if (group.membershipAccess) params.membershipAccess = group.membershipAccess;
  if (group.capabilities?.length) params.capabilities = group.capabilities.join(",");
  if (group.thumbnailBlob && group.thumbnail) {
    const bytes = await buffer(await input.store.openRead(group.thumbnailBlob));
    params.thumbnail = new File([bytes], group.thumbnail);
  }
  // Not repeated blindly: when the answer is lost, the group may exist all the same.
  const created = await writeOnce(
    (options) => input.portal.json<{ group?: { id?: string } }>("community/createGroup", params, options),
    async () => {
      const groups = await readTargetGroups(input.portal, input.self.orgId);
      const found = groups.byTitle.get(group.title.toLowerCase());
      return found ? { group: { id: found.id } } : undefined;
    },
  );
  const id = created.group?.id;
  if (!id) throw new Error(`createGroup answered no group id for "${group.title}"`);
  return id;
}

/** addUsers, 25 at a time; answers the usernames the target did not add. */
async function addMembers(
  portal: PortalClient,
  groupId: string,
  members: GroupOutcome["members"],
): Promise<string[]> {
  const notAdded: string[] = [];
  for (let i = 0; i < members.length; i += ADD_USERS_CHUNK) {
    const chunk = members.slice(i, i + ADD_USERS_CHUNK);
    const names = (type: string) =>
      chunk
        .filter((m) => m.memberType === type)
        .map((m) => m.username)
        .join(",");
    const answer = await portal.json<{ notAdded?: string[] }>(`community/groups/${groupId}/addUsers`, {
      users: names("member"),
      admins: names("admin"),
    });
    notAdded.push(...(answer.notAdded ?? []));
  }
  return notAdded;
}

/** Users of the backup whose (mapped) username the target lacks, with what they were. */
function missingUsersOf(input: GroupsInput): MissingUser[] {
  const groupsOf = new Map<string, string[]>();
  for (const group of input.sourceGroups) {
    for (const { username } of membershipsOf(group)) {
      groupsOf.set(username.toLowerCase(), [...(groupsOf.get(username.toLowerCase()) ?? []), group.title]);
    }
  }
  return input.sourceUsers
    .map((user) => ({ user, targetUsername: mapUsername(user.username, input.usernameMap) }))
    .filter(({ targetUsername }) => !input.targetUsers.has(targetUsername.toLowerCase()))
    .map(({ user, targetUsername }) => ({
      username: user.username,
      targetUsername,
      role: user.role ?? null,
      userType: user.userLicenseTypeId ?? null,
      groups: groupsOf.get(user.username.toLowerCase()) ?? [],
    }));
}

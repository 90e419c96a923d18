/** One operation of an RFC 6902 JSON Patch (the subset a diff needs). */
export type PatchOperation =
  | { op: "add"; path: string; value: unknown }
  | { op: "remove"; path: string }
  | { op: "replace"; path: string; value: unknown };

/**
 * The JSON Patch (RFC 6902) that turns `before` into `after`: objects key by key, arrays index by
 * index (an element added or removed at the end is an add or a remove; one in the middle shows as
 * replacements, which is still a valid patch). Applying it to `before` gives `after`.
 */
export function jsonPatch(before: unknown, after: unknown, path = ""): PatchOperation[] {
  if (deepEqual(before, after)) return [];
  if (isObject(before) && isObject(after)) {
    const ops: PatchOperation[] = [];
    for (const key of Object.keys(before)) {
      const at = `${path}/${escapeToken(key)}`;
      if (!(key in after)) ops.push({ op: "remove", path: at });
      else ops.push(...jsonPatch(before[key], after[key], at));
    }
    for (const key of Object.keys(after)) {
      if (!(key in before)) ops.push({ op: "add", path: `${path}/${escapeToken(key)}`, value: after[key] });
    }
    return ops;
  }
  if (Array.isArray(before) && Array.isArray(after)) {
    const ops: PatchOperation[] = [];
    const common = Math.min(before.length, after.length);
    for (let i = 0; i < common; i++) ops.push(...jsonPatch(before[i], after[i], `${path}/${i}`));
    for (let i = common; i < after.length; i++)
      ops.push({ op: "add", path: `${path}/${i}`, value: after[i] });
    // Removed from the end backwards, so each index is still there when its operation applies.
    for (let i = before.length - 1; i >= common; i--) ops.push({ op: "remove", path: `${path}/${i}` });
    return ops;
  }
  return [{ op: "replace", path, value: after }];
}

/** A JSON Pointer token: `~` and `/` escaped (RFC 6901). */
function escapeToken(key: string): string {
  return key.replace(/~/g, "~0").replace(/\//g, "~1");
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((value, i) => deepEqual(value, b[i]));
  }
  if (isObject(a) && isObject(b)) {
    const keys = Object.keys(a);
    return (
      keys.length === Object.keys(b).length && keys.every((key) => key in b && deepEqual(a[key], b[key]))
    );
  }
  return false;
}

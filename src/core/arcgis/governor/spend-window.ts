/**
 * Our own recent spend as a coarse sliding window: `[slot, units]` pairs, a slot being
 * `slotMs` wide (slot = floor(t / slotMs)). Pure functions; the arrays are never mutated.
 */
export type SpendSlots = [slot: number, units: number][];

export function slotOf(at: number, slotMs: number): number {
  return Math.floor(at / slotMs);
}

/** Adds `units` to the slot of `at` (creating it). */
export function addSpend(slots: SpendSlots, slotMs: number, at: number, units: number): SpendSlots {
  if (units === 0) return slots;
  const slot = slotOf(at, slotMs);
  const index = slots.findIndex(([s]) => s === slot);
  if (index < 0)
    return [...slots, [slot, Math.max(0, units)] as [number, number]].sort((a, b) => a[0] - b[0]);
  return slots.map(([s, u]) => (s === slot ? [s, Math.max(0, u + units)] : [s, u]));
}

/** Corrects the slot of `at` by `delta` when it is still kept (a forgotten slot stays forgotten). */
export function adjustSpend(slots: SpendSlots, slotMs: number, at: number, delta: number): SpendSlots {
  if (delta === 0) return slots;
  const slot = slotOf(at, slotMs);
  if (!slots.some(([s]) => s === slot)) return slots;
  return slots.map(([s, u]) => (s === slot ? [s, Math.max(0, u + delta)] : [s, u]));
}

/** Drops slots that ended at or before `before`. */
export function pruneSpend(slots: SpendSlots, slotMs: number, before: number): SpendSlots {
  return slots.filter(([s]) => (s + 1) * slotMs > before);
}

/** Units in slots that end after `from` and start at or before `to` (a slot counts whole). */
export function spendBetween(slots: SpendSlots, slotMs: number, from: number, to: number): number {
  let sum = 0;
  for (const [s, u] of slots) if ((s + 1) * slotMs > from && s * slotMs <= to) sum += u;
  return sum;
}

/**
 * Milliseconds until the spend in the window `(t - windowMs, t]` leaves room for `need` under
 * `limit` — slots counted whole, so this errs on the late side. 0 when there is room now;
 * Infinity when even an empty window has no room.
 */
export function msUntilRoom(
  slots: SpendSlots,
  slotMs: number,
  windowMs: number,
  now: number,
  limit: number,
  need: number,
): number {
  if (need > limit) return Number.POSITIVE_INFINITY;
  let total = spendBetween(slots, slotMs, now - windowMs, Number.POSITIVE_INFINITY);
  if (total + need <= limit) return 0;
  const live = slots.filter(([s]) => (s + 1) * slotMs > now - windowMs).sort((a, b) => a[0] - b[0]);
  for (const [s, u] of live) {
    total -= u;
    if (total + need <= limit) return Math.max(1, (s + 1) * slotMs + windowMs - now);
  }
  return Math.max(1, windowMs);
}

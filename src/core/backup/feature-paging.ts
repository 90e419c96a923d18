import type { PortalClient } from "../arcgis/portal-client.js";
import { FeaturePagingError } from "./feature-errors.js";

/** Count and id queries on one layer, as the id scan needs them. */
export interface IdSource {
  readonly objectIdField: string;
  count(where: string): Promise<number>;
  ids(where: string): Promise<{ ids: number[]; exceeded: boolean }>;
}

/** The id scan's queries against a layer of the portal (`…/FeatureServer/{id}`). */
export function layerIdSource(portal: PortalClient, layerUrl: string, objectIdField: string): IdSource {
  return {
    objectIdField,
    count: async (where) => {
      const response = await portal.json<{ count?: number }>(`${layerUrl}/query`, {
        where,
        returnCountOnly: true,
      });
      if (typeof response.count !== "number") {
        throw new FeaturePagingError(`${layerUrl}: returnCountOnly answered without a count`);
      }
      return response.count;
    },
    ids: async (where) => {
      const response = await portal.json<{ objectIds?: number[] | null; exceededTransferLimit?: boolean }>(
        `${layerUrl}/query`,
        { where, returnIdsOnly: true },
      );
      return { ids: response.objectIds ?? [], exceeded: response.exceededTransferLimit === true };
    },
  };
}

export interface IdScanOptions {
  /** Object ids per page handed out (≤ the layer's maxRecordCount). */
  pageSize: number;
  /** Object ids fetched per `returnIdsOnly` call; memory is bounded by this, not by the layer. */
  window: number;
}

const MAX_WIDTH = 2 ** 50;

/**
 * Every object id of a layer, ascending, in pages of at most `pageSize`, at bounded memory:
 * ids come from `returnIdsOnly` over object id windows (`oid >= lo AND oid <= hi`) whose width
 * adapts to how dense the ids are (ids are unique integers, so a window of width w never holds
 * more than w). A layer of at most `window` features is read in one call. The scan ends when a
 * count of what lies beyond the last window says nothing is left, so a wrong `expected` can
 * neither cut the scan short nor make it run forever.
 */
export async function* objectIdPages(
  source: IdSource,
  expected: number,
  options: IdScanOptions,
): AsyncGenerator<number[]> {
  const field = source.objectIdField;
  const pageSize = Math.max(1, Math.floor(options.pageSize));
  const base = Math.max(pageSize, Math.floor(options.window));
  let pending: number[] = [];
  let previous = Number.NEGATIVE_INFINITY;
  function* take(ids: number[], flush: boolean): Generator<number[]> {
    for (const id of ids) {
      // Windows are disjoint and sorted, so this only trips on a server that ignores the where.
      if (!(id > previous))
        throw new FeaturePagingError(`Object id ${id} came out of order after ${previous}`);
      previous = id;
      pending.push(id);
      if (pending.length >= pageSize) {
        yield pending;
        pending = [];
      }
    }
    if (flush && pending.length > 0) {
      yield pending;
      pending = [];
    }
  }

  if (expected <= base) {
    const all = await source.ids("1=1");
    if (!all.exceeded) {
      yield* take(sortedUnique(all.ids), true);
      return;
    }
  }

  let lo: number | undefined;
  let width = base;
  let seen = 0;
  for (;;) {
    const start = lo ?? 1;
    const hi = start + width - 1;
    const where = lo === undefined ? `${field} <= ${hi}` : `${field} >= ${lo} AND ${field} <= ${hi}`;
    const window = await source.ids(where);
    if (window.exceeded) {
      // The server capped its id list: the window was too wide; ask again for less.
      if (width <= 1)
        throw new FeaturePagingError(`The service caps object ids even for a window of one id at ${start}`);
      width = Math.max(1, Math.floor(width / 4));
      continue;
    }
    const ids = sortedUnique(window.ids);
    seen += ids.length;
    yield* take(ids, false);
    lo = hi + 1;
    width =
      ids.length === 0
        ? Math.min(MAX_WIDTH, width * 4)
        : Math.min(
            MAX_WIDTH,
            Math.max(1, Math.floor(width / 4), Math.min(width * 4, (width * base) / ids.length)),
          );
    width = Math.floor(width);
    if (ids.length === 0 || seen >= expected) {
      if (lo > Number.MAX_SAFE_INTEGER) {
        throw new FeaturePagingError(`The service counts features beyond object id ${hi} but returns none`);
      }
      const rest = await source.count(`${field} >= ${lo}`);
      if (rest === 0) break;
      if (rest <= base) {
        const tail = await source.ids(`${field} >= ${lo}`);
        if (!tail.exceeded) {
          yield* take(sortedUnique(tail.ids), false);
          break;
        }
      }
    }
  }
  yield* take([], true);
}

function sortedUnique(ids: number[]): number[] {
  const out = ids.filter((id) => typeof id === "number" && Number.isFinite(id));
  out.sort((a, b) => a - b);
  let w = 0;
  for (let r = 0; r < out.length; r++) {
    if (w === 0 || out[r] !== out[w - 1]) out[w++] = out[r] as number;
  }
  out.length = w;
  return out;
}

/**
 * Runs `task` over `source` with up to `limit` tasks in flight and yields the results in source
 * order. When the consumer stops or a task fails, tasks already started are awaited (their
 * failures swallowed) before the generator finishes, so nothing runs on unobserved.
 */
export async function* mapOrdered<T, R>(
  source: AsyncIterable<T>,
  limit: number,
  task: (item: T, index: number) => Promise<R>,
): AsyncGenerator<R> {
  const iterator = source[Symbol.asyncIterator]();
  const running: Array<Promise<R>> = [];
  let exhausted = false;
  let index = 0;
  try {
    for (;;) {
      while (!exhausted && running.length < Math.max(1, limit)) {
        const next = await iterator.next();
        if (next.done) {
          exhausted = true;
          break;
        }
        const started = task(next.value, index++);
        started.catch(() => undefined);
        running.push(started);
      }
      const head = running.shift();
      if (!head) return;
      yield await head;
    }
  } finally {
    await Promise.allSettled(running);
    if (!exhausted) await iterator.return?.(undefined);
  }
}

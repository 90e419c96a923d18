/**
 * Splits a query page, as the service's bytes, into one feature per line without parsing and
 * re-serialising it: each line is the service's own text of the feature, numbers and all (64-bit
 * integers keep every digit). ArcGIS answers `f=json` queries as compact JSON whose last member
 * is `"features":[{"attributes":{…},…},…]`; between two features that gives `},{"attributes":`,
 * a sequence that cannot occur inside a string (its quotes would be escaped) nor inside a
 * feature's attributes (flat values) or geometry (numbers and arrays). Every assumption is
 * checked — `features` last and once, each feature starting with its attributes and holding
 * exactly one `"attributes":` and one object id — and anything else returns undefined, for the
 * caller to parse the page instead. The body must be valid JSON already (the portal client
 * checks that). `accept` sees the object ids before anything changes: refusing leaves the bytes
 * as they came, still parseable.
 */
export interface RawPage {
  /** The features, one per line, each line ending in a newline. */
  chunks: Buffer[];
  /** Object ids in the order of the lines. */
  oids: number[];
  exceededTransferLimit: boolean;
}

const FEATURES = Buffer.from('"features":[');
const FIRST = Buffer.from('{"attributes":');
const ATTRIBUTES = Buffer.from('"attributes":');
const EXCEEDED = Buffer.from('"exceededTransferLimit":true');
const NEWLINE = Buffer.from("\n");

export function splitRawPage(
  bytes: Buffer,
  objectIdField: string,
  accept: (oids: number[], exceededTransferLimit: boolean) => boolean = () => true,
): RawPage | undefined {
  let end = bytes.length;
  while (end > 0 && isSpace(bytes[end - 1] as number)) end--;
  if (end < 2 || bytes[end - 1] !== 0x7d || bytes[end - 2] !== 0x5d) return undefined;
  const at = bytes.indexOf(FEATURES);
  if (at < 0 || bytes.indexOf(FEATURES, at + 1) >= 0) return undefined;
  const exceededTransferLimit = bytes.subarray(0, at).indexOf(EXCEEDED) >= 0;
  const start = at + FEATURES.length;
  const stop = end - 2;
  if (start === stop)
    return accept([], exceededTransferLimit) ? { chunks: [], oids: [], exceededTransferLimit } : undefined;
  if (bytes.indexOf(FIRST, start) !== start) return undefined;
  const key = Buffer.from(`"${objectIdField}":`);
  const oids: number[] = [];
  const commas: number[] = [];
  let piece = start;
  for (;;) {
    // The next `"attributes":` must be the next feature's, right after `},{`; else decline.
    const next = bytes.indexOf(ATTRIBUTES, piece + FIRST.length);
    const inside = next >= 0 && next < stop;
    if (inside && (bytes[next - 3] !== 0x7d || bytes[next - 2] !== 0x2c || bytes[next - 1] !== 0x7b)) {
      return undefined;
    }
    const pieceEnd = inside ? next - 2 : stop;
    const keyAt = bytes.indexOf(key, piece);
    if (keyAt < 0 || keyAt >= pieceEnd) return undefined;
    const oid = readInteger(bytes, keyAt + key.length, pieceEnd);
    if (oid === undefined) return undefined;
    oids.push(oid);
    if (pieceEnd === stop) break;
    commas.push(pieceEnd);
    piece = pieceEnd + 1;
  }
  if (bytes[stop - 1] !== 0x7d || !accept(oids, exceededTransferLimit)) return undefined;
  // Only now that the whole page checked out: the comma between two features becomes a newline.
  for (const comma of commas) bytes[comma] = 0x0a;
  return { chunks: [bytes.subarray(start, stop), NEWLINE], oids, exceededTransferLimit };
}

function readInteger(bytes: Buffer, from: number, limit: number): number | undefined {
  let i = from;
  const negative = bytes[i] === 0x2d;
  if (negative) i++;
  let value = 0;
  const digitsFrom = i;
  while (i < limit) {
    const c = bytes[i] as number;
    if (c < 0x30 || c > 0x39) break;
    value = value * 10 + (c - 0x30);
    i++;
  }
  if (i === digitsFrom || i - digitsFrom > 16) return undefined;
  const next = bytes[i];
  if (next !== 0x2c && next !== 0x7d) return undefined;
  const result = negative ? -value : value;
  return Number.isSafeInteger(result) ? result : undefined;
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

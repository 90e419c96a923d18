import { createCipheriv } from "node:crypto";
import { Readable } from "node:stream";

/** 32-bit finaliser (murmur3 fmix): spreads every input bit over the whole word. */
export function fmix32(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Deterministic 32-bit hash of numbers and strings. */
export function hash32(...parts: (number | string)[]): number {
  let h = 0x811c9dc5;
  for (const part of parts) {
    if (typeof part === "number") {
      h = fmix32(h ^ Math.imul((part | 0) ^ Math.floor(part / 4294967296), 0x9e3779b1));
    } else {
      for (let i = 0; i < part.length; i++) h = Math.imul(h ^ part.charCodeAt(i), 0x01000193);
      h = fmix32(h ^ part.length);
    }
  }
  return h >>> 0;
}

/** Hash mapped to [0, 1). */
export function unit(...parts: (number | string)[]): number {
  return hash32(...parts) / 4294967296;
}

/** Hash mapped to an integer in [0, n). */
export function pick(n: number, ...parts: (number | string)[]): number {
  return n <= 0 ? 0 : Math.floor(unit(...parts) * n);
}

export function hex8(x: number): string {
  return (x >>> 0).toString(16).padStart(8, "0");
}

/** Small sequential PRNG (mulberry32) for things that are drawn in order. */
export class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  hex(chars: number): string {
    let s = "";
    while (s.length < chars) s += hex8(Math.floor(this.next() * 4294967296));
    return s.slice(0, chars);
  }
}

/**
 * Seekable pseudo-random bytes: byte `pos` of stream `key` is a pure function of both, so a
 * 2 GB file can be served (and range-requested, and hashed by a test) without storing it.
 * The bytes are an AES-CTR keystream (native code: the simulator must not be what a
 * benchmark of large downloads measures).
 */
export function fillPrng(key: number, offset: number, out: Uint8Array): void {
  const next = keystream(key, offset);
  for (let filled = 0; filled < out.length; ) {
    const piece = next(Math.min(ZEROS.length, out.length - filled));
    out.set(piece, filled);
    filled += piece.length;
  }
}

/** Successive bytes of the keystream of `key` from `offset` on: each call a fresh buffer of up to 1 MiB. */
function keystream(key: number, offset: number): (length: number) => Buffer {
  const iv = Buffer.alloc(16);
  iv.writeBigUInt64BE(BigInt(Math.floor(offset / 16)), 8);
  const cipher = createCipheriv("aes-128-ctr", keystreamKey(key), iv);
  let skip = offset % 16;
  return (length) => {
    const block = cipher.update(ZEROS.subarray(0, Math.min(ZEROS.length, length + skip)));
    const piece = skip > 0 ? block.subarray(skip) : block;
    skip = 0;
    return piece;
  };
}

const ZEROS = Buffer.alloc(1024 * 1024);
const keys = new Map<number, Buffer>();

function keystreamKey(key: number): Buffer {
  let aesKey = keys.get(key);
  if (!aesKey) {
    aesKey = Buffer.alloc(16);
    for (let i = 0; i < 4; i++) aesKey.writeUInt32BE(hash32(key, i), i * 4);
    if (keys.size > 10_000) keys.clear();
    keys.set(key, aesKey);
  }
  return aesKey;
}

/**
 * Bytes of a generated file: a fixed header (magic bytes so the file "looks" like its type)
 * followed by seeded noise, `size` bytes in all.
 */
export interface ByteSource {
  size: number;
  /** Copies bytes [offset, offset+out.length) into out. */
  read(offset: number, out: Uint8Array): void;
  /** Bytes from `offset` on, in order, each call a fresh buffer of up to `length` bytes (streaming without a copy). */
  chunks?(offset: number): (length: number) => Buffer;
}

export function prngSource(key: number, size: number, header: Uint8Array = new Uint8Array(0)): ByteSource {
  return {
    size,
    read(offset, out) {
      let i = 0;
      while (i < out.length && offset + i < header.length) {
        out[i] = header[offset + i] ?? 0;
        i++;
      }
      if (i < out.length) fillPrng(key, offset + i, out.subarray(i));
    },
    chunks(offset) {
      const next = keystream(key, offset);
      let at = offset;
      return (length) => {
        const piece = next(length);
        // The header overlays the noise at the same positions, as in read().
        for (let i = 0; i < piece.length && at + i < header.length; i++) piece[i] = header[at + i] ?? 0;
        at += piece.length;
        return piece;
      };
    },
  };
}

export function bufferSource(buf: Uint8Array): ByteSource {
  return {
    size: buf.length,
    read(offset, out) {
      out.set(buf.subarray(offset, offset + out.length));
    },
  };
}

/** Streams [start, end) of a source in 256 KiB chunks (few enough that serving 2 GB costs little). */
export function sourceStream(src: ByteSource, start = 0, end = src.size): Readable {
  let pos = start;
  const chunk = 256 * 1024;
  const next =
    src.chunks?.(start) ??
    ((length: number) => {
      const buf = Buffer.allocUnsafe(length);
      src.read(pos, buf);
      return buf;
    });
  return new Readable({
    highWaterMark: chunk,
    read() {
      if (pos >= end) {
        this.push(null);
        return;
      }
      const buf = next(Math.min(chunk, end - pos));
      pos += buf.length;
      this.push(buf);
    },
  });
}

export function sourceBuffer(src: ByteSource): Buffer {
  const buf = Buffer.allocUnsafe(src.size);
  src.read(0, buf);
  return buf;
}

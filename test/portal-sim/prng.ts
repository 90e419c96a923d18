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
 */
export function fillPrng(key: number, offset: number, out: Uint8Array): void {
  let pos = offset;
  let i = 0;
  const end = out.length;
  // unaligned head
  while (i < end && pos % 4 !== 0) {
    out[i++] = byteAt(key, pos++);
  }
  const k = key >>> 0;
  while (i + 4 <= end) {
    const w = pos >>> 2;
    let h = (k ^ Math.imul(w, 0x9e3779b1)) >>> 0;
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    out[i] = h & 0xff;
    out[i + 1] = (h >>> 8) & 0xff;
    out[i + 2] = (h >>> 16) & 0xff;
    out[i + 3] = (h >>> 24) & 0xff;
    i += 4;
    pos += 4;
  }
  while (i < end) out[i++] = byteAt(key, pos++);
}

function byteAt(key: number, pos: number): number {
  const w = Math.floor(pos / 4) >>> 0;
  const h = fmix32((key >>> 0) ^ Math.imul(w, 0x9e3779b1));
  return (h >>> ((pos % 4) * 8)) & 0xff;
}

/**
 * Bytes of a generated file: a fixed header (magic bytes so the file "looks" like its type)
 * followed by seeded noise, `size` bytes in all.
 */
export interface ByteSource {
  size: number;
  /** Copies bytes [offset, offset+out.length) into out. */
  read(offset: number, out: Uint8Array): void;
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

/** Streams [start, end) of a source in 64 KiB chunks. */
export function sourceStream(src: ByteSource, start = 0, end = src.size): Readable {
  let pos = start;
  const chunk = 64 * 1024;
  return new Readable({
    read() {
      if (pos >= end) {
        this.push(null);
        return;
      }
      const n = Math.min(chunk, end - pos);
      const buf = Buffer.allocUnsafe(n);
      src.read(pos, buf);
      pos += n;
      this.push(buf);
    },
  });
}

export function sourceBuffer(src: ByteSource): Buffer {
  const buf = Buffer.allocUnsafe(src.size);
  src.read(0, buf);
  return buf;
}

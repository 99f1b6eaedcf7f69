/**
 * Block checksums. Every checksum is returned as 32 bytes (CHECKSUM_SIZE_BYTES), shorter digests
 * zero-padded, so a block pointer always stores and compares the same width.
 *
 * fletcher4 follows OpenZFS fletcher_4_native exactly: four 64-bit accumulators a, b, c, d over the
 * 32-bit little-endian words of the block, all arithmetic mod 2^64, stored as four little-endian u64.
 * JavaScript has no fast 64-bit integers, so each accumulator is kept as a high and a low 32-bit half
 * held in doubles. The low halves are allowed to grow past 2^32 for a run of FLETCHER_RUN_WORDS words
 * (small enough that d's low half stays below 2^53, where doubles are still exact); the high halves of
 * that run follow in closed form because a's high half is constant within it; then carries are folded
 * into the high halves and both are reduced mod 2^32. A length that is not a multiple of 4 is treated as
 * if zero-padded to one (OpenZFS never checksums such buffers).
 */
import { createHash, hash as cryptoHash } from 'node:crypto';
import { endianness } from 'node:os';
import { xxh3 } from '@node-rs/xxhash';
import { CHECKSUM_SIZE_BYTES } from './blkptr.js';
import { ChecksumType, type ChecksumName } from './types.js';
import { CairnError } from '../util/errors.js';
import { assert } from '../util/assert.js';
import { fletcher4Simd, fletcher4SimdAvailable } from './fletcher4-simd.js';

/** WebAssembly SIMD fletcher4 (about 3× the JavaScript one here) where the engine has it. */
const SIMD = fletcher4SimdAvailable();

const TWO_32 = 4294967296;
/** Words per carry-free run: C(64 + 4, 4) * 2^32 < 2^53 bounds d's low half (see the header comment). */
const FLETCHER_RUN_WORDS = 64;
const LITTLE_ENDIAN_HOST = endianness() === 'LE';
const MASK_64 = (1n << 64n) - 1n;

/** Scratch for fletcher4 on buffers whose byteOffset is not 4-aligned (a Uint32Array needs alignment). */
let alignedScratch = new Uint32Array(0);

/**
 * Computes the checksum of data into out (32 bytes, zero-padded; allocated when not given) and returns
 * out. ChecksumType.off yields 32 zero bytes.
 */
export function computeChecksum(type: ChecksumType, data: Uint8Array, out?: Buffer): Buffer {
  const target = out ?? Buffer.alloc(CHECKSUM_SIZE_BYTES);
  assert(target.length >= CHECKSUM_SIZE_BYTES, 'checksum output buffer too small');
  switch (type) {
    case ChecksumType.off:
      target.fill(0, 0, CHECKSUM_SIZE_BYTES);
      return target;
    case ChecksumType.fletcher4:
      if (SIMD) fletcher4Simd(data, target);
      else fletcher4Into(data, target);
      return target;
    case ChecksumType.sha256:
      sha256Into(data, target);
      return target;
    case ChecksumType.xxh128:
      xxh128Into(data, target);
      return target;
    default:
      throw new CairnError('EINVAL', `unknown checksum type ${String(type)}`);
  }
}

/** Constant-width comparison of two stored checksums (first CHECKSUM_SIZE_BYTES bytes). */
export function checksumEquals(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length < CHECKSUM_SIZE_BYTES || b.length < CHECKSUM_SIZE_BYTES) return false;
  for (let i = 0; i < CHECKSUM_SIZE_BYTES; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** 'fletcher4' → ChecksumType.fletcher4; also accepts 'on' (the pool default, xxh128). */
export function parseChecksumName(name: string): ChecksumType {
  const lower = name.toLowerCase();
  if (lower === 'on') return ChecksumType.xxh128;
  if (Object.hasOwn(ChecksumType, lower)) return ChecksumType[lower as ChecksumName];
  throw new CairnError('EINVAL', `unknown checksum '${name}' (expected one of: on, ${Object.keys(ChecksumType).join(', ')})`);
}

export function checksumName(type: ChecksumType): ChecksumName {
  for (const [name, id] of Object.entries(ChecksumType)) if (id === type) return name as ChecksumName;
  throw new CairnError('EINVAL', `unknown checksum type ${String(type)}`);
}

function sha256Into(data: Uint8Array, out: Buffer): void {
  // crypto.hash (Node >= 20.12) skips the Hash object; fall back for older runtimes.
  const digest = typeof cryptoHash === 'function'
    ? (cryptoHash('sha256', data, 'buffer') as unknown as Buffer)
    : createHash('sha256').update(data).digest();
  digest.copy(out, 0, 0, 32);
}

function xxh128Into(data: Uint8Array, out: Buffer): void {
  const value = xxh3.xxh128(data);
  out.writeBigUInt64LE(value & MASK_64, 0);
  out.writeBigUInt64LE((value >> 64n) & MASK_64, 8);
  out.fill(0, 16, CHECKSUM_SIZE_BYTES);
}

function wordsOf(data: Uint8Array): Uint32Array {
  const wordCount = data.length >>> 2;
  if (LITTLE_ENDIAN_HOST && (data.byteOffset & 3) === 0) return new Uint32Array(data.buffer, data.byteOffset, wordCount);
  if (alignedScratch.length < wordCount) alignedScratch = new Uint32Array(wordCount);
  const words = alignedScratch.subarray(0, wordCount);
  const view = new DataView(data.buffer, data.byteOffset, data.length);
  for (let i = 0; i < wordCount; i++) words[i] = view.getUint32(i * 4, true);
  return words;
}

/** The portable JavaScript fletcher4 (exported for tests and engines without WebAssembly SIMD). */
export function fletcher4Into(data: Uint8Array, out: Buffer): void {
  const words = wordsOf(data);
  const wordCount = words.length;
  let aHi = 0, aLo = 0, bHi = 0, bLo = 0, cHi = 0, cLo = 0, dHi = 0, dLo = 0;
  let i = 0;
  while (i < wordCount) {
    const end = Math.min(i + FLETCHER_RUN_WORDS, wordCount);
    const n = end - i;
    // High halves after n steps with a's high half constant (closed form; all terms < 2^53).
    const n2 = (n * (n + 1)) / 2;
    const n3 = (n * (n + 1) * (n + 2)) / 6;
    dHi = dHi + n * cHi + n2 * bHi + n3 * aHi;
    cHi = cHi + n * bHi + n2 * aHi;
    bHi = bHi + n * aHi;
    for (; i < end; i++) {
      aLo += words[i]!;
      bLo += aLo;
      cLo += bLo;
      dLo += cLo;
    }
    // Fold carries (exact: lo < 2^53, division by 2^32 is exact) and reduce mod 2^32 (>>> 0 is exact mod 2^32).
    let carry = Math.floor(aLo / TWO_32);
    aLo -= carry * TWO_32; aHi = (aHi + carry) % TWO_32;
    carry = Math.floor(bLo / TWO_32);
    bLo -= carry * TWO_32; bHi = (bHi + carry) % TWO_32;
    carry = Math.floor(cLo / TWO_32);
    cLo -= carry * TWO_32; cHi = (cHi + carry) % TWO_32;
    carry = Math.floor(dLo / TWO_32);
    dLo -= carry * TWO_32; dHi = (dHi + carry) % TWO_32;
  }
  const tailBytes = data.length & 3;
  if (tailBytes !== 0) {
    let w = 0;
    const base = data.length - tailBytes;
    for (let k = tailBytes - 1; k >= 0; k--) w = w * 256 + data[base + k]!;
    aLo += w; bLo += aLo; cLo += bLo; dLo += cLo;
    bHi += aHi; cHi += bHi; dHi += cHi;
    let carry = Math.floor(aLo / TWO_32);
    aLo -= carry * TWO_32; aHi = (aHi + carry) % TWO_32;
    carry = Math.floor(bLo / TWO_32);
    bLo -= carry * TWO_32; bHi = (bHi + carry) % TWO_32;
    carry = Math.floor(cLo / TWO_32);
    cLo -= carry * TWO_32; cHi = (cHi + carry) % TWO_32;
    carry = Math.floor(dLo / TWO_32);
    dLo -= carry * TWO_32; dHi = (dHi + carry) % TWO_32;
  }
  out.writeUInt32LE(aLo, 0); out.writeUInt32LE(aHi, 4);
  out.writeUInt32LE(bLo, 8); out.writeUInt32LE(bHi, 12);
  out.writeUInt32LE(cLo, 16); out.writeUInt32LE(cHi, 20);
  out.writeUInt32LE(dLo, 24); out.writeUInt32LE(dHi, 28);
}

/** Slow, obviously-correct fletcher4 with BigInt; the test oracle for the fast path. */
export function fletcher4Reference(data: Uint8Array): Buffer {
  let a = 0n, b = 0n, c = 0n, d = 0n;
  const padded = Buffer.alloc(Math.ceil(data.length / 4) * 4);
  padded.set(data);
  for (let i = 0; i < padded.length; i += 4) {
    a = (a + BigInt(padded.readUInt32LE(i))) & MASK_64;
    b = (b + a) & MASK_64;
    c = (c + b) & MASK_64;
    d = (d + c) & MASK_64;
  }
  const out = Buffer.alloc(CHECKSUM_SIZE_BYTES);
  out.writeBigUInt64LE(a, 0); out.writeBigUInt64LE(b, 8); out.writeBigUInt64LE(c, 16); out.writeBigUInt64LE(d, 24);
  return out;
}

/**
 * Parity arithmetic of raidz, as OpenZFS's vdev_raidz.c defines it.
 *
 * Over GF(2^8) with polynomial 0x11d and generator 2, for data columns D_0 .. D_{n-1} (shorter columns
 * padded with zeros):
 *   P = Σ D_j                 (XOR)
 *   Q = Σ 2^(n-1-j) · D_j     (Horner: Q = 2·Q ⊕ D_j, column by column)
 *   R = Σ 4^(n-1-j) · D_j
 * so parity p ∈ {0,1,2} weighs column j by (2^p)^(n-1-j). Generation runs 32 bits at a time (the
 * multiply-by-2 is done on four bytes at once with masks, as VDEV_RAIDZ_64MUL_2). Reconstruction of k
 * missing data columns from k surviving parities solves the k×k system of those weights (a Vandermonde
 * matrix, invertible while the column count stays below 255) by Gauss-Jordan, then applies the inverse
 * with 256-entry multiplication tables.
 */
import { assert } from '../util/assert.js';

export const RAIDZ_CHILDREN_MAX = 255;

const GF_EXP = new Uint8Array(512);
const GF_LOG = new Uint8Array(256);
{
  let x = 1;
  for (let i = 0; i < 255; i++) {
    GF_EXP[i] = x;
    GF_LOG[x] = i;
    x <<= 1;
    if (x & 0x100) x ^= 0x11d;
  }
  for (let i = 255; i < 512; i++) GF_EXP[i] = GF_EXP[i - 255] ?? 0;
}

/** GF_MUL_TABLE[a * 256 + b] = a·b: one row per constant, so a byte loop is a single lookup. */
const GF_MUL_TABLE = new Uint8Array(256 * 256);
for (let a = 1; a < 256; a++) {
  for (let b = 1; b < 256; b++) GF_MUL_TABLE[a * 256 + b] = GF_EXP[(GF_LOG[a] ?? 0) + (GF_LOG[b] ?? 0)] ?? 0;
}

export function gfMul(a: number, b: number): number {
  return GF_MUL_TABLE[(a << 8) | b] ?? 0;
}

export function gfInv(a: number): number {
  assert(a !== 0, 'GF inverse of zero');
  return GF_EXP[255 - (GF_LOG[a] ?? 0)] ?? 0;
}

/** Weight of data column j (of n) in parity p. */
export function parityCoefficient(parity: number, dataIndex: number, dataColumns: number): number {
  return GF_EXP[(parity * (dataColumns - 1 - dataIndex)) % 255] ?? 0;
}

function words(buf: Buffer): Uint32Array {
  assert(buf.byteOffset % 4 === 0 && buf.length % 4 === 0, 'parity buffers must be 4-byte aligned');
  return new Uint32Array(buf.buffer, buf.byteOffset, buf.length >>> 2);
}

/** A copy of buf that word views can use (Buffer.alloc memory is never pooled, so it is aligned). */
export function aligned(buf: Buffer): Buffer {
  if (buf.byteOffset % 4 === 0) return buf;
  const copy = Buffer.alloc(buf.length);
  buf.copy(copy);
  return copy;
}

function mul2Word(x: number): number {
  let mask = x & 0x80808080;
  // Per byte: 0xff where the top bit was set (the subtraction borrows within each byte only).
  mask = ((mask << 1) - (mask >>> 7)) | 0;
  return ((x << 1) & 0xfefefefe) ^ (mask & 0x1d1d1d1d);
}

/**
 * Computes `parity.length` parity columns (each parity[p].length bytes, the longest data column's size)
 * from data columns in order; a null data column counts as all zeros (a column being reconstructed).
 */
export function generateParity(data: readonly (Buffer | null)[], parity: readonly Buffer[]): void {
  const pw = parity.map(words);
  const length = pw[0]?.length ?? 0;
  for (const w of pw) {
    assert(w.length === length, 'parity columns differ in size');
    w.fill(0);
  }
  const [p, q, r] = pw;
  // One fused pass per data column and parity count: the Horner step for Q and R runs over the full
  // parity length (a short or null column contributes zeros but still shifts the accumulators).
  for (const column of data) {
    const d = column === null ? EMPTY_WORDS : words(column);
    const dLength = d.length;
    assert(dLength <= length, 'data column longer than parity');
    if (r !== undefined && q !== undefined && p !== undefined) {
      for (let i = 0; i < length; i++) {
        const word = i < dLength ? (d[i] as number) : 0;
        p[i] = (p[i] as number) ^ word;
        q[i] = mul2Word(q[i] as number) ^ word;
        r[i] = mul2Word(mul2Word(r[i] as number)) ^ word;
      }
    } else if (q !== undefined && p !== undefined) {
      for (let i = 0; i < length; i++) {
        const word = i < dLength ? (d[i] as number) : 0;
        p[i] = (p[i] as number) ^ word;
        q[i] = mul2Word(q[i] as number) ^ word;
      }
    } else if (p !== undefined) {
      for (let i = 0; i < dLength; i++) p[i] = (p[i] as number) ^ (d[i] as number);
    }
  }
}

const EMPTY_WORDS = new Uint32Array(0);

/** Inverts a k×k matrix over GF(2^8) (Gauss-Jordan); returns null when it is singular. */
export function gfInvertMatrix(matrix: readonly number[][]): number[][] | null {
  const k = matrix.length;
  const a = matrix.map((row) => [...row]);
  const inv: number[][] = a.map((_, i) => a.map((__, j) => (i === j ? 1 : 0)));
  for (let col = 0; col < k; col++) {
    let pivot = col;
    while (pivot < k && (a[pivot]?.[col] ?? 0) === 0) pivot++;
    if (pivot === k) return null;
    [a[col], a[pivot]] = [a[pivot] ?? [], a[col] ?? []];
    [inv[col], inv[pivot]] = [inv[pivot] ?? [], inv[col] ?? []];
    const rowA = a[col] ?? [];
    const rowI = inv[col] ?? [];
    const scale = gfInv(rowA[col] ?? 0);
    for (let j = 0; j < k; j++) {
      rowA[j] = gfMul(rowA[j] ?? 0, scale);
      rowI[j] = gfMul(rowI[j] ?? 0, scale);
    }
    for (let i = 0; i < k; i++) {
      const other = a[i] ?? [];
      const factor = other[col] ?? 0;
      if (i === col || factor === 0) continue;
      const otherI = inv[i] ?? [];
      for (let j = 0; j < k; j++) {
        other[j] = (other[j] ?? 0) ^ gfMul(factor, rowA[j] ?? 0);
        otherI[j] = (otherI[j] ?? 0) ^ gfMul(factor, rowI[j] ?? 0);
      }
    }
  }
  return inv;
}

/**
 * Rebuilds missing data columns in place (the rare path: it allocates its syndrome buffers).
 * data: every data column, the missing ones included (their contents are ignored and overwritten; each
 *   is as long as that column really is).
 * missing: indexes into data of the columns to rebuild.
 * parity: read parity columns, indexed by parity number (0 = P, 1 = Q, 2 = R); null = not available.
 * use: which parity numbers to solve with (as many as missing columns, each one non-null in parity).
 */
export function reconstructData(
  data: readonly Buffer[], missing: readonly number[], parity: readonly (Buffer | null)[], use: readonly number[],
): void {
  const k = missing.length;
  assert(k > 0 && use.length === k, 'reconstruction arity mismatch');
  const n = data.length;
  const paritySizeBytes = parity.find((b) => b !== null && b !== undefined)?.length ?? 0;
  // Syndromes: read parity ⊕ parity of the surviving data = Σ over missing columns of weight · D.
  const withHoles = data.map((d, j) => (missing.includes(j) ? null : d));
  const generated: Buffer[] = [];
  for (let p = 0; p <= Math.max(...use); p++) generated.push(Buffer.alloc(paritySizeBytes));
  generateParity(withHoles, generated);
  const syndromes: Buffer[] = use.map((p) => {
    const read = parity[p];
    assert(read !== null && read !== undefined, `parity ${p} not available`);
    const s = generated[p] as Buffer;
    const sw = words(s);
    const rw = words(read);
    for (let w = 0; w < sw.length; w++) sw[w] = (sw[w] ?? 0) ^ (rw[w] ?? 0);
    return s;
  });
  if (k === 1 && use[0] === 0) {
    const only = data[missing[0] as number] as Buffer;
    (syndromes[0] as Buffer).copy(only, 0, 0, only.length);
    return;
  }
  const matrix = use.map((p) => missing.map((j) => parityCoefficient(p, j, n)));
  const inverse = gfInvertMatrix(matrix);
  assert(inverse !== null, 'raidz reconstruction matrix is singular');
  for (let c = 0; c < k; c++) {
    const out = data[missing[c] as number] as Buffer;
    out.fill(0);
    const row = inverse[c] ?? [];
    for (let r = 0; r < k; r++) {
      const coefficient = row[r] ?? 0;
      if (coefficient === 0) continue;
      const s = syndromes[r] as Buffer;
      const base = coefficient * 256;
      for (let i = 0; i < out.length; i++) out[i] = (out[i] ?? 0) ^ (GF_MUL_TABLE[base + (s[i] ?? 0)] ?? 0);
    }
  }
}

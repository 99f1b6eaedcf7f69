/**
 * fletcher4 in WebAssembly SIMD: four interleaved streams with native 64-bit lanes, combined exactly
 * (the idea of OpenZFS's fletcher_4_sse2/avx2, derived here for four lanes).
 *
 * Word i of the block goes to lane i mod 4, which runs the plain recurrence (a += w; b += a; c += b;
 * d += c, mod 2^64) over its own words. For the block's N words, the word at position i contributes
 * x, x(x+1)/2, x(x+1)(x+2)/6 times itself to B, C, D, where x = N - i; in lane j that word sits u words
 * from its lane's end with x = 4u - j. Each of those polynomials in u is an exact integer combination of
 * the lane's own weights 1, u, u(u+1)/2, u(u+1)(u+2)/6 (its a, b, c, d), so the block's B, C, D are fixed
 * integer combinations of the sixteen lane accumulators, computed once below and applied mod 2^64 by
 * the module itself (i64 arithmetic wraps exactly so; in BigInt it cost a 4 KiB block 1.5 µs, more
 * than the sum). Words beyond the last multiple of four, and a partial last word (zero-padded), finish
 * in BigInt.
 *
 * The module is assembled from bytes here (no toolchain at build time): memory, and f4(ptr, len) that
 * sums len bytes (a multiple of 16) at ptr, stores the eight i64x2 accumulators at address 0 and the
 * block's A, B, C, D (little-endian u64, fletcher4's on-disk order) at RESULT_OFFSET. The block is
 * copied into the module's memory first; that copy is cheap next to the sum.
 */
const LANES_BYTES = 128;
const RESULT_OFFSET = LANES_BYTES;
const RESULT_BYTES = 32;
const DATA_OFFSET = 4096;
const MASK_64 = (1n << 64n) - 1n;

function leb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

function section(id: number, body: number[]): number[] {
  return [id, ...leb(body.length), ...body];
}

/** Signed LEB128 of a small integer (i64.const's immediate). */
function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = n & 0x7f;
    n = Math.floor(n / 128);
    const done = (n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0);
    out.push(done ? byte : byte | 0x80);
    if (done) return out;
  }
}

function moduleBytes(coefficients: bigint[][][]): Uint8Array<ArrayBuffer> {
  const SIMD = 0xfd;
  const add = [SIMD, ...leb(206)]; // i64x2.add
  const extendLow = [SIMD, ...leb(201)]; // i64x2.extend_low_i32x4_u
  const extendHigh = [SIMD, ...leb(202)]; // i64x2.extend_high_i32x4_u
  const get = (i: number): number[] => [0x20, i];
  const set = (i: number): number[] => [0x21, i];
  // locals: 0 ptr, 1 len, 2 end, 3 a01, 4 a23, 5 b01, 6 b23, 7 c01, 8 c23, 9 d01, 10 d23, 11 w
  const body: number[] = [
    0x02, 0x01, 0x7f, 0x09, 0x7b, // locals: 1 × i32, 9 × v128
    ...get(0), ...get(1), 0x6a, ...set(2),
    0x02, 0x40, 0x03, 0x40, // block, loop
    ...get(0), ...get(2), 0x4f, 0x0d, 0x01, // br_if 1 when ptr >= end
    ...get(0), SIMD, 0x00, 0x04, 0x00, ...set(11), // w = v128.load(ptr)
    ...get(3), ...get(11), ...extendLow, ...add, ...set(3),
    ...get(4), ...get(11), ...extendHigh, ...add, ...set(4),
    ...get(5), ...get(3), ...add, ...set(5),
    ...get(6), ...get(4), ...add, ...set(6),
    ...get(7), ...get(5), ...add, ...set(7),
    ...get(8), ...get(6), ...add, ...set(8),
    ...get(9), ...get(7), ...add, ...set(9),
    ...get(10), ...get(8), ...add, ...set(10),
    ...get(0), 0x41, 0x10, 0x6a, ...set(0), // ptr += 16
    0x0c, 0x00, 0x0b, 0x0b, // br 0, end loop, end block
  ];
  for (let k = 0; k < 8; k++) body.push(0x41, 0x00, ...get(3 + k), SIMD, 0x0b, 0x04, ...leb(k * 16)); // v128.store
  // The block's sums: target t = Σ coefficient × lane accumulator, each an i64 at its place above
  // (accumulator k of lane j at (k·4 + j)·8), wrapping mod 2^64.
  for (let t = 0; t < 4; t++) {
    body.push(0x41, 0x00, 0x42, 0x00); // address 0, sum 0
    for (let j = 0; j < 4; j++) {
      for (let k = 0; k < 4; k++) {
        const c = Number((coefficients[t] as bigint[][])[j]![k]);
        if (c === 0) continue;
        body.push(0x41, 0x00, 0x29, 0x03, ...leb((k * 4 + j) * 8), 0x42, ...sleb(c), 0x7e, 0x7c); // i64.load, i64.mul, i64.add
      }
    }
    body.push(0x37, 0x03, ...leb(RESULT_OFFSET + t * 8)); // i64.store
  }
  body.push(0x0b);
  const name = (s: string): number[] => [s.length, ...Buffer.from(s)];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [0x01, 0x60, 0x02, 0x7f, 0x7f, 0x00]),
    ...section(3, [0x01, 0x00]),
    ...section(5, [0x01, 0x00, 0x01]),
    ...section(7, [0x02, ...name('memory'), 0x02, 0x00, ...name('f4'), 0x00, 0x00]),
    ...section(10, [0x01, ...leb(body.length), ...body]),
  ]);
}

/** coefficients[target][lane] = weights of that lane's [a, b, c, d] in the block's A, B, C, D. */
function combineCoefficients(): bigint[][][] {
  const basis = (u: number): number[] => [1, u, (u * (u + 1)) / 2, (u * (u + 1) * (u + 2)) / 6];
  // Small integers: each fits an i64.const, and a Number, exactly.
  const targets = [
    (): number => 1,
    (x: number): number => x,
    (x: number): number => (x * (x + 1)) / 2,
    (x: number): number => (x * (x + 1) * (x + 2)) / 6,
  ];
  return targets.map((f) => [0, 1, 2, 3].map((lane) => {
    // Solve basis(u)·coef = f(4u - lane) at u = 0..3 (Gaussian elimination; all values are small).
    const m = [0, 1, 2, 3].map((u) => [...basis(u), f(4 * u - lane)]);
    for (let col = 0; col < 4; col++) {
      const pivot = m.findIndex((row, r) => r >= col && row[col] !== 0);
      [m[col], m[pivot]] = [m[pivot] as number[], m[col] as number[]];
      const p = m[col] as number[];
      for (let r = 0; r < 4; r++) {
        const row = m[r] as number[];
        if (r === col || row[col] === 0) continue;
        const factor = (row[col] as number) / (p[col] as number);
        for (let c = col; c < 5; c++) row[c] = (row[c] as number) - factor * (p[c] as number);
      }
    }
    return m.map((row, r) => {
      const v = (row[4] as number) / (row[r] as number);
      if (!Number.isInteger(Math.round(v)) || Math.abs(v - Math.round(v)) > 1e-9) throw new Error('fletcher4 lane coefficient is not an integer');
      return BigInt(Math.round(v));
    });
  }));
}

interface SimdModule {
  memory: WebAssembly.Memory;
  f4: (ptr: number, len: number) => void;
}

let instance: SimdModule | null | undefined;

function load(): SimdModule | null {
  if (instance !== undefined) return instance;
  try {
    const wasm = new WebAssembly.Instance(new WebAssembly.Module(moduleBytes(combineCoefficients())));
    instance = wasm.exports as unknown as SimdModule;
  } catch {
    instance = null; // no WebAssembly SIMD here: the caller uses the JavaScript version
  }
  return instance;
}

/** True when the SIMD version can run on this engine. */
export function fletcher4SimdAvailable(): boolean {
  return load() !== null;
}

/** fletcher4 of data into out[0..32) (four little-endian u64), exactly as fletcher_4_native. */
export function fletcher4Simd(data: Uint8Array, out: Buffer): void {
  const mod = load();
  if (mod === null) throw new Error('WebAssembly SIMD is not available');
  const simdBytes = data.length & ~15;
  const needed = DATA_OFFSET + simdBytes;
  if (mod.memory.buffer.byteLength < needed) mod.memory.grow(Math.ceil((needed - mod.memory.buffer.byteLength) / 65536));
  new Uint8Array(mod.memory.buffer, DATA_OFFSET, simdBytes).set(data.subarray(0, simdBytes));
  mod.f4(DATA_OFFSET, simdBytes);
  const sums = new Uint8Array(mod.memory.buffer, RESULT_OFFSET, RESULT_BYTES);
  if (simdBytes === data.length) {
    out.set(sums);
    return;
  }
  const total = new BigUint64Array(mod.memory.buffer, RESULT_OFFSET, 4);
  let [a, b, c, d] = [total[0] as bigint, total[1] as bigint, total[2] as bigint, total[3] as bigint];
  for (let at = simdBytes; at < data.length; at += 4) {
    let w = 0;
    for (let k = Math.min(3, data.length - at - 1); k >= 0; k--) w = w * 256 + (data[at + k] as number);
    a = (a + BigInt(w)) & MASK_64;
    b = (b + a) & MASK_64;
    c = (c + b) & MASK_64;
    d = (d + c) & MASK_64;
  }
  out.writeBigUInt64LE(a, 0);
  out.writeBigUInt64LE(b, 8);
  out.writeBigUInt64LE(c, 16);
  out.writeBigUInt64LE(d, 24);
}

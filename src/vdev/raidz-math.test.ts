import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Random, testSeed } from '../testing/random.js';
import { generateParity, gfInvertMatrix, gfMul, parityCoefficient, reconstructData } from './raidz-math.js';

/** Byte-at-a-time reference: parity p = Σ_j (2^p)^(n-1-j) · D_j, shorter columns zero-padded. */
function referenceParity(data: Buffer[], p: number, length: number): Buffer {
  const out = Buffer.alloc(length);
  data.forEach((d, j) => {
    const w = parityCoefficient(p, j, data.length);
    for (let i = 0; i < d.length; i++) out[i] = (out[i] ?? 0) ^ gfMul(w, d[i] ?? 0);
  });
  return out;
}

function subsets(n: number, k: number): number[][] {
  if (k === 0) return [[]];
  const out: number[][] = [];
  for (let first = 0; first < n; first++) {
    for (const rest of subsets(n, k - 1)) if (rest.every((x) => x > first)) out.push([first, ...rest]);
  }
  return out;
}

test('GF(2^8) basics: 2 generates the field, inverses invert', () => {
  const seen = new Set<number>();
  let x = 1;
  for (let i = 0; i < 255; i++) {
    seen.add(x);
    x = gfMul(x, 2);
  }
  assert.equal(seen.size, 255);
  assert.equal(x, 1);
  const inv = gfInvertMatrix([[1, 1], [2, 4]]);
  assert.ok(inv);
  assert.equal(gfInvertMatrix([[1, 1], [1, 1]]), null);
});

test('fast parity generation matches the byte-wise definition', () => {
  const seed = testSeed();
  const random = new Random(seed);
  for (let round = 0; round < 20; round++) {
    const n = random.range(1, 12);
    const big = 512 * random.range(1, 4);
    const data = Array.from({ length: n }, (_, j) => random.bytes(j < random.range(0, n) ? big : big - 512 || big));
    data[0] = random.bytes(big);
    const parity = [Buffer.alloc(big), Buffer.alloc(big), Buffer.alloc(big)];
    generateParity(data, parity);
    for (let p = 0; p < 3; p++) assert.ok(parity[p]!.equals(referenceParity(data, p, big)), `seed ${seed} parity ${p}`);
  }
});

test('every erasure of up to 3 data columns is rebuilt from every choice of parities', () => {
  const seed = testSeed();
  const random = new Random(seed);
  for (const n of [1, 2, 3, 5, 8]) {
    const big = 1024;
    const data = Array.from({ length: n }, (_, j) => random.bytes(j < 2 ? big : big - 512));
    const parity = [Buffer.alloc(big), Buffer.alloc(big), Buffer.alloc(big)];
    generateParity(data, parity);
    for (let k = 1; k <= Math.min(3, n); k++) {
      for (const missing of subsets(n, k)) {
        for (const use of subsets(3, k)) {
          const work = data.map((d, j) => (missing.includes(j) ? Buffer.alloc(d.length, 0xee) : Buffer.from(d)));
          reconstructData(work, missing, parity, use);
          for (const j of missing) assert.ok(work[j]!.equals(data[j]!), `seed ${seed} n=${n} missing=${missing} use=${use}`);
        }
      }
    }
  }
});

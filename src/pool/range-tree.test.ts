import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RangeTree, highBit } from './range-tree.js';
import { InvariantError } from '../util/assert.js';
import { prng as rng } from '../testing/random.js';


function segmentsOfBitmap(bits: Uint8Array, unitBytes: number): [number, number][] {
  const out: [number, number][] = [];
  let i = 0;
  while (i < bits.length) {
    if (bits[i] === 1) {
      const s = i;
      while (i < bits.length && bits[i] === 1) i++;
      out.push([s * unitBytes, i * unitBytes]);
    } else {
      i++;
    }
  }
  return out;
}

test('adjacent segments coalesce and splitting removes work', () => {
  const t = new RangeTree();
  t.add(0, 10);
  t.add(20, 30);
  t.add(10, 20);
  assert.deepEqual([...t.segments()], [[0, 30]]);
  t.remove(5, 25);
  assert.deepEqual([...t.segments()], [[0, 5], [25, 30]]);
  assert.equal(t.totalBytes, 10);
  assert.equal(t.segmentCount, 2);
  assert.ok(t.contains(25, 30));
  assert.ok(!t.contains(4, 6));
  assert.ok(t.overlaps(4, 6));
  assert.ok(!t.overlaps(5, 25));
  t.verify();
});

test('double add and removal of absent space are assertion failures', () => {
  const t = new RangeTree();
  t.add(100, 200);
  assert.throws(() => t.add(150, 160), InvariantError);
  assert.throws(() => t.add(50, 101), InvariantError);
  assert.throws(() => t.add(199, 300), InvariantError);
  assert.throws(() => t.remove(150, 250), InvariantError);
  assert.throws(() => t.remove(0, 10), InvariantError);
  assert.throws(() => t.remove(200, 210), InvariantError);
  assert.throws(() => t.add(5, 5), InvariantError);
  assert.deepEqual([...t.segments()], [[100, 200]]);
  t.verify();
});

test('findFit honours the cursor and skips short segments; largest and histogram are right', () => {
  const t = new RangeTree();
  for (let i = 0; i < 1000; i++) t.add(i * 100, i * 100 + 10); // many 10-byte fragments
  t.add(200_000, 200_500);
  t.add(300_000, 301_000);
  assert.equal(t.findFit(0, 10), 0);
  assert.equal(t.findFit(5, 10), 100);
  assert.equal(t.findFit(5, 5), 5);
  assert.equal(t.findFit(0, 11), 200_000);
  assert.equal(t.findFit(200_100, 500), 300_000);
  assert.equal(t.findFit(300_600, 500), -1);
  assert.equal(t.largestSegmentBytes(), 1000);
  assert.equal(t.histogramCounts[highBit(10)], 1000);
  assert.equal(t.histogramCounts[highBit(1000)], 1);
  assert.equal(highBit(2 ** 40), 40);
  assert.equal(highBit(2 ** 40 - 1), 39);
  t.verify();
});

test('seeded random add/remove matches a bitmap model (chunk splits and merges)', () => {
  const seed = Number(process.env.SEED ?? Date.now() % 1_000_000);
  const random = rng(seed);
  const units = 20_000;
  const unit = 512;
  const bits = new Uint8Array(units);
  const t = new RangeTree();
  try {
    for (let op = 0; op < 60_000; op++) {
      const len = 1 + Math.floor(random() * (random() < 0.9 ? 4 : 200));
      const at = Math.floor(random() * (units - len));
      let allFree = true;
      let allSet = true;
      for (let i = at; i < at + len; i++) {
        if (bits[i] === 1) allFree = false;
        else allSet = false;
      }
      if (allFree) {
        t.add(at * unit, (at + len) * unit);
        bits.fill(1, at, at + len);
      } else if (allSet) {
        t.remove(at * unit, (at + len) * unit);
        bits.fill(0, at, at + len);
      } else {
        assert.throws(() => (random() < 0.5 ? t.add(at * unit, (at + len) * unit) : t.remove(at * unit, (at + len) * unit)), InvariantError);
      }
      if (op % 5000 === 0) t.verify();
      if (op % 997 === 0) {
        const cursor = Math.floor(random() * units) * unit;
        const want = 1 + Math.floor(random() * 8);
        let expect = -1;
        let run = 0;
        for (let i = cursor / unit; i < units; i++) {
          run = bits[i] === 1 ? run + 1 : 0;
          if (run === want) {
            expect = (i - want + 1) * unit;
            break;
          }
        }
        assert.equal(t.findFit(cursor, want * unit), expect, `findFit(${cursor}, ${want * unit})`);
      }
    }
    t.verify();
    assert.deepEqual([...t.segments()], segmentsOfBitmap(bits, unit));
    const copy = t.clone();
    assert.ok(copy.equals(t));
    copy.remove(...(copy.segments().next().value as [number, number]));
    assert.ok(!copy.equals(t));
  } catch (e) {
    console.error(`range tree random test failed with SEED=${seed}`);
    throw e;
  }
});

test('100k segments stay workable and memory follows segments, not bytes', () => {
  const t = new RangeTree();
  const n = 100_000;
  for (let i = 0; i < n; i++) t.add(i * 2 ** 30, i * 2 ** 30 + 4096); // spans 2^47 bytes
  assert.equal(t.segmentCount, n);
  for (let i = 0; i < n; i += 2) t.remove(i * 2 ** 30, i * 2 ** 30 + 4096);
  assert.equal(t.segmentCount, n / 2);
  assert.equal(t.totalBytes, (n / 2) * 4096);
  t.verify();
});

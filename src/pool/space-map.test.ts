import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isCairnError } from '../util/errors.js';
import { RangeTree } from './range-tree.js';
import {
  condense,
  decodeEntries,
  encodeEntries,
  replay,
  SPACE_MAP_ENTRY_SIZE_BYTES,
  type SpaceMapGeometry,
  type SpaceMapRecord,
} from './space-map.js';
import { prng as rng } from '../testing/random.js';

const MiB = 1024 * 1024;

const geometry: SpaceMapGeometry = { startBytes: 3 * 16 * MiB, sizeBytes: 16 * MiB, ashift: 12 };
const base = geometry.startBytes;

function sample(): SpaceMapRecord[] {
  return [
    { type: 'header', sizeBytes: geometry.sizeBytes, ashift: 12 },
    { type: 'alloc', offsetBytes: 0, lengthBytes: 64 * 1024 },
    { type: 'alloc', offsetBytes: 1 * MiB, lengthBytes: 4096 },
    { type: 'txg', txg: 5 },
    { type: 'free', offsetBytes: 8192, lengthBytes: 8192 },
    { type: 'txg', txg: 6 },
  ];
}

function expectEio(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => isCairnError(e, 'EIO') && pattern.test(e.message));
}

test('encode/decode round trip and replay applies records in order from all free', () => {
  const buf = encodeEntries(sample());
  assert.equal(buf.length, 6 * SPACE_MAP_ENTRY_SIZE_BYTES);
  assert.deepEqual(
    decodeEntries(buf).map((r) => (r.type === 'header' ? { ...r, version: undefined } : r)),
    sample().map((r) => (r.type === 'header' ? { ...r, version: undefined } : r)),
  );
  const tree = replay(buf, geometry);
  assert.deepEqual([...tree.segments()], [
    [base + 8192, base + 16384],
    [base + 64 * 1024, base + MiB],
    [base + MiB + 4096, base + 16 * MiB],
  ]);
  // An empty log is a metaslab never written: all free.
  assert.deepEqual([...replay(Buffer.alloc(0), geometry).segments()], [[base, base + 16 * MiB]]);
});

test('large offsets (beyond 2^32) survive encoding', () => {
  const g: SpaceMapGeometry = { startBytes: 2 ** 40, sizeBytes: 2 ** 34, ashift: 9 };
  const buf = encodeEntries([
    { type: 'header', sizeBytes: 2 ** 34, ashift: 9 },
    { type: 'alloc', offsetBytes: 2 ** 33 + 512, lengthBytes: 2 ** 32 + 1024 },
    { type: 'txg', txg: 2 ** 40 },
  ]);
  const tree = replay(buf, g);
  assert.deepEqual([...tree.segments()], [
    [2 ** 40, 2 ** 40 + 2 ** 33 + 512],
    [2 ** 40 + 2 ** 33 + 512 + 2 ** 32 + 1024, 2 ** 40 + 2 ** 34],
  ]);
});

test('malformed logs are EIO with a clear reason, never a tree', () => {
  const good = encodeEntries(sample());
  expectEio(() => replay(good.subarray(0, good.length - 8), geometry), /not a multiple of 16 \(truncated\)/);
  expectEio(() => replay(good.subarray(0, good.length - 16), geometry), /does not end with a txg marker/);
  const badMagic = Buffer.from(good);
  badMagic[0] = (badMagic[0] as number) ^ 0xff;
  expectEio(() => replay(badMagic, geometry), /bad magic/);
  const notHeader = good.subarray(16);
  expectEio(() => replay(notHeader, geometry), /first entry is not a header/);
  const headerInMiddle = Buffer.concat([good, good]);
  expectEio(() => replay(headerInMiddle, geometry), /entry 6 .*header in the middle/);
  expectEio(() => replay(good, { ...geometry, sizeBytes: 32 * MiB }), /metaslab size/);
  expectEio(() => replay(good, { ...geometry, ashift: 9 }), /ashift/);
  const doubleAlloc = encodeEntries([...sample().slice(0, 2), { type: 'alloc', offsetBytes: 4096, lengthBytes: 4096 }, { type: 'txg', txg: 5 }]);
  expectEio(() => replay(doubleAlloc, geometry), /entry 2 .*alloc of .* which is not free/);
  const doubleFree = encodeEntries([sample()[0] as SpaceMapRecord, { type: 'free', offsetBytes: 0, lengthBytes: 4096 }, { type: 'txg', txg: 1 }]);
  expectEio(() => replay(doubleFree, geometry), /free of .* which is not allocated/);
  const outside = encodeEntries([sample()[0] as SpaceMapRecord, { type: 'alloc', offsetBytes: 16 * MiB - 4096, lengthBytes: 8192 }, { type: 'txg', txg: 1 }]);
  expectEio(() => replay(outside, geometry), /beyond metaslab size/);
  const unaligned = encodeEntries([sample()[0] as SpaceMapRecord, { type: 'alloc', offsetBytes: 512, lengthBytes: 4096 }, { type: 'txg', txg: 1 }]);
  expectEio(() => replay(unaligned, geometry), /not aligned/);
  const backwards = encodeEntries([sample()[0] as SpaceMapRecord, { type: 'txg', txg: 9 }, { type: 'txg', txg: 8 }]);
  expectEio(() => replay(backwards, geometry), /txg marker 8 after 9/);
  const future = Buffer.from(good);
  future.writeUInt16LE(99, 4);
  assert.throws(() => replay(future, geometry), (e: unknown) => isCairnError(e, 'EVERSION'));
  // Random byte flips: either a clean EIO/EVERSION or (flip in a harmless spot) a valid tree.
  const seed = 1234;
  const random = rng(seed);
  for (let i = 0; i < 500; i++) {
    const bad = Buffer.from(good);
    const at = Math.floor(random() * bad.length);
    bad[at] = (bad[at] as number) ^ (1 << Math.floor(random() * 8));
    try {
      const t = replay(bad, geometry);
      t.verify();
    } catch (e) {
      assert.ok(isCairnError(e), `flip at ${at} gave ${String(e)} (seed ${seed})`);
    }
  }
});

test('condense rebuilds exactly the same tree, choosing the shorter encoding', () => {
  const seed = Number(process.env.SEED ?? Date.now() % 1_000_000);
  const random = rng(seed);
  try {
    for (const fill of [0, 0.05, 0.5, 0.95, 1]) {
      const free = new RangeTree();
      const sectors = geometry.sizeBytes / 4096;
      let runStart = -1;
      for (let i = 0; i <= sectors; i++) {
        const isFree = i < sectors && random() >= fill;
        if (isFree && runStart < 0) runStart = i;
        if (!isFree && runStart >= 0) {
          free.add(base + runStart * 4096, base + i * 4096);
          runStart = -1;
        }
      }
      const log = condense(free, geometry, 77);
      assert.ok(replay(log, geometry).equals(free), `fill ${fill}`);
      const entries = log.length / SPACE_MAP_ENTRY_SIZE_BYTES;
      assert.ok(entries <= free.segmentCount + 3, `fill ${fill}: ${entries} entries for ${free.segmentCount} segments`);
      const records = decodeEntries(log);
      assert.deepEqual(records.at(-1), { type: 'txg', txg: 77 });
    }
    // Two holes: the allocated gaps (3) are listed; "alloc all, free holes" would also take 3.
    const fewHoles = new RangeTree();
    fewHoles.add(base + 4096, base + 8192);
    fewHoles.add(base + 16384, base + 20480);
    const records = decodeEntries(condense(fewHoles, geometry, 1));
    assert.deepEqual(records.slice(1, -1).map((r) => r.type), ['alloc', 'alloc', 'alloc']);
    const wholeFree = new RangeTree();
    wholeFree.add(base, base + geometry.sizeBytes);
    assert.equal(condense(wholeFree, geometry, 1).length, 2 * SPACE_MAP_ENTRY_SIZE_BYTES);
  } catch (e) {
    console.error(`condense test failed with SEED=${seed}`);
    throw e;
  }
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { FaultyDevice } from '../testing/faulty-device.js';
import { Random, testSeed } from '../testing/random.js';
import { isCairnError } from '../util/errors.js';
import { ALLOCATABLE_START_BYTES } from './layout.js';
import { RaidzVdev, raidzAllocatedSize, raidzMap } from './raidz.js';
import { faultyLeaf, runVdevConformance, sha256Verifier } from './vdev-conformance.js';

const SHAPES: [nparity: number, children: number, ashift: number][] = [
  [1, 3, 12], [1, 5, 9], [2, 4, 9], [2, 6, 12], [3, 5, 9], [3, 8, 9],
];

for (const [nparity, n, ashift] of SHAPES) {
  runVdevConformance(`raidz${nparity} of ${n} (ashift ${ashift})`, async (seed) => {
    const children = Array.from({ length: n }, (_, i) => faultyLeaf(seed, i, ashift, i === 1 ? 1 << 20 : 0));
    const vdev = new RaidzVdev({ id: 0, ashift, nparity, children });
    return { vdev, redundancy: nparity, dispose: () => vdev.close() };
  });
}

test('raidz map: columns tile exactly the block\'s sectors, parity as large as the biggest column', () => {
  const seed = testSeed();
  const random = new Random(seed);
  for (let round = 0; round < 2000; round++) {
    const nparity = random.range(1, 3);
    const n = random.range(nparity + 1, 12);
    const ashift = 9;
    const sectorOffset = random.int(1 << 16);
    const sectors = random.range(1, 64);
    const map = raidzMap(sectorOffset * 512, sectors * 512, ashift, n, nparity);
    const context = `seed ${seed}: raidz${nparity} n=${n} at ${sectorOffset}+${sectors}`;
    const covered = new Set<number>();
    let dataBytes = 0;
    map.columns.forEach((c, i) => {
      if (i < nparity) assert.equal(c.sizeBytes, map.paritySizeBytes, context);
      else dataBytes += c.sizeBytes;
      assert.ok(c.sizeBytes <= map.paritySizeBytes, context);
      for (let s = 0; s < c.sizeBytes / 512; s++) {
        const vdevSector = (c.childOffset / 512 + s) * n + c.child;
        assert.ok(!covered.has(vdevSector), `${context}: sector ${vdevSector} twice`);
        covered.add(vdevSector);
      }
    });
    assert.equal(dataBytes, sectors * 512, context);
    const asizeSectors = raidzAllocatedSize(sectors * 512, ashift, n, nparity) / 512;
    assert.equal(asizeSectors % (nparity + 1), 0, context);
    for (const s of covered) assert.ok(s >= sectorOffset && s < sectorOffset + asizeSectors, `${context}: sector ${s} outside`);
    assert.equal(new Set(map.columns.map((c) => c.child)).size, map.columns.length, `${context}: a child twice`);
  }
});

test('raidz asize matches vdev_raidz_asize on known cases', () => {
  // 5-wide raidz1, ashift 12: 4K → 1 data + 1 parity = 2 sectors; 128K → 32 + 8 = 40 sectors.
  assert.equal(raidzAllocatedSize(4096, 12, 5, 1), 2 * 4096);
  assert.equal(raidzAllocatedSize(128 * 1024, 12, 5, 1), 40 * 4096);
  // 6-wide raidz2: 3 sectors → 3 + 2 = 5 → rounded to 6.
  assert.equal(raidzAllocatedSize(3 * 4096, 12, 6, 2), 6 * 4096);
  // 8-wide raidz3, 1 sector → 4 sectors.
  assert.equal(raidzAllocatedSize(512, 9, 8, 3), 4 * 512);
});

test('raidz1 parity rotates every other MiB', () => {
  const low = raidzMap(0, 4096, 12, 4, 1);
  const high = raidzMap(1 << 20, 4096, 12, 4, 1);
  assert.equal(low.columns[0]?.child, 0);
  assert.equal(high.columns[0]?.child, 1);
  assert.equal(high.columns[1]?.child, 0);
});

test('raidz2: a block is rebuilt from any two lost columns, each combination, and a scrub fixes parity', async () => {
  const seed = testSeed();
  const random = new Random(seed);
  const children = Array.from({ length: 6 }, (_, i) => faultyLeaf(seed, i, 9));
  const raidz = new RaidzVdev({ id: 0, ashift: 9, nparity: 2, children });
  const data = random.bytes(512 * 9);
  await raidz.write(512 * 7, data);
  const map = raidz.map(512 * 7, data.length);
  const verify = sha256Verifier(data);
  for (let x = 0; x < map.columns.length; x++) {
    for (let y = x + 1; y < map.columns.length; y++) {
      for (const c of [x, y]) {
        const column = map.columns[c]!;
        (children[column.child]!.device as FaultyDevice).corrupt(ALLOCATABLE_START_BYTES + column.childOffset, 1);
      }
      // Parity-only damage is invisible to a plain read (parity is not read); a scrub finds it.
      const plain = await raidz.read(512 * 7, data.length, verify);
      assert.ok(plain.data.equals(data), `seed ${seed} columns ${x},${y}`);
      const scrub = await raidz.read(512 * 7, data.length, verify, { all: true });
      assert.ok(scrub.data.equals(data));
      assert.equal(plain.repairedBytes + scrub.repairedBytes, map.columns[x]!.sizeBytes + map.columns[y]!.sizeBytes);
      assert.equal((await raidz.read(512 * 7, data.length, verify, { all: true })).repairedBytes, 0);
    }
  }
});

test('raidz: reads fail with EIO when more children are missing than parity', async () => {
  const children = Array.from({ length: 4 }, (_, i) => faultyLeaf(5, i, 9));
  const raidz = new RaidzVdev({ id: 0, ashift: 9, nparity: 1, children });
  const data = Buffer.alloc(512 * 6, 0x77);
  await raidz.write(0, data);
  children[0]!.replaceDevice(null);
  assert.equal(raidz.state, 'DEGRADED');
  assert.ok((await raidz.read(0, data.length, sha256Verifier(data))).data.equals(data));
  (children[1]!.device as FaultyDevice).die();
  await assert.rejects(raidz.read(0, data.length, sha256Verifier(data)), (e: unknown) => isCairnError(e, 'EIO'));
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FaultyDevice } from '../testing/faulty-device.js';
import { isCairnError } from '../util/errors.js';
import { openFileDevice } from './file-device.js';
import { ALLOCATABLE_START_BYTES, DEVICE_SIZE_MIN_BYTES, leafAllocatableBytes } from './layout.js';
import { LeafVdev } from './leaf.js';
import { MirrorVdev } from './mirror.js';
import { faultyLeaf, runVdevConformance, sha256Verifier } from './vdev-conformance.js';

runVdevConformance('mirror of 2 (sides of unequal size)', async (seed) => {
  const vdev = new MirrorVdev({ id: 0, ashift: 12, children: [faultyLeaf(seed, 0, 12, 1 << 20), faultyLeaf(seed, 1, 12)] });
  return { vdev, redundancy: 1, dispose: () => vdev.close() };
});

runVdevConformance('mirror of 3', async (seed) => {
  const vdev = new MirrorVdev({ id: 0, ashift: 9, children: [0, 1, 2].map((i) => faultyLeaf(seed, i, 9)) });
  return { vdev, redundancy: 2, dispose: () => vdev.close() };
});

runVdevConformance('mirror of 2 temp files', async (seed) => {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-mirror-'));
  const children = await Promise.all([0, 1].map(async (i) => {
    const device = await openFileDevice(join(dir, `d${i}-${seed}`), { create: DEVICE_SIZE_MIN_BYTES });
    return new LeafVdev({ guid: `000000000000000${i + 1}`, id: i, ashift: 12, asize: leafAllocatableBytes(device.sizeBytes, 12), device });
  }));
  const vdev = new MirrorVdev({ id: 0, ashift: 12, children });
  return {
    vdev, redundancy: 1,
    dispose: async () => {
      await vdev.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

test('mirror: a plain read heals the side that returned bad data', async () => {
  const [a, b] = [faultyLeaf(10, 0, 9), faultyLeaf(10, 1, 9)];
  const mirror = new MirrorVdev({ id: 0, ashift: 9, children: [a, b] });
  const data = Buffer.alloc(2048, 0x42);
  await mirror.write(4096, data);
  for (const leaf of [a, b]) (leaf.device as FaultyDevice).corrupt(ALLOCATABLE_START_BYTES + 4096, 2048);
  await assert.rejects(mirror.read(4096, 2048, sha256Verifier(data)), (e: unknown) => isCairnError(e, 'ECKSUM'));
  // Restore one side: whichever side a read tries first, the other is healed when it is bad.
  await (b.device as FaultyDevice).write(ALLOCATABLE_START_BYTES + 4096, data);
  const first = await mirror.read(4096, 2048, sha256Verifier(data));
  const second = await mirror.read(4096, 2048, sha256Verifier(data));
  assert.ok(first.data.equals(data) && second.data.equals(data));
  assert.equal(first.repairedBytes + second.repairedBytes, 2048);
  assert.ok((await (a.device as FaultyDevice).read(ALLOCATABLE_START_BYTES + 4096, 2048)).equals(data));
  assert.equal(a.errors.checksum, 2);
  assert.equal(mirror.errors.checksum, 1);
});

test('mirror: a write succeeds while one side takes it, and fails when none does', async () => {
  const [a, b] = [faultyLeaf(11, 0, 9), faultyLeaf(11, 1, 9)];
  const mirror = new MirrorVdev({ id: 0, ashift: 9, children: [a, b] });
  (a.device as FaultyDevice).faults.writeErrorProbability = 1;
  await mirror.write(0, Buffer.alloc(512, 1));
  assert.equal(a.errors.write, 1);
  (b.device as FaultyDevice).faults.writeErrorProbability = 1;
  await assert.rejects(mirror.write(0, Buffer.alloc(512, 1)), (e: unknown) => isCairnError(e, 'EIO'));
  a.setOffline(true);
  b.replaceDevice(null);
  assert.equal(mirror.state, 'FAULTED');
  await assert.rejects(mirror.read(0, 512, () => true), (e: unknown) => isCairnError(e, 'EIO'));
});

test('mirror: fromLeaf, attach and detach keep ids, config and data straight', async () => {
  const leaf = faultyLeaf(12, 0, 9);
  leaf.id = 3;
  const data = Buffer.alloc(4096, 9);
  await leaf.write(0, data);
  const small = new LeafVdev({ guid: '00000000000000ff', id: 0, ashift: 9, asize: 1 << 20, device: null, path: '/small' });
  assert.throws(() => MirrorVdev.fromLeaf(leaf, small), (e: unknown) => isCairnError(e, 'EINVAL'));
  const added = faultyLeaf(12, 1, 9);
  const mirror = MirrorVdev.fromLeaf(leaf, added);
  assert.equal(mirror.id, 3);
  assert.deepEqual(mirror.children.map((c) => c.id), [0, 1]);
  assert.equal(mirror.asize, leaf.asize);
  // The new side is empty: a scrub-mode read resilvers this block onto it.
  const result = await mirror.read(0, 4096, sha256Verifier(data), { all: true });
  assert.equal(result.repairedBytes, 4096);
  assert.ok((await (added.device as FaultyDevice).read(ALLOCATABLE_START_BYTES, 4096)).equals(data));
  const third = faultyLeaf(12, 2, 9);
  mirror.attachChild(third);
  assert.equal(mirror.config().children?.length, 3);
  const detached = mirror.detachChild(leaf.guid);
  assert.equal(detached, leaf);
  assert.deepEqual(mirror.children.map((c) => c.id), [0, 1]);
  assert.deepEqual(mirror.config().children?.map((c) => c.guid), [added.guid, third.guid]);
  mirror.detachChild(third.guid);
  assert.throws(() => mirror.detachChild(added.guid), (e: unknown) => isCairnError(e, 'EINVAL'));
  assert.throws(() => mirror.detachChild('nope'), (e: unknown) => isCairnError(e, 'ENOENT'));
  assert.ok((await mirror.read(0, 4096, sha256Verifier(data))).data.equals(data));
});

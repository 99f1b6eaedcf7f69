import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FaultyDevice } from '../testing/faulty-device.js';
import { isCairnError } from '../util/errors.js';
import { InvariantError } from '../util/assert.js';
import { createSparseFile, openFileDevice } from './file-device.js';
import { ALLOCATABLE_START_BYTES, DEVICE_SIZE_MIN_BYTES, leafAllocatableBytes } from './layout.js';
import { ACCEPT_ANY, LEAF_FAULT_AFTER_CONSECUTIVE_ERRORS, LeafVdev } from './leaf.js';
import { faultyLeaf, runVdevConformance, sha256Verifier } from './vdev-conformance.js';

runVdevConformance('leaf over a temp file', async (seed) => {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-leaf-'));
  const path = join(dir, `disk-${seed}`);
  const device = await openFileDevice(path, { create: DEVICE_SIZE_MIN_BYTES, exclusive: true });
  const vdev = new LeafVdev({ guid: '00000000000000aa', id: 0, ashift: 12, asize: leafAllocatableBytes(device.sizeBytes, 12), device });
  return {
    vdev, redundancy: 0,
    dispose: async () => {
      await vdev.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

runVdevConformance('leaf over a FaultyDevice', async (seed) => {
  const vdev = faultyLeaf(seed, 0, 9);
  return { vdev, redundancy: 0, dispose: () => vdev.close() };
});

test('FileDevice: sparse create, positional I/O, exclusivity, sizes', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-filedev-'));
  try {
    const path = join(dir, 'd');
    await createSparseFile(path, 1 << 20);
    assert.equal((await stat(path)).size, 1 << 20);
    await assert.rejects(createSparseFile(path, 1 << 20), (e: unknown) => isCairnError(e, 'EEXIST'));
    const device = await openFileDevice(path, { exclusive: true });
    assert.equal(device.sizeBytes, 1 << 20);
    await assert.rejects(openFileDevice(path, { exclusive: true }), (e: unknown) => isCairnError(e, 'EBUSY'));
    const data = Buffer.alloc(3000, 7);
    await device.write(4093, data);
    await device.flush();
    assert.ok((await device.read(4093, 3000)).equals(data));
    assert.ok((await device.read(0, 4093)).equals(Buffer.alloc(4093)));
    await assert.rejects(device.read((1 << 20) - 10, 11), InvariantError);
    await device.close();
    await assert.rejects(device.read(0, 1), (e: unknown) => isCairnError(e, 'EIO'));
    const again = await openFileDevice(path, { exclusive: true });
    assert.ok((await again.read(4093, 3000)).equals(data));
    await again.close();
    await assert.rejects(openFileDevice(join(dir, 'nope')), (e: unknown) => isCairnError(e, 'ENOENT'));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('leaf: offsets land after the front labels and reserve; out-of-range I/O is a bug', async () => {
  const leaf = faultyLeaf(1, 0, 12);
  const device = leaf.device as FaultyDevice;
  const data = Buffer.alloc(4096, 0x5a);
  await leaf.write(8192, data);
  assert.ok((await device.read(ALLOCATABLE_START_BYTES + 8192, 4096)).equals(data));
  await assert.rejects(leaf.write(leaf.asize, data), InvariantError);
  await assert.rejects(leaf.write(100, data), InvariantError);
  await assert.rejects(leaf.read(0, 100, ACCEPT_ANY), InvariantError);
});

test('leaf: checksum mismatch is ECKSUM and counted; I/O errors are EIO and counted', async () => {
  const leaf = faultyLeaf(2, 0, 9);
  const device = leaf.device as FaultyDevice;
  const data = Buffer.alloc(1024, 1);
  await leaf.write(0, data);
  device.corrupt(ALLOCATABLE_START_BYTES + 10, 1);
  await assert.rejects(leaf.read(0, 1024, sha256Verifier(data)), (e: unknown) => isCairnError(e, 'ECKSUM'));
  assert.equal(leaf.errors.checksum, 1);
  device.faults.readErrorProbability = 1;
  await assert.rejects(leaf.read(0, 1024, ACCEPT_ANY), (e: unknown) => isCairnError(e, 'EIO'));
  device.faults.writeErrorProbability = 1;
  await assert.rejects(leaf.write(0, data), (e: unknown) => isCairnError(e, 'EIO'));
  assert.deepEqual(leaf.errors, { read: 1, write: 1, checksum: 1 });
  assert.equal(leaf.state, 'ONLINE');
});

test('leaf: a device that keeps failing is FAULTED and left alone until cleared', async () => {
  const leaf = faultyLeaf(3, 0, 9);
  const device = leaf.device as FaultyDevice;
  device.die();
  for (let i = 0; i <= LEAF_FAULT_AFTER_CONSECUTIVE_ERRORS; i++) {
    await assert.rejects(leaf.read(0, 512, ACCEPT_ANY), (e: unknown) => isCairnError(e, 'EIO'));
  }
  assert.equal(leaf.state, 'FAULTED');
  const refusedBefore = device.injected.deadOps;
  await assert.rejects(leaf.read(0, 512, ACCEPT_ANY), (e: unknown) => isCairnError(e, 'EIO'));
  assert.equal(device.injected.deadOps, refusedBefore, 'a faulted leaf does not touch its device');
  device.revive();
  leaf.clearErrors();
  assert.equal(leaf.state, 'ONLINE');
  await leaf.read(0, 512, ACCEPT_ANY);
});

test('leaf: UNAVAIL and OFFLINE refuse I/O without touching the device; config keeps offline', async () => {
  const missing = new LeafVdev({ guid: '0000000000000001', id: 0, ashift: 9, asize: 1 << 20, path: '/gone', device: null });
  assert.equal(missing.state, 'UNAVAIL');
  assert.equal(missing.path, '/gone');
  await assert.rejects(missing.read(0, 512, ACCEPT_ANY), (e: unknown) => isCairnError(e, 'EIO'));
  await assert.rejects(missing.write(0, Buffer.alloc(512)), (e: unknown) => isCairnError(e, 'EIO'));
  assert.deepEqual(missing.errors, { read: 0, write: 0, checksum: 0 });

  const leaf = faultyLeaf(4, 0, 9);
  const device = leaf.device as FaultyDevice;
  leaf.setOffline(true);
  assert.equal(leaf.state, 'OFFLINE');
  assert.equal(leaf.config().offline, true);
  device.die();
  await assert.rejects(leaf.write(0, Buffer.alloc(512)), (e: unknown) => isCairnError(e, 'EIO'));
  assert.equal(device.injected.deadOps, 0);
  leaf.setOffline(false);
  device.revive();
  assert.equal(leaf.state, 'ONLINE');
  assert.equal(leaf.config().offline, undefined);

  const replacement = new FaultyDevice({ sizeBytes: DEVICE_SIZE_MIN_BYTES, seed: 9, path: '/new' });
  const old = leaf.replaceDevice(replacement);
  assert.equal(old, device);
  assert.equal(leaf.path, '/new');
  await leaf.write(0, Buffer.alloc(512, 3));
  assert.equal((await replacement.read(ALLOCATABLE_START_BYTES, 1))[0], 3);
});

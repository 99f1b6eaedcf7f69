/**
 * The vdev conformance suite: one set of behaviours every Vdev implementation must show, run on every
 * implementation by the *.test.ts files beside it with a factory for each.
 *
 * Blocks of random sizes are written at allocator-like offsets (allocatedSize apart, non-overlapping)
 * and read back through a sha256 verifier. Redundant vdevs then get every combination (sampled when
 * there are many) of up to `redundancy` leaves corrupted, made unavailable, taken offline or killed;
 * reads must still return the right data, and a scrub-mode read must heal the damaged leaves so that
 * their raw bytes are what they held before and a second scrub finds nothing to repair. One leaf more
 * than the redundancy must make reads fail with ECKSUM or EIO, never return wrong data.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { FaultyDevice } from '../testing/faulty-device.js';
import { Random, testSeed } from '../testing/random.js';
import { isCairnError } from '../util/errors.js';
import { ALLOCATABLE_START_BYTES, DEVICE_SIZE_MIN_BYTES, leafAllocatableBytes } from './layout.js';
import { LeafVdev } from './leaf.js';
import { MirrorVdev } from './mirror.js';
import { RaidzVdev } from './raidz.js';
import { openVdevTree } from './tree.js';
import type { BlockDevice, BlockVerifier, Vdev } from './types.js';

export interface VdevRig {
  vdev: Vdev;
  /** Leaves that may fail at once with every block still readable. */
  redundancy: number;
  dispose(): Promise<void>;
}

export type VdevRigFactory = (seed: number) => Promise<VdevRig>;

interface Extent {
  leaf: number;
  offset: number;
  sizeBytes: number;
  /** False for raidz parity columns. */
  isData: boolean;
}

interface Block {
  offset: number;
  data: Buffer;
  verify: BlockVerifier;
}

type FaultMode = 'corrupt' | 'unavail' | 'offline' | 'die';

const BLOCK_COUNT = 20;
const COMBINATIONS_MAX = 60;

export function sha256Verifier(expected: Buffer): BlockVerifier {
  const digest = createHash('sha256').update(expected).digest();
  return (data) => createHash('sha256').update(data).digest().equals(digest);
}

function leavesOf(vdev: Vdev): LeafVdev[] {
  if (vdev instanceof LeafVdev) return [vdev];
  return vdev.children.map((c) => {
    assert.ok(c instanceof LeafVdev, 'conformance rigs have leaves as children');
    return c;
  });
}

/** Where a block's bytes live on each leaf. */
function extentsOf(vdev: Vdev, offset: number, psize: number): Extent[] {
  if (vdev instanceof LeafVdev) return [{ leaf: 0, offset, sizeBytes: psize, isData: true }];
  if (vdev instanceof MirrorVdev) return vdev.children.map((_, leaf) => ({ leaf, offset, sizeBytes: psize, isData: true }));
  assert.ok(vdev instanceof RaidzVdev);
  return vdev.map(offset, psize).columns.map((c) => ({
    leaf: c.child, offset: c.childOffset, sizeBytes: c.sizeBytes, isData: c.dataOffset >= 0,
  }));
}

async function readRaw(device: BlockDevice, extent: Extent): Promise<Buffer> {
  return device.read(ALLOCATABLE_START_BYTES + extent.offset, extent.sizeBytes);
}

async function corruptRaw(device: BlockDevice, extent: Extent, random: Random, whole: boolean): Promise<void> {
  const bytes = await readRaw(device, extent);
  if (whole) {
    for (let i = 0; i < bytes.length; i++) bytes[i] = (bytes[i] ?? 0) ^ random.range(1, 255);
    await device.write(ALLOCATABLE_START_BYTES + extent.offset, bytes);
    return;
  }
  // Damage a few random spans, so both whole-sector and single-byte corruption get exercised.
  const spans = random.range(1, 3);
  for (let s = 0; s < spans; s++) {
    const start = random.int(bytes.length);
    const length = Math.min(bytes.length - start, random.pick([1, 16, 512, bytes.length]));
    for (let i = start; i < start + length; i++) bytes[i] = (bytes[i] ?? 0) ^ random.range(1, 255);
  }
  await device.write(ALLOCATABLE_START_BYTES + extent.offset, bytes);
}

function* leafCombinations(n: number, k: number): Generator<number[]> {
  if (k === 0) {
    yield [];
    return;
  }
  for (let first = 0; first < n; first++) {
    for (const rest of leafCombinations(n, k - 1)) if (rest.every((x) => x > first)) yield [first, ...rest];
  }
}

async function writeBlocks(vdev: Vdev, random: Random): Promise<Block[]> {
  const sector = 2 ** vdev.ashift;
  const blocks: Block[] = [];
  let cursor = random.int(64) * sector;
  for (let i = 0; i < BLOCK_COUNT; i++) {
    const psize = sector * random.pick([1, 1, 2, 3, random.range(4, 16), random.range(17, 48)]);
    const asize = vdev.allocatedSize(psize);
    assert.ok(asize >= psize && asize % sector === 0, `allocatedSize(${psize}) = ${asize}`);
    if (cursor + asize > vdev.asize) break;
    const data = random.bytes(psize);
    await vdev.write(cursor, data);
    blocks.push({ offset: cursor, data, verify: sha256Verifier(data) });
    cursor += asize + random.int(3) * vdev.allocatedSize(sector);
  }
  await vdev.flush();
  return blocks;
}

async function expectReadable(vdev: Vdev, block: Block, all: boolean, context: string): Promise<number> {
  const result = await vdev.read(block.offset, block.data.length, block.verify, { all });
  assert.ok(result.data.equals(block.data), `${context}: wrong data at ${block.offset}`);
  return result.repairedBytes;
}

async function expectUnreadable(vdev: Vdev, block: Block, all: boolean, context: string): Promise<void> {
  await assert.rejects(vdev.read(block.offset, block.data.length, block.verify, { all }), (e: unknown) => {
    assert.ok(isCairnError(e, 'ECKSUM') || isCairnError(e, 'EIO'), `${context}: expected ECKSUM/EIO, got ${String(e)}`);
    return true;
  });
}

/** Applies a fault to one leaf; returns the undo. */
async function injectFault(
  leaf: LeafVdev, mode: FaultMode, extents: readonly Extent[], leafIndex: number, random: Random, whole = false,
): Promise<() => void> {
  const device = leaf.device;
  assert.ok(device !== null);
  switch (mode) {
    case 'corrupt':
      for (const extent of extents) if (extent.leaf === leafIndex) await corruptRaw(device, extent, random, whole);
      return () => undefined;
    case 'unavail':
      leaf.replaceDevice(null);
      return () => {
        leaf.replaceDevice(device);
      };
    case 'offline':
      leaf.setOffline(true);
      return () => leaf.setOffline(false);
    case 'die':
      assert.ok(device instanceof FaultyDevice);
      device.die();
      return () => device.revive();
  }
}

export function runVdevConformance(name: string, factory: VdevRigFactory): void {
  const withRig = (title: string, body: (rig: VdevRig, random: Random, seed: number) => Promise<void>): void => {
    test(`${name}: ${title}`, async () => {
      const seed = testSeed();
      const rig = await factory(seed);
      try {
        await body(rig, new Random(seed), seed);
      } catch (e) {
        console.error(`${name}: ${title} failed with seed ${seed} (rerun with CAIRN_SEED=${seed})`);
        throw e;
      } finally {
        await rig.dispose();
      }
    });
  };

  withRig('blocks read back identical, scrub finds nothing to repair', async ({ vdev }, random) => {
    assert.equal(vdev.state, 'ONLINE');
    const blocks = await writeBlocks(vdev, random);
    assert.ok(blocks.length >= 10);
    for (const block of blocks) assert.equal(await expectReadable(vdev, block, false, 'plain read'), 0);
    for (const block of blocks) assert.equal(await expectReadable(vdev, block, true, 'scrub read'), 0);
    assert.deepEqual(vdev.errors, { read: 0, write: 0, checksum: 0 });
    for (const leaf of leavesOf(vdev)) assert.deepEqual(leaf.errors, { read: 0, write: 0, checksum: 0 });
  });

  withRig('a verifier that rejects everything gets ECKSUM, never data', async ({ vdev }, random) => {
    const [block] = await writeBlocks(vdev, random);
    assert.ok(block);
    const rejectAll: Block = { ...block, verify: () => false };
    await expectUnreadable(vdev, rejectAll, false, 'reject all');
    await expectUnreadable(vdev, rejectAll, true, 'reject all, scrub');
  });

  withRig('config() reopens to a tree that reads the same blocks', async ({ vdev }, random) => {
    const blocks = await writeBlocks(vdev, random);
    const config = vdev.config();
    assert.equal(config.asize, vdev.asize);
    const byPath = new Map(leavesOf(vdev).map((leaf) => [leaf.path, leaf.device]));
    const [reopened] = await openVdevTree([config], async (path) => byPath.get(path) ?? null);
    assert.ok(reopened);
    assert.deepEqual(reopened.config(), config);
    for (const block of blocks) await expectReadable(reopened, block, false, 'reopened');
    const [missing] = await openVdevTree([config], async () => null);
    assert.ok(missing);
    assert.equal(missing.state, missing instanceof LeafVdev ? 'UNAVAIL' : 'FAULTED');
    await expectUnreadable(missing, blocks[0] as Block, false, 'all devices missing');
  });

  withRig('faults within the redundancy are survived and healed', async (rig, random) => {
    const { vdev, redundancy } = rig;
    const leaves = leavesOf(vdev);
    const originals = leaves.map((leaf) => leaf.device as BlockDevice);
    const blocks = await writeBlocks(vdev, random);
    const modes: FaultMode[] = ['corrupt', 'corrupt', 'unavail', 'offline'];
    if (originals.every((d) => d instanceof FaultyDevice)) modes.push('die');
    const combos: number[][] = [];
    for (let k = 1; k <= redundancy; k++) combos.push(...leafCombinations(leaves.length, k));
    while (combos.length > COMBINATIONS_MAX) combos.splice(random.int(combos.length), 1);
    for (const combo of combos) {
      const block = random.pick(blocks);
      const extents = extentsOf(vdev, block.offset, block.data.length);
      const before = await Promise.all(extents.map((e) => readRaw(originals[e.leaf] as BlockDevice, e)));
      const checksumBefore = leaves.map((l) => l.errors.checksum);
      const comboModes = combo.map(() => random.pick(modes));
      const context = `leaves ${combo} as ${comboModes}`;
      const undo: (() => void)[] = [];
      for (let i = 0; i < combo.length; i++) {
        const leafIndex = combo[i] as number;
        undo.push(await injectFault(leaves[leafIndex] as LeafVdev, comboModes[i] as FaultMode, extents, leafIndex, random));
      }
      // A dead disk is ONLINE until I/O to it fails; unavailable and offline leaves degrade at once.
      const outOfService = comboModes.some((m) => m === 'unavail' || m === 'offline');
      if (outOfService) assert.equal(vdev.state, 'DEGRADED', context);
      else if (!comboModes.includes('die')) assert.equal(vdev.state, 'ONLINE', context);
      await expectReadable(vdev, block, false, context);
      await expectReadable(vdev, block, true, `${context}, scrub while faulted`);
      for (const u of undo) u();
      assert.equal(vdev.state, 'ONLINE', `${context}: back online`);
      await expectReadable(vdev, block, true, `${context}, scrub`);
      for (let e = 0; e < extents.length; e++) {
        const extent = extents[e] as Extent;
        const raw = await readRaw(originals[extent.leaf] as BlockDevice, extent);
        assert.ok(raw.equals(before[e] as Buffer), `${context}: leaf ${extent.leaf} not healed`);
      }
      combo.forEach((leafIndex, i) => {
        const holdsBlock = extents.some((e) => e.leaf === leafIndex);
        if (comboModes[i] === 'corrupt' && holdsBlock) {
          const leaf = leaves[leafIndex] as LeafVdev;
          assert.ok(leaf.errors.checksum > (checksumBefore[leafIndex] ?? 0), `${context}: leaf ${leafIndex} checksum count`);
        }
      });
      assert.equal(await expectReadable(vdev, block, true, `${context}, second scrub`), 0, `${context}: second scrub repaired`);
    }
    for (const block of blocks) await expectReadable(vdev, block, false, 'after all combinations');
  });

  withRig('one fault beyond the redundancy fails the read, never returns wrong data', async (rig, random) => {
    const { vdev, redundancy } = rig;
    const leaves = leavesOf(vdev);
    const originals = leaves.map((leaf) => leaf.device as BlockDevice);
    const blocks = await writeBlocks(vdev, random);
    for (let round = 0; round < 6; round++) {
      const block = random.pick(blocks);
      const extents = extentsOf(vdev, block.offset, block.data.length);
      const holders = [...new Set(extents.map((e) => e.leaf))];
      assert.ok(holders.length >= redundancy + 1);
      // Lost only when a data column is among the damaged ones (bad parity alone leaves data intact).
      const chosen: number[] = [random.pick(extents.filter((e) => e.isData)).leaf];
      while (chosen.length < redundancy + 1) {
        const leafIndex = random.pick(holders);
        if (!chosen.includes(leafIndex)) chosen.push(leafIndex);
      }
      const before = await Promise.all(extents.map((e) => readRaw(originals[e.leaf] as BlockDevice, e)));
      // At least one leaf returns corrupt data, so the ECKSUM path is exercised, not only "missing".
      const undo: (() => void)[] = [];
      for (let i = 0; i < chosen.length; i++) {
        const mode: FaultMode = i === 0 ? 'corrupt' : random.pick(['corrupt', 'unavail'] as const);
        const leafIndex = chosen[i] as number;
        // Whole extents: raidz rebuilds row by row, so damage in rows a column does not reach is repairable.
        undo.push(await injectFault(leaves[leafIndex] as LeafVdev, mode, extents, leafIndex, random, true));
      }
      const context = `leaves ${chosen} faulted`;
      await expectUnreadable(vdev, block, false, context);
      await expectUnreadable(vdev, block, true, `${context}, scrub`);
      for (const u of undo) u();
      for (let e = 0; e < extents.length; e++) {
        const extent = extents[e] as Extent;
        await originals[extent.leaf]?.write(ALLOCATABLE_START_BYTES + extent.offset, before[e] as Buffer);
      }
      await expectReadable(vdev, block, true, `${context}, restored`);
    }
  });

  withRig('writes while degraded are readable and heal onto returning leaves', async (rig, random) => {
    const { vdev, redundancy } = rig;
    if (redundancy === 0) {
      const leaf = leavesOf(vdev)[0] as LeafVdev;
      const device = leaf.replaceDevice(null);
      assert.equal(vdev.state, 'UNAVAIL');
      await assert.rejects(vdev.write(0, Buffer.alloc(2 ** vdev.ashift)), (e: unknown) => isCairnError(e, 'EIO'));
      leaf.replaceDevice(device);
      return;
    }
    const leaves = leavesOf(vdev);
    const missing: number[] = [];
    while (missing.length < redundancy) {
      const leafIndex = random.int(leaves.length);
      if (!missing.includes(leafIndex)) missing.push(leafIndex);
    }
    const devices = missing.map((i) => (leaves[i] as LeafVdev).replaceDevice(null));
    assert.equal(vdev.state, 'DEGRADED');
    const blocks = await writeBlocks(vdev, random);
    for (const block of blocks) await expectReadable(vdev, block, false, `degraded without ${missing}`);
    missing.forEach((i, j) => (leaves[i] as LeafVdev).replaceDevice(devices[j] ?? null));
    let repairedBytes = 0;
    for (const block of blocks) repairedBytes += await expectReadable(vdev, block, true, 'resilver by scrub');
    assert.ok(repairedBytes > 0, 'returning leaves were repaired');
    for (const block of blocks) assert.equal(await expectReadable(vdev, block, true, 'second scrub'), 0);
    // One more leaf out than the redundancy: the vdev is faulted and refuses writes.
    const extra = [...missing];
    for (let i = 0; extra.length <= redundancy; i++) if (!extra.includes(i)) extra.push(i);
    const taken = extra.map((i) => (leaves[i] as LeafVdev).replaceDevice(null));
    assert.equal(vdev.state, 'FAULTED');
    await assert.rejects(vdev.write(0, Buffer.alloc(2 ** vdev.ashift)), (e: unknown) => isCairnError(e, 'EIO'));
    extra.forEach((i, j) => (leaves[i] as LeafVdev).replaceDevice(taken[j] ?? null));
  });
}

/** A leaf over an in-memory FaultyDevice of the minimum device size (plus extraBytes). */
export function faultyLeaf(seed: number, id: number, ashift: number, extraBytes = 0): LeafVdev {
  const sizeBytes = DEVICE_SIZE_MIN_BYTES + extraBytes;
  const device = new FaultyDevice({ sizeBytes, seed: seed + id * 7919, path: `/faulty/${seed}/${id}` });
  const asize = leafAllocatableBytes(sizeBytes, ashift);
  return new LeafVdev({ guid: (id + 1).toString(16).padStart(16, '0'), id, ashift, asize, device });
}

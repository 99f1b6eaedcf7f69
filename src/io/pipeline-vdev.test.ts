/** The pipeline on real vdevs: a mirror of two temp files, corrupted on disk behind its back. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import {
  ALLOCATABLE_START_BYTES, DEVICE_SIZE_MIN_BYTES, LeafVdev, MirrorVdev, leafAllocatableBytes, openFileDevice, randomGuid,
} from '../vdev/index.js';
import type { Vdev } from '../vdev/index.js';
import { IoPipeline } from './pipeline.js';
import { ChecksumType, CompressionType } from './types.js';
import type { Allocator, BlockWriteProps } from './types.js';
import type { BlockPointer, Dva } from './blkptr.js';
import { Random } from '../testing/random.js';
import { isCairnError } from '../util/errors.js';

const ASHIFT = 12;

/** TEST DOUBLE: bump-pointer allocator on one vdev (copies land far enough apart not to overlap). */
class BumpTestAllocator implements Allocator {
  private nextOffset = 0;
  constructor(private readonly vdev: Vdev) {}
  allocate(psize: number, copies: number): Dva[] {
    const dvas: Dva[] = [];
    for (let c = 0; c < copies; c++) {
      const asize = this.vdev.allocatedSize(psize);
      dvas.push({ vdev: this.vdev.id, offset: this.nextOffset, asize });
      this.nextOffset += asize;
    }
    return dvas;
  }
  free(): void {}
}

async function withMirror(fn: (ctx: { mirror: MirrorVdev; paths: string[]; pipeline: IoPipeline }) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-io-'));
  const paths = [join(dir, 'a.img'), join(dir, 'b.img')];
  const mirror = new MirrorVdev({
    id: 0, ashift: ASHIFT,
    children: await Promise.all(paths.map(async (path, id) => new LeafVdev({
      guid: randomGuid(), id, ashift: ASHIFT, asize: leafAllocatableBytes(DEVICE_SIZE_MIN_BYTES, ASHIFT),
      device: await openFileDevice(path, { create: DEVICE_SIZE_MIN_BYTES }),
    }))),
  });
  try {
    const pipeline = new IoPipeline({ vdevs: (id) => (id === 0 ? mirror : undefined), allocator: new BumpTestAllocator(mirror) });
    await fn({ mirror, paths, pipeline });
  } finally {
    await mirror.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Flips bytes in a file at a vdev offset, behind the vdev's back (bit rot). */
async function corruptFile(path: string, vdevOffset: number, length: number): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    const at = ALLOCATABLE_START_BYTES + vdevOffset;
    const buf = Buffer.alloc(length);
    await handle.read(buf, 0, length, at);
    for (let i = 0; i < length; i++) buf[i]! ^= 0xa5;
    await handle.write(buf, 0, length, at);
  } finally {
    await handle.close();
  }
}

async function fileBytes(path: string, vdevOffset: number, length: number): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const buf = Buffer.alloc(length);
    await handle.read(buf, 0, length, ALLOCATABLE_START_BYTES + vdevOffset);
    return buf;
  } finally {
    await handle.close();
  }
}

const props: BlockWriteProps = {
  type: 1, level: 0, checksum: ChecksumType.fletcher4, compression: CompressionType.lz4, copies: 1, fill: 1, birthTxg: 3,
};

test('real mirror of two files: a corrupted side is detected, the read returns good data and heals the side', async () => {
  await withMirror(async ({ paths, pipeline }) => {
    const data = Buffer.concat([Buffer.from('cairn '.repeat(5000)), randomBytes(40_000)]).subarray(0, 64 * 1024);
    const bp = await pipeline.write(data, props);
    assert.equal(bp.compression, CompressionType.lz4);
    const dva = bp.dvas[0]!;
    const good = await fileBytes(paths[1]!, dva.offset, bp.psize);
    await corruptFile(paths[0]!, dva.offset + 17, 64);
    for (let i = 0; i < 3; i++) assert.ok((await pipeline.read(bp)).equals(data));
    assert.ok((await fileBytes(paths[0]!, dva.offset, bp.psize)).equals(good), 'the bad side was rewritten on disk');
  });
});

test('real mirror, copies=2: both sides of one DVA bad → healed from the other DVA; all bad → ECKSUM', async () => {
  await withMirror(async ({ paths, pipeline }) => {
    const data = randomBytes(32 * 1024);
    const bp = await pipeline.write(data, { ...props, copies: 2, checksum: ChecksumType.sha256 });
    const [first, second] = [bp.dvas[0]!, bp.dvas[1]!];
    for (const path of paths) await corruptFile(path, first.offset, 8);
    assert.ok((await pipeline.read(bp)).equals(data));
    assert.equal(pipeline.stats.healedCopies, 1);
    for (const path of paths) assert.ok((await fileBytes(path, first.offset, bp.psize)).equals(data), `${path} healed`);

    for (const path of paths) {
      await corruptFile(path, first.offset, 8);
      await corruptFile(path, second.offset + 4096, 8);
    }
    await assert.rejects(pipeline.read(bp), (e) => isCairnError(e, 'ECKSUM'));
    assert.equal(pipeline.dataErrors.length, 1);
    const scrub = await pipeline.scrub(bp);
    assert.equal(scrub.unrecoverable, true);
  });
});

test('real mirror: scrub repairs a side that reads never look at', async () => {
  await withMirror(async ({ paths, pipeline, mirror }) => {
    const data = randomBytes(16 * 1024);
    const bp = await pipeline.write(data, { ...props, compression: CompressionType.off });
    const dva = bp.dvas[0]!;
    await corruptFile(paths[1]!, dva.offset + 1000, 4);
    const result = await pipeline.scrub(bp);
    assert.equal(result.unrecoverable, false);
    assert.ok(result.repairedBytes > 0, 'scrub repaired bytes');
    assert.ok((await fileBytes(paths[1]!, dva.offset, bp.psize)).equals(data));
    assert.ok(mirror.children.some((c) => c.errors.checksum > 0), 'the bad side is charged a checksum error');
  });
});

test('readInto on a real mirror, seeded: every block reads back equal into a dirty buffer, bad sides heal, lost blocks are ECKSUM', async () => {
  const seed = Number(process.env.CAIRN_SEED ?? 4711);
  const random = new Random(seed);
  await withMirror(async ({ paths, pipeline }) => {
    const blocks: { data: Buffer; bp: BlockPointer; lost: boolean }[] = [];
    for (let i = 0; i < 40; i++) {
      const size = [4096, 16 * 1024, 128 * 1024, 1000][random.int(4)]!;
      const data = random.chance(0.5) ? random.bytes(size) : Buffer.from('cairn reads into '.repeat(8000)).subarray(0, size);
      const compression = random.chance(0.5) ? CompressionType.off : CompressionType.lz4;
      const bp = await pipeline.write(data, { ...props, compression, copies: 1 + random.int(2) });
      blocks.push({ data, bp, lost: false });
    }
    // Bit rot, behind the pool's back: one side of a DVA (healable), or both sides of every DVA (lost).
    for (const block of blocks) {
      const roll = random.int(4);
      if (roll === 0) continue;
      const sides = roll === 3 ? paths : [paths[random.int(2)]!];
      const dvas = roll === 3 ? block.bp.dvas : [block.bp.dvas[random.int(block.bp.dvas.length)]!];
      for (const dva of dvas) for (const path of sides) await corruptFile(path, dva.offset + random.int(block.bp.psize - 8), 8);
      block.lost = roll === 3;
    }
    for (const { data, bp, lost } of blocks) {
      const label = `seed ${seed}, ${bp.lsize} bytes, compression ${bp.compression}, ${bp.dvas.length} copies`;
      const target = random.bytes(bp.lsize);
      if (lost) {
        await assert.rejects(pipeline.readInto(bp, target), (e) => isCairnError(e, 'ECKSUM'), label);
        continue;
      }
      // The mirror alternates sides: two reads look at both sides of the first copy.
      for (let i = 0; i < 2; i++) {
        target.fill(0xee);
        await pipeline.readInto(bp, target);
        assert.ok(target.equals(data), label);
      }
      const first = bp.dvas[0]!;
      const [a, b] = await Promise.all(paths.map((path) => fileBytes(path, first.offset, bp.psize)));
      assert.ok(a!.equals(b!), `${label}: both sides of the copy read are healed alike`);
    }
    assert.ok(pipeline.stats.healedCopies + pipeline.stats.repairedBytes > 0, 'something was healed');
    assert.ok(blocks.some((b) => b.lost) && blocks.some((b) => !b.lost && b.bp.compression === CompressionType.off), `seed ${seed} covers both cases`);
  });
});

test('a leaf reads straight into the buffer it is given, except for scrub; a mirror passes it to the side it reads', async () => {
  await withMirror(async ({ mirror }) => {
    const data = randomBytes(8192);
    await mirror.write(0, data);
    const into = Buffer.alloc(8192);
    const accept = (candidate: Buffer): boolean => candidate.equals(data);
    const viaMirror = await mirror.read(0, 8192, accept, { into });
    assert.equal(viaMirror.data, into);
    assert.ok(into.equals(data));
    const leaf = mirror.children[0]!;
    const scrubbed = await leaf.read(0, 8192, accept, { into: Buffer.alloc(8192), all: true });
    assert.notEqual(scrubbed.data, into);
    const wrongSize = await leaf.read(0, 8192, accept, { into: Buffer.alloc(4096) });
    assert.ok(wrongSize.data.equals(data));
  });
});

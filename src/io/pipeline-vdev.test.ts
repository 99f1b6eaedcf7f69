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
import type { Dva } from './blkptr.js';
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

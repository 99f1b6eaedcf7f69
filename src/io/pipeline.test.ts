import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { IoPipeline, DATA_ERRORS_MAX } from './pipeline.js';
import { ChecksumType, CompressionType } from './types.js';
import type { Allocator, BlockWriteProps } from './types.js';
import type { BlockPointer, Dva } from './blkptr.js';
import type { BlockVerifier, ReadOptions, ReadResult, Vdev, VdevConfig, VdevErrorCounts } from '../vdev/types.js';
import { CairnError, isCairnError } from '../util/errors.js';

/**
 * TEST DOUBLE: a single-device vdev over an in-memory Buffer. Reads hand the verifier a copy and throw
 * ECKSUM when it refuses (as a real leaf does); failReads / failWrites simulate a dead device.
 */
class MemoryTestVdev implements Vdev {
  readonly kind = 'file' as const;
  readonly guid: string;
  readonly children: readonly Vdev[] = [];
  readonly errors: VdevErrorCounts = { read: 0, write: 0, checksum: 0 };
  readonly state = 'ONLINE' as const;
  readonly bytes: Buffer;
  failReads = false;
  failWrites = false;
  readCalls = 0;
  allReads = 0;

  constructor(readonly id: number, readonly ashift: number, readonly asize: number) {
    this.guid = `test${id}`;
    this.bytes = Buffer.alloc(asize);
  }

  allocatedSize(psize: number): number {
    return Math.ceil(psize / 2 ** this.ashift) * 2 ** this.ashift;
  }

  async write(offset: number, data: Buffer): Promise<void> {
    assert.equal(offset % 2 ** this.ashift, 0, 'unaligned write');
    assert.equal(data.length % 2 ** this.ashift, 0, 'write not a sector multiple');
    if (this.failWrites) throw new CairnError('EIO', 'test vdev write failure');
    data.copy(this.bytes, offset);
  }

  async read(offset: number, size: number, verify: BlockVerifier, options?: ReadOptions): Promise<ReadResult> {
    this.readCalls++;
    if (options?.all === true) this.allReads++;
    if (this.failReads) throw new CairnError('EIO', 'test vdev read failure');
    const data = Buffer.from(this.bytes.subarray(offset, offset + size));
    if (!verify(data)) {
      this.errors.checksum++;
      throw new CairnError('ECKSUM', 'test vdev checksum mismatch');
    }
    return { data, repairedBytes: 0 };
  }

  corrupt(offset: number, length: number): void {
    for (let i = offset; i < offset + length; i++) this.bytes[i]! ^= 0x5a;
  }

  async flush(): Promise<void> {}
  async close(): Promise<void> {}
  config(): VdevConfig {
    return { type: 'file', guid: this.guid, id: this.id, ashift: this.ashift, asize: this.asize };
  }
}

/** TEST DOUBLE: bump-pointer allocator, copies round-robin over vdevs (same vdev when there is one). */
class BumpTestAllocator implements Allocator {
  readonly next: number[];
  readonly freed: Dva[] = [];
  private rotor = 0;
  constructor(private readonly vdevList: readonly Vdev[]) {
    this.next = vdevList.map(() => 0);
  }
  allocate(psize: number, copies: number): Dva[] {
    const dvas: Dva[] = [];
    for (let c = 0; c < copies; c++) {
      const index = (this.rotor + c) % this.vdevList.length;
      const vdev = this.vdevList[index]!;
      const asize = vdev.allocatedSize(psize);
      if (this.next[index]! + asize > vdev.asize) throw new CairnError('ENOSPC', 'test allocator full');
      dvas.push({ vdev: vdev.id, offset: this.next[index]!, asize });
      this.next[index]! += asize;
    }
    this.rotor++;
    return dvas;
  }
  free(dva: Dva): void {
    this.freed.push(dva);
  }
}

function setup(ashifts: number[] = [12, 12], sizeBytes = 8 << 20) {
  const vdevs = ashifts.map((ashift, id) => new MemoryTestVdev(id, ashift, sizeBytes));
  const allocator = new BumpTestAllocator(vdevs);
  const pipeline = new IoPipeline({ vdevs: (id) => vdevs[id], allocator });
  return { vdevs, allocator, pipeline };
}

function props(overrides: Partial<BlockWriteProps> = {}): BlockWriteProps {
  return {
    type: 1, level: 0, checksum: ChecksumType.fletcher4, compression: CompressionType.off, copies: 1, fill: 1, birthTxg: 5,
    ...overrides,
  };
}

const text = Buffer.from('Every block is verified by its parent. '.repeat(4000)).subarray(0, 128 * 1024);
const datasets: Record<string, Buffer> = {
  random: randomBytes(128 * 1024), zeros: Buffer.alloc(128 * 1024), text, odd: randomBytes(1000), tinyText: Buffer.from('hello'),
};

test('every compression × checksum round-trips random, zero, text and odd-sized blocks', async () => {
  const { pipeline, vdevs } = setup([9]);
  for (const compression of Object.values(CompressionType)) {
    for (const checksum of Object.values(ChecksumType)) {
      for (const [name, data] of Object.entries(datasets)) {
        const bp = await pipeline.write(data, props({ compression, checksum }));
        const label = `compression ${compression} checksum ${checksum} ${name}`;
        assert.equal(bp.lsize, data.length, label);
        assert.equal(bp.psize % 512, 0, label);
        assert.equal(bp.birthTxg, 5);
        if (name === 'random') assert.equal(bp.compression, CompressionType.off, `${label}: random stored raw`);
        if (name !== 'random' && name !== 'odd' && name !== 'tinyText' && compression !== CompressionType.off) {
          assert.equal(bp.compression, compression, label);
          assert.ok(bp.psize < data.length / 4, label);
        }
        assert.ok((await pipeline.read(bp)).equals(data), label);
      }
    }
  }
  assert.ok(vdevs[0]!.readCalls > 0);
});

test('copies=2 with one copy corrupted: read returns good data and heals the bad copy', async () => {
  const { pipeline, vdevs } = setup([12, 12]);
  const data = randomBytes(64 * 1024);
  const bp = await pipeline.write(data, props({ copies: 2, checksum: ChecksumType.sha256 }));
  assert.equal(bp.dvas.length, 2);
  assert.notEqual(bp.dvas[0]!.vdev, bp.dvas[1]!.vdev);
  const first = bp.dvas[0]!;
  const firstVdev = vdevs[first.vdev]!;
  firstVdev.corrupt(first.offset + 100, 10);
  assert.ok((await pipeline.read(bp)).equals(data));
  assert.equal(pipeline.stats.checksumErrors, 1);
  assert.equal(pipeline.stats.healedCopies, 1);
  assert.equal(pipeline.stats.repairedBytes, bp.psize);
  // The bad copy now holds the good bytes: a second read verifies on the first DVA.
  assert.ok(firstVdev.bytes.subarray(first.offset, first.offset + bp.psize).equals(data));
  assert.ok((await pipeline.read(bp)).equals(data));
  assert.equal(pipeline.stats.checksumErrors, 1);
  assert.equal(pipeline.dataErrors.length, 0);
});

test('copies=2 on a single vdev heals too', async () => {
  const { pipeline, vdevs } = setup([9]);
  const data = Buffer.from(text);
  const bp = await pipeline.write(data, props({ copies: 2, compression: CompressionType.zstd }));
  assert.equal(bp.dvas[0]!.vdev, bp.dvas[1]!.vdev);
  vdevs[0]!.corrupt(bp.dvas[0]!.offset, 4);
  assert.ok((await pipeline.read(bp)).equals(data));
  assert.equal(pipeline.stats.healedCopies, 1);
  assert.ok(vdevs[0]!.bytes.subarray(bp.dvas[0]!.offset, bp.dvas[0]!.offset + bp.psize)
    .equals(vdevs[0]!.bytes.subarray(bp.dvas[1]!.offset, bp.dvas[1]!.offset + bp.psize)));
});

test('all copies corrupted: ECKSUM, never garbage, and dataErrors records the block once', async () => {
  const { pipeline, vdevs } = setup([12, 12]);
  const bp = await pipeline.write(randomBytes(8192), props({ copies: 2 }));
  for (const dva of bp.dvas) vdevs[dva.vdev]!.corrupt(dva.offset + 8000, 1);
  await assert.rejects(pipeline.read(bp), (e) => isCairnError(e, 'ECKSUM'));
  await assert.rejects(pipeline.read(bp), (e) => isCairnError(e, 'ECKSUM'));
  assert.equal(pipeline.dataErrors.length, 1);
  assert.equal(pipeline.dataErrors[0]!.bp, bp);
  assert.equal(pipeline.dataErrors[0]!.count, 2);
  assert.equal(pipeline.dataErrors[0]!.code, 'ECKSUM');
  assert.equal(pipeline.stats.dataErrors, 2);
  assert.equal(pipeline.stats.checksumErrors, 4);
  assert.equal(pipeline.stats.healedCopies, 0);
  pipeline.clearDataErrors();
  assert.equal(pipeline.dataErrors.length, 0);
});

test('dead devices give EIO; the permanent-error list is bounded', async () => {
  const { pipeline, vdevs } = setup([9]);
  const bps: BlockPointer[] = [];
  for (let i = 0; i < DATA_ERRORS_MAX + 20; i++) bps.push(await pipeline.write(randomBytes(512), props()));
  vdevs[0]!.failReads = true;
  for (const bp of bps) await assert.rejects(pipeline.read(bp), (e) => isCairnError(e, 'EIO'));
  assert.equal(pipeline.dataErrors.length, DATA_ERRORS_MAX);
  assert.equal(pipeline.stats.dataErrors, DATA_ERRORS_MAX + 20);
  // The newest are kept.
  assert.equal(pipeline.dataErrors.at(-1)!.bp, bps.at(-1));
});

test('a copy on a failed device is skipped and the read succeeds from the other', async () => {
  const { pipeline, vdevs } = setup([12, 12]);
  const data = randomBytes(4096);
  const bp = await pipeline.write(data, props({ copies: 2 }));
  vdevs[bp.dvas[0]!.vdev]!.failReads = true;
  assert.ok((await pipeline.read(bp)).equals(data));
  assert.equal(pipeline.stats.ioErrors, 1);
  assert.equal(pipeline.stats.healedCopies, 1); // the rewrite was accepted by the (write-healthy) device
});

test('scrub reads every copy, repairs the one a read would not touch, and reports loss', async () => {
  const { pipeline, vdevs } = setup([12, 12]);
  const data = randomBytes(16384);
  const bp = await pipeline.write(data, props({ copies: 2, checksum: ChecksumType.xxh128 }));
  const second = bp.dvas[1]!;
  vdevs[second.vdev]!.corrupt(second.offset, 16);
  assert.ok((await pipeline.read(bp)).equals(data)); // a read stops at the good first copy
  assert.equal(pipeline.stats.healedCopies, 0);
  const result = await pipeline.scrub(bp);
  assert.deepEqual(result, { repairedBytes: bp.psize, unrecoverable: false });
  assert.ok(vdevs[second.vdev]!.allReads > 0, 'scrub asks vdevs for all-children reads');
  assert.ok(vdevs[second.vdev]!.bytes.subarray(second.offset, second.offset + bp.psize).equals(data));
  assert.deepEqual(await pipeline.scrub(bp), { repairedBytes: 0, unrecoverable: false });
  for (const dva of bp.dvas) vdevs[dva.vdev]!.corrupt(dva.offset, 1);
  assert.deepEqual(await pipeline.scrub(bp), { repairedBytes: 0, unrecoverable: true });
  assert.equal(pipeline.dataErrors.length, 1);
});

test('a failed copy write throws EIO and returns the space', async () => {
  const { pipeline, vdevs, allocator } = setup([12, 12]);
  vdevs[1]!.failWrites = true;
  await assert.rejects(pipeline.write(randomBytes(4096), props({ copies: 2 })), (e) => isCairnError(e, 'EIO'));
  assert.equal(allocator.freed.length, 2);
});

test('psize is padded to the largest ashift among vdevs', async () => {
  const { pipeline } = setup([9, 12]);
  const bp = await pipeline.write(randomBytes(1000), props({ copies: 2 }));
  assert.equal(bp.psize, 4096);
  assert.deepEqual(bp.dvas.map((d) => d.asize), [4096, 4096]);
});

test('rewrite reuses the DVAs when the new block fits, else writes anew and leaves the old block to its owner', async () => {
  const { pipeline, allocator } = setup([9]);
  const bp = await pipeline.write(randomBytes(8192), props({ copies: 2 }));
  const smaller = Buffer.from(text.subarray(0, 8192));
  const same = await pipeline.rewrite(bp, smaller, props({ copies: 2, compression: CompressionType.lz4 }));
  assert.deepEqual(same.dvas, bp.dvas);
  assert.ok(same.psize < bp.psize);
  assert.ok((await pipeline.read(same)).equals(smaller));
  assert.equal(allocator.freed.length, 0);
  const bigger = randomBytes(32768);
  const moved = await pipeline.rewrite(same, bigger, props({ copies: 2 }));
  assert.notDeepEqual(moved.dvas, bp.dvas);
  assert.deepEqual(allocator.freed, [], 'the caller frees the replaced block, once');
  assert.ok((await pipeline.read(moved)).equals(bigger));
});

test('a corrupted block pointer (unknown checksum type) is EIO, not a crash', async () => {
  const { pipeline } = setup([9]);
  const bp = await pipeline.write(randomBytes(512), props());
  await assert.rejects(pipeline.read({ ...bp, checksum: 77 }), (e) => isCairnError(e, 'EIO'));
});

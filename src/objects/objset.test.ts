import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { BlockPointer } from '../io/blkptr.js';
import type { BlockWriteProps } from '../io/types.js';
import { ObjectSet, ObjsetType, type ObjsetEnvironment } from './objset.js';
import { ObjectType } from './types.js';
import { Random } from '../testing/random.js';

/**
 * A block environment over a Map that checks the copy-on-write discipline: no double free, no leak, and
 * no change to a written block through the buffer a read handed out (as the ARC's cached buffers are).
 */
class MapEnvironment implements ObjsetEnvironment {
  blocks = new Map<number, { data: Buffer; written: Buffer; birth: number }>();
  nextOffset = 0;
  txg = 1;
  dirtyBytes = 0;
  freedThisTxg: number[] = [];
  readBlock = async (bp: BlockPointer): Promise<Buffer> => {
    const dva = bp.dvas[0];
    assert.ok(dva, 'read of a hole');
    const b = this.blocks.get(dva.offset);
    assert.ok(b, `read of freed or never written block at ${dva.offset}`);
    assert.ok(b.data.equals(b.written), `the block at ${dva.offset} was changed after it was written`);
    return b.data;
  };
  writeBlock = async (data: Buffer, props: BlockWriteProps, old: BlockPointer | null): Promise<BlockPointer> => {
    let offset: number;
    if (old && old.birthTxg === this.txg && old.dvas[0]) offset = old.dvas[0].offset;
    else offset = (this.nextOffset += 1 << 20);
    this.blocks.set(offset, { data: Buffer.from(data), written: Buffer.from(data), birth: props.birthTxg });
    return {
      dvas: [{ vdev: 0, offset, asize: 4096 }], lsize: data.length, psize: data.length, compression: 0, checksum: 0,
      type: props.type, level: props.level, fill: props.fill, birthTxg: props.birthTxg, cksum: Buffer.alloc(32),
    };
  };
  freeBlock = (bp: BlockPointer): void => {
    const dva = bp.dvas[0];
    assert.ok(dva);
    assert.ok(this.blocks.has(dva.offset), `double free at ${dva.offset}`);
    this.freedThisTxg.push(dva.offset);
  };
  hold = <T>(fn: () => Promise<T>): Promise<T> => fn();
  reserveSpace = (): void => undefined;
  dirtyBytesChanged = (delta: number): void => {
    this.dirtyBytes += delta;
  };
  /** Frees become real after the txg, as the pool's deferred frees do. */
  endTxg(): void {
    for (const off of this.freedThisTxg) this.blocks.delete(off);
    this.freedThisTxg = [];
    this.txg++;
  }
}

const policy = { checksum: 3, compression: 1, copies: 1, metadataCopies: 2 } as const;

test('objects: random writes, in-place modifies, frees and syncs read back like a model, across reopen, with no leaked blocks', async () => {
  for (const seed of [1, 2, 3, 4]) {
    const random = new Random(seed);
    const rand = (): number => random.next();
    const env = new MapEnvironment();
    let os = ObjectSet.create(env, ObjsetType.filesystem, policy);
    let models = new Map<number, Buffer>();
    let synced: { root: Awaited<ReturnType<ObjectSet['sync']>>; models: Map<number, Buffer> } | null = null;
    try {
      for (let step = 0; step < 300; step++) {
        const r = rand();
        if (r < 0.1 || models.size === 0) {
          const bs = [512, 4096, 16384, 131072][Math.floor(rand() * 4)]!;
          const id = await os.allocateObject(ObjectType.plainFile, { blockSizeBytes: bs });
          models.set(id, Buffer.alloc(0));
        } else if (r < 0.25) {
          // modify: a range inside one block, changed in place; the edit sees the current bytes.
          const ids = [...models.keys()];
          const id = ids[Math.floor(rand() * ids.length)]!;
          const model = models.get(id)!;
          const bs = (await os.objectInfo(id)).blockSizeBytes;
          const offset = Math.floor(rand() * (model.length + bs));
          const len = 1 + Math.floor(rand() * (bs - (offset % bs)));
          const next = Buffer.alloc(Math.max(model.length, offset + len));
          model.copy(next);
          const before = Buffer.from(next.subarray(offset, offset + len));
          const value = Math.floor(rand() * 256);
          next.fill(value, offset, offset + len);
          models.set(id, next);
          await os.modify(id, offset, len, (range) => {
            assert.ok(range.equals(before), `seed ${seed} step ${step}: modify sees other bytes than were there`);
            range.fill(value);
          });
        } else if (r < 0.7) {
          const ids = [...models.keys()];
          const id = ids[Math.floor(rand() * ids.length)]!;
          const model = models.get(id)!;
          const offset = Math.floor(rand() * (rand() < 0.1 ? 3_000_000 : 300_000));
          const len = Math.floor(rand() * 70_000);
          const data = Buffer.alloc(len, Math.floor(rand() * 255) + 1);
          for (let i = 0; i < len; i += 97) data[i] = Math.floor(rand() * 256);
          const next = Buffer.alloc(Math.max(model.length, offset + len));
          model.copy(next);
          data.copy(next, offset);
          models.set(id, next);
          await os.write(id, offset, data);
        } else if (r < 0.8) {
          const ids = [...models.keys()];
          const id = ids[Math.floor(rand() * ids.length)]!;
          const model = models.get(id)!;
          const offset = Math.floor(rand() * (model.length + 1));
          const len = rand() < 0.5 ? Number.MAX_SAFE_INTEGER - offset : Math.floor(rand() * 200_000);
          const next = Buffer.from(model);
          next.fill(0, offset, Math.min(model.length, offset + len));
          models.set(id, next);
          await os.freeRange(id, offset, len);
        } else if (r < 0.85) {
          const ids = [...models.keys()];
          const id = ids[Math.floor(rand() * ids.length)]!;
          await os.freeObject(id);
          models.delete(id);
        } else if (r < 0.95 || synced === null) {
          const root = await os.sync(env.txg);
          env.endTxg();
          synced = { root, models: new Map(models) };
          if (rand() < 0.5) os = await ObjectSet.open(env, root, policy);
        } else {
          // A crash: what was not synced is gone, what was synced is whole (no block of it was changed in place).
          os = await ObjectSet.open(env, synced.root, policy);
          models = new Map(synced.models);
          env.dirtyBytes = 0;
        }
        if (step % 25 === 0) {
          for (const [id, model] of models) {
            const got = await os.read(id, 0, model.length + 1000);
            assert.ok(got.subarray(0, model.length).equals(model), `seed ${seed} step ${step}: object ${id} differs`);
            assert.ok(got.subarray(model.length).every((b) => b === 0), `seed ${seed}: bytes past the end are not zero`);
          }
        }
      }
      const root = await os.sync(env.txg);
      env.endTxg();
      const reached = new Set<number>();
      await os.traverse(async (bp) => {
        const off = bp.dvas[0]!.offset;
        assert.ok(!reached.has(off), 'block reached twice');
        reached.add(off);
      }, root);
      assert.deepEqual([...env.blocks.keys()].sort(), [...reached].sort(), `seed ${seed}: live blocks are exactly the reachable ones`);
      const reopened = await ObjectSet.open(env, root, policy);
      for (const [id, model] of models) {
        const got = await reopened.read(id, 0, model.length);
        assert.ok(got.equals(model), `seed ${seed}: object ${id} differs after reopen`);
      }
      assert.equal(env.dirtyBytes, 0, 'dirty accounting returns to zero after sync');
    } catch (e) {
      console.error(`failing seed: ${seed}`);
      throw e;
    }
  }
});

test('objects: a sparse object of 16 TiB writes, reads and frees without walking its holes', async () => {
  const env = new MapEnvironment();
  const os = ObjectSet.create(env, ObjsetType.filesystem, policy);
  const id = await os.allocateObject(ObjectType.plainFile);
  const far = 16 * 2 ** 40 - 4096;
  await os.write(id, 4096, Buffer.from('near'));
  await os.write(id, far, Buffer.from('far away'));
  const root = await os.sync(env.txg);
  env.endTxg();
  const again = await ObjectSet.open(env, root, policy);
  assert.equal((await again.read(id, far, 8)).toString(), 'far away');
  assert.equal((await again.read(id, 4096, 4)).toString(), 'near');
  assert.ok((await again.read(id, 2 ** 40, 4096)).every((b) => b === 0));
  await again.freeRange(id, 0, Number.MAX_SAFE_INTEGER);
  await again.sync(env.txg);
  env.endTxg();
  assert.equal((await again.read(id, far, 8)).toString('hex'), '0'.repeat(16));
});

test('objects: bonus buffers persist and oversize bonus is refused', async () => {
  const env = new MapEnvironment();
  const os = ObjectSet.create(env, ObjsetType.filesystem, policy);
  const id = await os.allocateObject(ObjectType.directory);
  await os.setBonus(id, Buffer.from('inode bytes'));
  await assert.rejects(os.setBonus(id, Buffer.alloc(400)), /exceeds/);
  const root = await os.sync(env.txg);
  env.endTxg();
  const again = await ObjectSet.open(env, root, policy);
  assert.equal((await again.getBonus(id)).toString(), 'inode bytes');
  assert.equal((await again.objectInfo(id)).type, ObjectType.directory);
  await assert.rejects(again.read(id + 5, 0, 1), /does not exist/);
});

test('objects: readInto fills a reused buffer like read, holes as zeros, across sequential prefetch', async () => {
  const env = new MapEnvironment();
  const os = ObjectSet.create(env, ObjsetType.filesystem, policy);
  const id = await os.allocateObject(ObjectType.plainFile, { blockSizeBytes: 4096 });
  const random = new Random(77);
  const data = random.bytes(300_000);
  await os.write(id, 0, data);
  await os.freeRange(id, 100_000, 50_000);
  data.fill(0, 100_000, 150_000);
  await os.sync(env.txg);
  env.endTxg();
  const target = Buffer.alloc(10_000, 0xee);
  for (let at = 0; at < data.length; at += target.length) {
    await os.readInto(id, at, target);
    const want = Buffer.alloc(target.length);
    data.copy(want, 0, at, Math.min(data.length, at + target.length));
    assert.ok(target.equals(want), `readInto at ${at}`);
  }
});

/** MapEnvironment with the pool's direct path: whole blocks read into the caller's buffer, counted; a block can be made to fail. */
class DirectMapEnvironment extends MapEnvironment {
  directReads = 0;
  failAt: number | null = null;
  readBlockInto = async (bp: BlockPointer, target: Buffer): Promise<void> => {
    const data = await this.readBlock(bp);
    assert.equal(data.length, target.length, 'a direct read fills exactly one block');
    this.directReads++;
    await new Promise((resolve) => setImmediate(resolve)); // a device read takes a turn of the loop
    if (bp.dvas[0]?.offset === this.failAt) throw new Error('injected read failure');
    data.copy(target);
  };
}

test('objects: readInto with direct reads sees dirty, trimmed, grown and synced blocks alike, seeded', async () => {
  const env = new DirectMapEnvironment();
  const os = ObjectSet.create(env, ObjsetType.filesystem, policy);
  const random = new Random(4242);
  const bs = 16384;
  const id = await os.allocateObject(ObjectType.plainFile, { blockSizeBytes: bs });
  const model = Buffer.alloc(40 * bs);
  const write = async (at: number, length: number): Promise<void> => {
    const data = random.bytes(length);
    await os.write(id, at, data);
    data.copy(model, at);
  };
  await write(0, 40 * bs);
  await os.sync(env.txg);
  env.endTxg();
  // Changes of the open txg on top of synced blocks: whole and partial writes, a trimmed range.
  for (let i = 0; i < 20; i++) await write(random.int(40 * bs - 5000), 1 + random.int(5000));
  await write(7 * bs, bs);
  await os.freeRange(id, 11 * bs, 3 * bs);
  model.fill(0, 11 * bs, 14 * bs);
  const check = async (label: string): Promise<void> => {
    for (let at = 0; at < model.length; at += 4 * bs) {
      const target = Buffer.alloc(4 * bs, 0xee);
      await os.readInto(id, at, target);
      assert.ok(target.equals(model.subarray(at, at + 4 * bs)), `${label}: readInto at ${at}`);
    }
  };
  const before = env.directReads;
  await check('open txg');
  assert.ok(env.directReads > before, 'synced blocks no txg changed are read directly');
  await os.sync(env.txg);
  env.endTxg();
  await check('after sync');
  // A small object whose one block grew in the open txg.
  const small = await os.allocateObject(ObjectType.plainFile, { blockSizeBytes: bs });
  await os.write(small, 0, Buffer.from('short'));
  await os.sync(env.txg);
  env.endTxg();
  const grown = random.bytes(3000);
  await os.write(small, 0, grown);
  const target = Buffer.alloc(3000, 0xee);
  await os.readInto(small, 0, target);
  assert.ok(target.equals(grown));
});

test('objects: a failed block of a readInto fails it only after every other block of it settled', async () => {
  const env = new DirectMapEnvironment();
  const os = ObjectSet.create(env, ObjsetType.filesystem, policy);
  const bs = 16384;
  const id = await os.allocateObject(ObjectType.plainFile, { blockSizeBytes: bs });
  await os.write(id, 0, Buffer.alloc(8 * bs, 1));
  await os.sync(env.txg);
  env.endTxg();
  const info = await os.objectInfo(id);
  assert.equal(info.blockSizeBytes, bs);
  // Block 0's device offset: the first level-0 block written.
  env.failAt = Math.min(...[...env.blocks.entries()].filter(([, b]) => b.data.length === bs).map(([off]) => off));
  const target = Buffer.alloc(8 * bs, 0xee);
  let settledAfter = -1;
  await assert.rejects(os.readInto(id, 0, target).finally(() => (settledAfter = env.directReads)), /injected/);
  const snapshot = Buffer.from(target);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(env.directReads, settledAfter, 'no block read was still running when the read failed');
  assert.ok(target.equals(snapshot), 'nothing wrote into the buffer after the read failed');
});

test('objects: readShared reads like read (clean, dirty, holes, across blocks), and a whole-block write leaves a view taken before unchanged', async () => {
  const env = new MapEnvironment();
  const os = ObjectSet.create(env, ObjsetType.filesystem, policy);
  const bs = 16 * 1024;
  const id = await os.allocateObject(ObjectType.kv, { blockSizeBytes: bs });
  const random = new Random(78);
  const data = random.bytes(6 * bs);
  await os.write(id, 0, data);
  await os.freeRange(id, 2 * bs, bs); // a hole in the middle
  data.fill(0, 2 * bs, 3 * bs);
  const check = async (when: string): Promise<void> => {
    for (const [offset, length] of [[0, bs], [bs + 100, 500], [2 * bs, bs], [bs - 10, 20], [5 * bs, bs], [6 * bs, 64]] as const) {
      const shared = await os.readShared(id, offset, length);
      assert.ok(shared.equals(await os.read(id, offset, length)), `${when}: readShared(${offset}, ${length})`);
      const want = Buffer.alloc(length);
      data.copy(want, 0, offset, Math.min(data.length, offset + length));
      assert.ok(shared.equals(want), `${when}: readShared(${offset}, ${length}) against the model`);
    }
  };
  await check('dirty');
  await os.sync(env.txg);
  env.endTxg();
  await check('clean');
  const view = await os.readShared(id, bs, bs);
  const before = Buffer.from(view);
  await os.write(id, bs, random.bytes(bs)); // whole block: a new buffer, the view keeps what it read
  assert.ok(view.equals(before));
  const dirtyView = await os.readShared(id, bs, bs);
  await os.write(id, bs, random.bytes(bs));
  assert.notEqual((await os.readShared(id, bs, bs)).buffer, dirtyView.buffer, 'a whole-block write of a dirty block replaces it');
  // adopt: a whole aligned block becomes the block itself; a partial one is copied as always
  const given = random.bytes(2 * bs + 10);
  const expected = Buffer.from(given);
  await os.write(id, 3 * bs, given, { adopt: true });
  assert.ok((await os.read(id, 3 * bs, given.length)).equals(expected));
  assert.equal((await os.readShared(id, 3 * bs, bs)).buffer, given.buffer, 'the given block is used, not copied');
  await os.sync(env.txg);
  env.endTxg();
  assert.ok((await os.read(id, 3 * bs, given.length)).equals(expected), 'and synced as given');
});

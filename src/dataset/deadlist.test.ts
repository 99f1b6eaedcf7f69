import { test } from 'node:test';
import assert from 'node:assert/strict';
import { holeBlockPointer, type BlockPointer } from '../io/blkptr.js';
import { MemoryObjectStore } from '../testing/memory-object-store.js';
import { Random } from '../testing/random.js';
import {
  DEADLIST_CHUNK_ENTRIES, allocatedBytes, appendDeadList, createDeadList, deadListBytesBornAfter, deadListChunks, deadListTotals,
} from './deadlist.js';

function fakeBp(rnd: Random, birthTxg: number): BlockPointer {
  const bp = holeBlockPointer(4096 * (1 + rnd.int(32)), birthTxg);
  bp.dvas = [{ vdev: rnd.int(3), offset: rnd.int(1 << 30) * 512, asize: 512 * (1 + rnd.int(256)) }];
  bp.psize = 512 * (1 + rnd.int(8));
  bp.cksum = rnd.bytes(32);
  return bp;
}

test('dead list: appends across chunk boundaries read back in order with exact totals', async () => {
  const seed = 4242;
  const rnd = new Random(seed);
  const store = new MemoryObjectStore();
  const written: BlockPointer[] = [];
  await store.hold(async () => {
    const id = await createDeadList(store);
    assert.deepEqual(await deadListTotals(store, id), { count: 0, usedBytes: 0, compressedBytes: 0, uncompressedBytes: 0 });
    for (const n of [1, DEADLIST_CHUNK_ENTRIES + 7, 0, 300]) {
      const batch = Array.from({ length: n }, () => fakeBp(rnd, 1 + rnd.int(100)));
      await appendDeadList(store, id, batch);
      written.push(...batch);
    }
    const read: BlockPointer[] = [];
    for await (const chunk of deadListChunks(store, id)) {
      assert.ok(chunk.length <= DEADLIST_CHUNK_ENTRIES, 'bounded chunks');
      read.push(...chunk);
    }
    assert.equal(read.length, written.length, `seed ${seed}`);
    read.forEach((bp, i) => {
      const w = written[i] as BlockPointer;
      assert.equal(bp.birthTxg, w.birthTxg);
      assert.deepEqual(bp.dvas, w.dvas);
      assert.ok(bp.cksum.equals(w.cksum));
    });
    const totals = await deadListTotals(store, id);
    assert.equal(totals.count, written.length);
    assert.equal(totals.usedBytes, written.reduce((s, bp) => s + allocatedBytes(bp), 0));
    assert.equal(totals.compressedBytes, written.reduce((s, bp) => s + bp.psize, 0));
    assert.equal(totals.uncompressedBytes, written.reduce((s, bp) => s + bp.lsize, 0));
    assert.equal(await deadListBytesBornAfter(store, id, 50), written.filter((bp) => bp.birthTxg > 50).reduce((s, bp) => s + allocatedBytes(bp), 0));
    assert.equal(await deadListBytesBornAfter(store, id, 0), totals.usedBytes);
  });
});

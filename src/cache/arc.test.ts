import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Arc } from './arc.js';
import { prng } from '../testing/random.js';

const BLOCK = 4096;
function block(tag: number, sizeBytes = BLOCK): Buffer {
  return Buffer.alloc(sizeBytes, tag & 0xff);
}


/** Read-through as a caller does: get, and put after a miss. */
function access(arc: Arc, key: string, tag: number): boolean {
  if (arc.get(key) !== undefined) return true;
  arc.put(key, block(tag));
  return false;
}

test('random workload: size bound never exceeded, values never stale, ghosts bounded', () => {
  const seed = Number(process.env.CAIRN_SEED ?? Date.now() % 1e9);
  const rand = prng(seed);
  const arc = new Arc({ maxSizeBytes: 64 * 1024, ghostEntriesMax: 50 });
  const model = new Map<string, Buffer>();
  for (let op = 0; op < 20_000; op++) {
    const key = `0:${Math.floor(rand() * 200) * BLOCK}:1`;
    const r = rand();
    const where = `seed ${seed} op ${op}`;
    if (r < 0.5) {
      const got = arc.get(key);
      if (got !== undefined) assert.equal(got, model.get(key), `${where}: stale value`);
    } else if (r < 0.9) {
      const value = block(op, 512 * (1 + Math.floor(rand() * 16)));
      arc.put(key, value);
      model.set(key, value);
    } else if (r < 0.99) {
      arc.remove(key);
      model.delete(key);
      assert.equal(arc.get(key), undefined, where);
    } else {
      arc.maxSizeBytes = 16 * 1024 + Math.floor(rand() * 96) * 1024;
    }
    const s = arc.stats();
    assert.ok(s.sizeBytes <= s.maxSizeBytes, `${where}: ${s.sizeBytes} > ${s.maxSizeBytes}`);
    assert.equal(s.sizeBytes, s.mruBytes + s.mfuBytes, where);
    assert.ok(s.mruBytes + s.mruGhostBytes <= s.maxSizeBytes, `${where}: mru + ghost over c`);
    assert.ok(s.sizeBytes + s.mruGhostBytes + s.mfuGhostBytes <= 2 * s.maxSizeBytes, `${where}: directory over 2c`);
    assert.ok(s.targetMruBytes >= 0 && s.targetMruBytes <= s.maxSizeBytes, where);
    assert.ok(s.mruGhostBytes >= 0 && s.mfuGhostBytes >= 0, where);
  }
  const s = arc.stats();
  assert.ok(s.hits > 0 && s.misses > 0 && s.evictions > 0);
});

test('scan resistance: a one-time scan does not evict the frequently used working set (LRU would)', () => {
  const arc = new Arc({ maxSizeBytes: 32 * BLOCK });
  const working = Array.from({ length: 16 }, (_, i) => `0:${i * BLOCK}:1`);
  for (let round = 0; round < 3; round++) for (const [i, key] of working.entries()) access(arc, key, i);
  for (let i = 0; i < 10_000; i++) access(arc, `1:${i * BLOCK}:2`, i);
  const before = arc.stats().hits;
  for (const [i, key] of working.entries()) assert.ok(access(arc, key, i), `working-set block ${i} was evicted by the scan`);
  assert.equal(arc.stats().hits - before, working.length);
  assert.ok(arc.sizeBytes <= 32 * BLOCK);

  // The same workload on an LRU of the same size loses the whole working set: the point of ARC.
  const lru = new Map<string, Buffer>();
  const lruAccess = (key: string): boolean => {
    const v = lru.get(key);
    if (v !== undefined) { lru.delete(key); lru.set(key, v); return true; }
    lru.set(key, block(0));
    if (lru.size > 32) lru.delete(lru.keys().next().value!);
    return false;
  };
  for (let round = 0; round < 3; round++) for (const key of working) lruAccess(key);
  for (let i = 0; i < 10_000; i++) lruAccess(`1:${i * BLOCK}:2`);
  assert.equal(working.filter((key) => lruAccess(key)).length, 0);
});

test('ghost hits adapt the mru target: mru ghost raises it, mfu ghost lowers it', () => {
  const arc = new Arc({ maxSizeBytes: 16 * BLOCK });
  for (let round = 0; round < 2; round++) for (let i = 0; i < 8; i++) access(arc, `w:${i}`, i);
  assert.equal(arc.stats().mfuBytes, 8 * BLOCK);
  for (let i = 0; i < 12; i++) access(arc, `s:${i}`, i); // 8 fit in mru; s:0..3 become mru ghosts
  assert.equal(arc.stats().targetMruBytes, 0);
  assert.equal(arc.get('s:0'), undefined);
  arc.put('s:0', block(0));
  let s = arc.stats();
  assert.equal(s.mruGhostHits, 1);
  assert.ok(s.targetMruBytes > 0, 'an mru ghost hit raises p');
  const raised = s.targetMruBytes;
  // s:0 came back as a frequent block.
  assert.ok(arc.has('s:0'));
  // Make mfu evict: repeated accesses of new keys promote them into mfu while p keeps mru small.
  let evictedFrequent: string | undefined;
  for (let i = 0; i < 40 && evictedFrequent === undefined; i++) {
    access(arc, `f:${i}`, i);
    access(arc, `f:${i}`, i);
    evictedFrequent = ['w:0', 'w:1', 'w:2'].find((key) => !arc.has(key));
  }
  assert.ok(evictedFrequent !== undefined, 'mfu never evicted');
  assert.equal(arc.get(evictedFrequent), undefined);
  arc.put(evictedFrequent, block(1));
  s = arc.stats();
  assert.equal(s.mfuGhostHits, 1);
  assert.ok(s.targetMruBytes < raised, 'an mfu ghost hit lowers p');
});

test('shrinking evicts at once; remove forgets a block; oversized values are not cached', () => {
  const arc = new Arc({ maxSizeBytes: 16 * BLOCK });
  for (let i = 0; i < 16; i++) arc.put(`k:${i}`, block(i));
  assert.equal(arc.sizeBytes, 16 * BLOCK);
  arc.maxSizeBytes = 4 * BLOCK;
  assert.ok(arc.sizeBytes <= 4 * BLOCK);
  assert.ok(arc.has('k:15') && !arc.has('k:0'), 'the most recent blocks stay');
  arc.remove('k:15');
  assert.equal(arc.get('k:15'), undefined);
  assert.equal(arc.put('huge', block(1, 5 * BLOCK)), false);
  assert.equal(arc.get('huge'), undefined);
  arc.put('k:14', block(99));
  assert.equal(arc.get('k:14')![0], 99, 'put replaces a resident value');
  arc.maxSizeBytes = 0;
  assert.equal(arc.sizeBytes, 0);
  assert.equal(arc.stats().entries, 0);
});

test('mfu keeps least recently used order closely enough: blocks in use survive eviction, idle ones go first', () => {
  // 64 frequent blocks (each read twice); then 8 of them stay in use, read in turns (hits that move
  // an entry at most once per half list of hits), while new frequent blocks push the others out.
  const arc = new Arc({ maxSizeBytes: 64 * BLOCK, ghostEntriesMax: 1000 });
  const key = (i: number) => `0:${i * BLOCK}:1`;
  for (let i = 0; i < 64; i++) {
    access(arc, key(i), i);
    access(arc, key(i), i);
  }
  const inUse = [3, 10, 17, 24, 31, 38, 45, 52];
  for (let fresh = 64; fresh < 64 + 48; fresh++) {
    for (let round = 0; round < 4; round++) for (const i of inUse) assert.ok(access(arc, key(i), i), `block ${i} in use was evicted (fresh ${fresh})`);
    access(arc, key(fresh), fresh);
    access(arc, key(fresh), fresh);
  }
  const idleLeft = Array.from({ length: 64 }, (_, i) => i).filter((i) => !inUse.includes(i) && arc.get(key(i)) !== undefined);
  assert.ok(idleLeft.length <= 8, `idle blocks still resident: ${idleLeft.join(' ')}`);
  assert.ok(arc.sizeBytes <= 64 * BLOCK);
});

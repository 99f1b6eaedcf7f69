import { test } from 'node:test';
import assert from 'node:assert/strict';
import { xxh64 } from '@node-rs/xxhash';
import { MemoryObjectStore } from '../testing/memory-object-store.js';
import { ObjectType } from '../objects/types.js';
import { InvariantError } from '../util/assert.js';
import { isCairnError } from '../util/errors.js';
import { createKv, openKv, KvHeaderPhys, KV_BLOCK_SIZE_BYTES, type KvHashFunction, type KvMap } from './index.js';
import { prng } from '../testing/random.js';


async function withSeed(seed: number, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (error) {
    console.error(`failing seed: ${seed}`);
    throw error;
  }
}

async function listAll(kv: KvMap, pageSize: number): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  let cursor: bigint | null = 0n;
  while (cursor !== null) {
    const page = await kv.list(cursor, pageSize);
    assert.ok(page.entries.length <= pageSize);
    for (const entry of page.entries) {
      assert.ok(!out.has(entry.key), `duplicate key ${entry.key} in listing`);
      out.set(entry.key, entry.value);
    }
    assert.notEqual(page.cursor, 0n, 'a resume cursor is never 0n');
    if (page.cursor !== null) assert.ok(page.cursor > cursor, 'cursors increase');
    cursor = page.cursor;
  }
  return out;
}

async function readHeader(store: MemoryObjectStore, objectId: number): Promise<KvHeaderPhys> {
  return KvHeaderPhys.decode(await store.read(objectId, 0, 128), objectId);
}

test('set, get, replace, delete, count, reopen', async () => {
  const store = new MemoryObjectStore();
  const kv = await store.hold(() => createKv(store));
  const info = await store.objectInfo(kv.objectId);
  assert.equal(info.type, ObjectType.kv);
  assert.equal(info.blockSizeBytes, KV_BLOCK_SIZE_BYTES);
  assert.equal(await kv.count(), 0);
  assert.equal(await kv.get('missing'), undefined);
  await store.hold(async () => {
    await kv.set('a', Buffer.from('one'));
    await kv.set('ключ 🔑', Buffer.from('two'));
    await kv.set('empty', Buffer.alloc(0));
  });
  assert.equal((await kv.get('a'))?.toString(), 'one');
  assert.equal((await kv.get('ключ 🔑'))?.toString(), 'two');
  assert.deepEqual(await kv.get('empty'), Buffer.alloc(0));
  assert.equal(await kv.count(), 3);
  await store.hold(() => kv.set('a', Buffer.from('replaced, and longer than before')));
  assert.equal((await kv.get('a'))?.toString(), 'replaced, and longer than before');
  assert.equal(await kv.count(), 3);
  // exclusive: inserts a new key, refuses an existing one and leaves it as it was
  await assert.rejects(store.hold(() => kv.set('a', Buffer.from('not this'), { exclusive: true })), (e) => isCairnError(e, 'EEXIST'));
  assert.equal((await kv.get('a'))?.toString(), 'replaced, and longer than before');
  await store.hold(() => kv.set('new', Buffer.from('three'), { exclusive: true }));
  assert.equal(await kv.count(), 4);
  assert.equal(await store.hold(() => kv.delete('new')), true);
  assert.equal(await store.hold(() => kv.delete('a')), true);
  assert.equal(await store.hold(() => kv.delete('a')), false);
  assert.equal(await kv.get('a'), undefined);
  assert.equal(await kv.count(), 2);

  const reopened = openKv(store, kv.objectId);
  assert.equal((await reopened.get('ключ 🔑'))?.toString(), 'two');
  assert.equal(await reopened.count(), 2);
  const listed = await listAll(reopened, 10);
  assert.deepEqual([...listed.keys()].sort(), ['empty', 'ключ 🔑']);
  // Values returned are copies: changing one does not change the map.
  const value = await kv.get('ключ 🔑');
  value!.fill(0);
  assert.equal((await kv.get('ключ 🔑'))?.toString(), 'two');
});

test('bad keys, values, cursors and limits are rejected', async () => {
  const store = new MemoryObjectStore();
  const kv = await store.hold(() => createKv(store));
  const rejects = (p: Promise<unknown>, code: 'EINVAL' | 'ENAMETOOLONG') =>
    assert.rejects(p, (e) => isCairnError(e, code));
  await store.hold(async () => {
    await rejects(kv.set('', Buffer.from('x')), 'EINVAL');
    await rejects(kv.set('k'.repeat(1025), Buffer.from('x')), 'ENAMETOOLONG');
    // 513 two-byte characters: 513 UTF-16 units but 1026 UTF-8 bytes.
    await rejects(kv.set('é'.repeat(513), Buffer.from('x')), 'ENAMETOOLONG');
    await rejects(kv.set('lone \uD800 surrogate', Buffer.from('x')), 'EINVAL');
    await rejects(kv.set('k', Buffer.alloc(1025)), 'EINVAL');
    await rejects(kv.set('k', 'not a buffer' as unknown as Buffer), 'EINVAL');
    await rejects(kv.delete(''), 'EINVAL');
    // The largest key and value are fine.
    await kv.set('k'.repeat(1024), Buffer.alloc(1024, 7));
    await kv.set('é'.repeat(512), Buffer.alloc(1024, 8));
  });
  await rejects(kv.get('k'.repeat(1025)), 'ENAMETOOLONG');
  assert.deepEqual(await kv.get('k'.repeat(1024)), Buffer.alloc(1024, 7));
  assert.deepEqual(await kv.get('é'.repeat(512)), Buffer.alloc(1024, 8));
  assert.equal(await kv.count(), 2);
  await rejects(kv.list(-1n, 10), 'EINVAL');
  await rejects(kv.list(1n << 64n, 10), 'EINVAL');
  await rejects(kv.list(0n, 0), 'EINVAL');
  await rejects(kv.list(0n, 1.5), 'EINVAL');
  // Mutations outside a hold are a bug in the caller, caught by the store.
  await assert.rejects(kv.set('outside', Buffer.from('x')), InvariantError);
  // A plain object is not a kv object.
  const plain = await store.hold(() => store.allocateObject(ObjectType.plainFile));
  await rejects(openKv(store, plain).get('x'), 'EINVAL');
});

test('model-based random operations match a Map (several seeds)', async () => {
  for (const seed of [1, 2, 3, 4, 5, 6]) {
    await withSeed(seed, async () => {
      const random = prng(seed);
      const store = new MemoryObjectStore();
      const kv = await store.hold(() => createKv(store, ObjectType.kv, { salt: BigInt(seed) * 0x9e3779b97f4a7c15n }));
      const model = new Map<string, Buffer>();
      const keyPool = Array.from({ length: 900 }, (_, i) =>
        i % 50 === 0 ? `long-${i}-${'x'.repeat(Math.floor(random() * 900))}` : `key-${i}-${i * 7919}`,
      );
      const pick = () => keyPool[Math.floor(random() * keyPool.length)]!;
      for (let batch = 0; batch < 40; batch++) {
        await store.hold(async () => {
          for (let op = 0; op < 100; op++) {
            const roll = random();
            const key = pick();
            if (roll < 0.55) {
              const big = random() < 0.1;
              const value = Buffer.alloc(Math.floor(random() * (big ? 1024 : 40)), Math.floor(random() * 256));
              await kv.set(key, value);
              model.set(key, value);
            } else if (roll < 0.8) {
              assert.equal(await kv.delete(key), model.delete(key), `delete ${key}`);
            } else {
              assert.deepEqual(await kv.get(key), model.get(key), `get ${key}`);
            }
          }
        });
        assert.equal(await kv.count(), model.size);
        if (batch % 10 === 9) {
          const listed = await listAll(kv, 1 + Math.floor(random() * 100));
          assert.deepEqual(new Map([...listed].sort()), new Map([...model].sort()));
        }
      }
      for (const key of keyPool) assert.deepEqual(await kv.get(key), model.get(key), `final get ${key}`);
    });
  }
});

test('a listing resumed at cursors sees every entry that existed throughout, exactly once', async () => {
  for (const seed of [11, 12, 13]) {
    await withSeed(seed, async () => {
      const random = prng(seed);
      const store = new MemoryObjectStore();
      const kv = await store.hold(() => createKv(store, ObjectType.kv, { salt: BigInt(seed) }));
      const stable = new Set<string>();
      const volatile = new Set<string>();
      await store.hold(async () => {
        for (let i = 0; i < 2000; i++) {
          const key = `entry-${i}`;
          await kv.set(key, Buffer.from(key));
          (i % 3 === 0 ? volatile : stable).add(key);
        }
      });
      const leafCountBefore = (await readHeader(store, kv.objectId)).leafCount;
      const seen = new Set<string>();
      let cursor: bigint | null = 0n;
      let fresh = 0;
      while (cursor !== null) {
        const page = await kv.list(cursor, 1 + Math.floor(random() * 60));
        for (const { key, value } of page.entries) {
          assert.ok(!seen.has(key), `${key} listed twice`);
          assert.deepEqual(value, key.startsWith('new-') ? Buffer.alloc(300, 'new') : Buffer.from(key));
          seen.add(key);
        }
        cursor = page.cursor;
        // Between pages: delete volatile keys (listed or not) and insert enough new ones to split leaves.
        await store.hold(async () => {
          for (const key of [...volatile].slice(0, 20)) {
            await kv.delete(key);
            volatile.delete(key);
          }
          // Large values, so a few inserts per page are enough to keep splitting leaves.
          for (let i = 0; i < 15; i++) await kv.set(`new-${fresh++}`, Buffer.alloc(300, 'new'));
        });
      }
      for (const key of stable) assert.ok(seen.has(key), `${key} existed throughout but was skipped`);
      const leafCountAfter = (await readHeader(store, kv.objectId)).leafCount;
      assert.ok(leafCountAfter >= leafCountBefore + 5, `leaves split during the listing: ${leafCountAfter}`);
    });
  }
});

test('keys with equal hashes are all stored, found, listed and deleted', async () => {
  // Eight distinct hashes for all keys: each hash is shared by many keys.
  const hashFunction: KvHashFunction = (keyBytes) => xxh64(`group-${keyBytes[keyBytes.length - 1]! % 8}`, 0n);
  const store = new MemoryObjectStore();
  const kv = await store.hold(() => createKv(store, ObjectType.kv, { hashFunction }));
  const keys = Array.from({ length: 240 }, (_, i) => `collide-${i}`);
  await store.hold(async () => {
    for (const key of keys) await kv.set(key, Buffer.from(`value of ${key}`));
  });
  for (const key of keys) assert.equal((await kv.get(key))?.toString(), `value of ${key}`);
  assert.equal(await kv.get('collide-x'), undefined);
  // Delete every third key, then insert new ones that take over the freed collision differentiators.
  await store.hold(async () => {
    for (const key of keys.filter((_, i) => i % 3 === 0)) assert.equal(await kv.delete(key), true);
    for (let i = 0; i < 40; i++) await kv.set(`again-${i}`, Buffer.from(`again ${i}`));
  });
  const expected = new Map<string, string>();
  keys.forEach((key, i) => {
    if (i % 3 !== 0) expected.set(key, `value of ${key}`);
  });
  for (let i = 0; i < 40; i++) expected.set(`again-${i}`, `again ${i}`);
  for (const [key, value] of expected) assert.equal((await kv.get(key))?.toString(), value);
  for (const key of keys.filter((_, i) => i % 3 === 0)) assert.equal(await kv.get(key), undefined);
  const listed = await listAll(kv, 7);
  assert.deepEqual(new Map([...listed].map(([k, v]): [string, string] => [k, v.toString()]).sort()), new Map([...expected].sort()));
  assert.equal(await kv.count(), expected.size);
  // The same map opened with the same hash function sees the same thing.
  assert.equal((await openKv(store, kv.objectId, { hashFunction }).get('again-3'))?.toString(), 'again 3');
});

test('more equal-hash keys than a leaf holds fail with ENOSPC and leave the map intact', async () => {
  const store = new MemoryObjectStore();
  const kv = await store.hold(() => createKv(store, ObjectType.kv, { hashFunction: () => 0x1234_5678_9abc_def0n }));
  const value = Buffer.alloc(1024, 1);
  let stored = 0;
  await store.hold(async () => {
    for (;;) {
      const key = `k${stored}-${'p'.repeat(1000)}`;
      try {
        await kv.set(key, value);
      } catch (error) {
        assert.ok(isCairnError(error, 'ENOSPC'), String(error));
        break;
      }
      stored++;
    }
  });
  assert.ok(stored >= 7 && stored < 16, `stored ${stored}`);
  assert.equal(await kv.count(), stored);
  for (let i = 0; i < stored; i++) assert.deepEqual(await kv.get(`k${i}-${'p'.repeat(1000)}`), value);
  // Small entries still fit in the space left.
  await store.hold(() => kv.set('small', Buffer.from('s')));
  assert.equal((await kv.get('small'))?.toString(), 's');
});

test('the pointer table moves out of block 0 and keeps doubling; readers racing writers stay correct', async () => {
  const store = new MemoryObjectStore();
  const kv = await store.hold(() => createKv(store, ObjectType.kv, { salt: 42n }));
  // Large entries fill leaves fast: ~7 per leaf, so 12k entries need more than 2^11 leaves.
  const keyOf = (i: number) => `${i}-${'k'.repeat(900)}`;
  const valueOf = (i: number) => Buffer.alloc(1000, i & 0xff);
  const entryCount = 8_000;
  await store.hold(async () => {
    for (let i = 0; i < 200; i++) await kv.set(keyOf(i), valueOf(i));
  });
  let writerDone = false;
  const writer = (async () => {
    for (let i = 200; i < entryCount; i += 100) {
      await store.hold(async () => {
        for (let j = i; j < i + 100; j++) await kv.set(keyOf(j), valueOf(j));
      });
      await new Promise((resolve) => setImmediate(resolve));
    }
    writerDone = true;
  })();
  // Concurrent readers outside any hold: every key inserted before the writer started is always found.
  let reads = 0;
  while (!writerDone) {
    const i = reads++ % 200;
    assert.deepEqual(await kv.get(keyOf(i)), valueOf(i), `racing get ${i}`);
    // The store answers on microtasks; yield to the macrotask queue now and then as real I/O would.
    if (reads % 64 === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  await writer;
  assert.ok(reads > 100, `only ${reads} racing reads`);
  const header = await readHeader(store, kv.objectId);
  assert.ok(header.tableShift > 11 && header.tableStartBlock !== 0, `table shift ${header.tableShift}`);
  assert.equal(header.entryCount, entryCount);
  for (let i = 0; i < entryCount; i += 7) assert.deepEqual(await kv.get(keyOf(i)), valueOf(i), `get ${i}`);
  const listed = await listAll(kv, 500);
  assert.equal(listed.size, entryCount);
  // The table's old copies were freed: used space is the header, the leaves and one table.
  const info = await store.objectInfo(kv.objectId);
  assert.equal(info.usedBytes, (1 + header.leafCount + header.tableBlockCount) * KV_BLOCK_SIZE_BYTES);
});

test('readers racing inserts and deletes in the same leaves (changed in place) see every lasting key, seeded', async () => {
  for (const seed of [1, 2, 3]) {
    await withSeed(seed, async () => {
      const random = prng(seed);
      const store = new MemoryObjectStore();
      const kv = await store.hold(() => createKv(store, ObjectType.kv, { salt: BigInt(seed) }));
      const lasting = Array.from({ length: 40 }, (_, i) => `lasting-${i}`);
      await store.hold(async () => {
        for (const key of lasting) await kv.set(key, Buffer.from(key));
      });
      let writerDone = false;
      const writer = (async () => {
        for (let round = 0; round < 150; round++) {
          await store.hold(async () => {
            for (let j = 0; j < 8; j++) {
              const key = `churn-${Math.floor(random() * 30)}`;
              if (random() < 0.5) await kv.set(key, Buffer.alloc(1 + Math.floor(random() * 200), j));
              else await kv.delete(key);
            }
          });
        }
        writerDone = true;
      })();
      // Readers run on the same microtask queue as the writer: each step of one may land between the
      // writer's steps (as in the daemon, where a lookup runs beside a create in the same directory).
      const reader = async (): Promise<number> => {
        let reads = 0;
        while (!writerDone) {
          const key = lasting[reads++ % lasting.length]!;
          assert.equal((await kv.get(key))?.toString(), key, `racing get ${key}`);
          if (reads % 10 === 0) {
            const listed = await listAll(kv, 7);
            for (const k of lasting) assert.ok(listed.has(k), `racing listing lost ${k}`);
          }
        }
        return reads;
      };
      const counts = await Promise.all([reader(), reader(), writer]);
      assert.ok((counts[0] as number) > 50, `only ${String(counts[0])} racing reads`);
    });
  }
});

test('replacing a value keeps its cursor position, also when the replacement splits the leaf', async () => {
  const store = new MemoryObjectStore();
  const kv = await store.hold(() => createKv(store, ObjectType.kv, { salt: 7n }));
  const keyCount = 400;
  await store.hold(async () => {
    for (let i = 0; i < keyCount; i++) await kv.set(`r${i}`, Buffer.from('small'));
  });
  const seen = new Set<string>();
  let cursor: bigint | null = 0n;
  while (cursor !== null) {
    const page = await kv.list(cursor, 1);
    cursor = page.cursor;
    const entry = page.entries[0];
    if (entry === undefined) break;
    assert.ok(!seen.has(entry.key), `${entry.key} listed twice after its value was replaced`);
    seen.add(entry.key);
    // Grow the just-listed value to the maximum: the leaf overflows and splits around it.
    await store.hold(() => kv.set(entry.key, Buffer.alloc(1024, 1)));
  }
  assert.equal(seen.size, keyCount);
  for (let i = 0; i < keyCount; i++) assert.deepEqual(await kv.get(`r${i}`), Buffer.alloc(1024, 1));
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryObjectStore } from '../testing/memory-object-store.js';
import { ObjectType } from '../objects/types.js';
import { createKv, KV_BLOCK_SIZE_BYTES, type KvMap } from './index.js';

/** A lookup reads the header (128 bytes), one table entry (4 bytes) and one leaf, at any map size. */
const LOOKUP_READS_MAX = 3;
const LOOKUP_BYTES_MAX = 128 + 4 + KV_BLOCK_SIZE_BYTES;

async function fill(store: MemoryObjectStore, kv: KvMap, from: number, to: number): Promise<void> {
  const batch = 10_000;
  for (let start = from; start < to; start += batch) {
    await store.hold(async () => {
      for (let i = start; i < Math.min(to, start + batch); i++) await kv.set(`f${i}`, Buffer.from(`v${i}`));
    });
  }
}

/** Looks up a spread of present and absent keys, checking values and the I/O each lookup costs. */
async function checkLookups(store: MemoryObjectStore, kv: KvMap, entryCount: number, samples: number): Promise<void> {
  const stride = Math.max(1, Math.floor(entryCount / samples));
  let lookups = 0;
  store.resetCounters();
  for (let i = 0; i < entryCount; i += stride) {
    assert.equal((await kv.get(`f${i}`))?.toString(), `v${i}`, `get f${i}`);
    assert.equal(await kv.get(`absent${i}`), undefined, `get absent${i}`);
    lookups += 2;
  }
  assert.ok(store.readCalls <= lookups * LOOKUP_READS_MAX, `${store.readCalls} reads for ${lookups} lookups`);
  assert.ok(store.readBytes <= lookups * LOOKUP_BYTES_MAX, `${store.readBytes} bytes for ${lookups} lookups`);
}

async function scale(entryCount: number, samples: number): Promise<void> {
  const store = new MemoryObjectStore();
  const kv = await store.hold(() => createKv(store, ObjectType.kv, { salt: 0x5eedn }));
  // The per-lookup cost is the same at 1k entries as at the full size.
  await fill(store, kv, 0, 1000);
  await checkLookups(store, kv, 1000, 200);
  await fill(store, kv, 1000, entryCount);
  assert.equal(await kv.count(), entryCount);
  await checkLookups(store, kv, entryCount, samples);
  // count() is one small header read, not a walk.
  store.resetCounters();
  assert.equal(await kv.count(), entryCount);
  assert.equal(store.readCalls, 1);
  assert.ok(store.readBytes <= 128);
  // Space stays proportional to the entries: leaves are at least a third full on average.
  const info = await store.objectInfo(kv.objectId);
  const entryBytes = 12 + 8 + 8;
  assert.ok(info.usedBytes < entryCount * entryBytes * 3 + 64 * KV_BLOCK_SIZE_BYTES, `usedBytes ${info.usedBytes}`);
}

test('200k entries: lookups correct, each lookup reads at most 3 times and one leaf', async () => {
  await scale(200_000, 3000);
});

test('soak: 1M entries (CAIRN_SOAK=1)', { skip: process.env['CAIRN_SOAK'] === undefined }, async () => {
  await scale(1_000_000, 20_000);
});

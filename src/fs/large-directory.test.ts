import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryObjectStore } from '../testing/memory-object-store.js';
import { Random } from '../testing/random.js';
import { KV_BLOCK_SIZE_BYTES } from '../kv/index.js';
import { isCairnError } from '../util/errors.js';
import { Filesystem } from './filesystem.js';

// On its own file: 100k creates through the kv layer take several seconds on MemoryObjectStore.

/**
 * A lookup costs the same at any directory size: the kv salt (one header read), then header, one
 * pointer-table entry and one leaf. getattr reads only the bonus and the object info, which are not data reads.
 */
const LOOKUP_READS_MAX = 4;
const LOOKUP_READ_BYTES_MAX = 3 * 128 + 4 + KV_BLOCK_SIZE_BYTES;

async function makeFs(): Promise<{ fs: Filesystem; store: MemoryObjectStore }> {
  const store = new MemoryObjectStore();
  let nowNs = 1_700_000_000_000_000_000n;
  return { fs: await Filesystem.create(store, { uid: 0, gid: 0, nowNs: () => (nowNs += 1000n) }), store };
}

const entryName = (i: number): string => `file-${i}`;

/** Looks up `samples` random present and absent names; returns the reads per lookup. */
async function randomLookups(fs: Filesystem, store: MemoryObjectStore, dirIno: number, count: number, samples: number, rnd: Random, inos: Map<number, number>): Promise<number> {
  store.resetCounters();
  for (let s = 0; s < samples; s++) {
    const i = rnd.int(count);
    const st = await fs.lookup(dirIno, entryName(i));
    assert.equal(st.ino, inos.get(i), `lookup ${entryName(i)}`);
    await assert.rejects(fs.lookup(dirIno, `absent-${i}`), (e) => isCairnError(e, 'ENOENT'));
  }
  const lookups = samples * 2;
  assert.ok(store.readCalls <= lookups * LOOKUP_READS_MAX, `${store.readCalls} reads for ${lookups} lookups`);
  assert.ok(store.readBytes <= lookups * LOOKUP_READ_BYTES_MAX, `${store.readBytes} bytes read for ${lookups} lookups`);
  return store.readCalls / lookups;
}

async function largeDirectory(count: number, lookupSamples: number, seed: number): Promise<void> {
  const rnd = new Random(seed);
  const { fs, store } = await makeFs();
  const dir = await fs.mkdir(fs.rootIno, 'big', { mode: 0o755 });
  const inos = new Map<number, number>();

  // Lookups cost the same at 1k entries as at the full size: hashed, not a scan.
  for (let i = 0; i < 1000; i++) inos.set(i, (await fs.create(dir.ino, entryName(i), { mode: 0o644 })).ino);
  const readsSmall = await randomLookups(fs, store, dir.ino, 1000, 200, rnd, inos);
  for (let i = 1000; i < count; i++) inos.set(i, (await fs.create(dir.ino, entryName(i), { mode: 0o644 })).ino);
  assert.equal((await fs.getattr(dir.ino)).sizeBytes, count + 2);
  const readsLarge = await randomLookups(fs, store, dir.ino, count, lookupSamples, rnd, inos);
  assert.ok(readsLarge <= readsSmall + 0.01, `reads per lookup grew from ${readsSmall} to ${readsLarge}`);

  // One full listing: every name once.
  const seen = new Set<string>();
  let cursor: bigint | null = 0n;
  while (cursor !== null) {
    const page: Awaited<ReturnType<Filesystem['readdir']>> = await fs.readdir(dir.ino, cursor, 4096);
    for (const entry of page.entries) {
      assert.ok(!seen.has(entry.name), `duplicate ${entry.name}`);
      assert.equal(entry.ino, inos.get(Number(entry.name.slice(5))));
      seen.add(entry.name);
    }
    cursor = page.cursor;
  }
  assert.equal(seen.size, count);

  // Page through while a concurrent task deletes a random quarter and creates new names. Every entry
  // that exists throughout is listed exactly once; nothing is listed twice; nothing listed is foreign.
  const doomed = new Set<number>();
  for (let i = 0; i < count; i++) if (rnd.chance(0.25)) doomed.add(i);
  const order = [...doomed];
  for (let i = order.length - 1; i > 0; i--) {
    const j = rnd.int(i + 1);
    [order[i], order[j]] = [order[j] as number, order[i] as number];
  }
  const createdCount = 500;
  const mutator = (async () => {
    let created = 0;
    for (const [k, i] of order.entries()) {
      await fs.unlink(dir.ino, entryName(i));
      if (k % 50 === 0 && created < createdCount) await fs.create(dir.ino, `new-${created++}`, { mode: 0o644 });
    }
    while (created < createdCount) await fs.create(dir.ino, `new-${created++}`, { mode: 0o644 });
  })();
  const listed = new Set<string>();
  let pages = 0;
  cursor = 0n;
  while (cursor !== null) {
    const page: Awaited<ReturnType<Filesystem['readdir']>> = await fs.readdir(dir.ino, cursor, 1 + rnd.int(80));
    for (const entry of page.entries) {
      assert.ok(!listed.has(entry.name), `duplicate ${entry.name} after ${pages} pages`);
      listed.add(entry.name);
    }
    cursor = page.cursor;
    pages++;
  }
  await mutator;
  for (let i = 0; i < count; i++) {
    if (!doomed.has(i)) assert.ok(listed.has(entryName(i)), `survivor ${entryName(i)} not listed`);
  }
  for (const name of listed) {
    assert.ok(name.startsWith('new-') || inos.has(Number(name.slice(5))), `foreign name ${name}`);
  }
  // The deletes really overlapped the listing (else this would test nothing concurrent): some doomed
  // names were listed before their unlink, some were gone before the listing reached them.
  let deletedSeen = 0;
  for (const i of doomed) if (listed.has(entryName(i))) deletedSeen++;
  assert.ok(deletedSeen > 0 && deletedSeen < doomed.size, `${deletedSeen} of ${doomed.size} deleted names listed`);
  console.log(`# ${pages} pages; ${deletedSeen} of ${doomed.size} deleted names were listed before their unlink`);

  // Afterwards the directory holds exactly the survivors and the new names.
  const expected = count - doomed.size + createdCount;
  assert.equal((await fs.getattr(dir.ino)).sizeBytes, expected + 2);
  let after = 0;
  cursor = 0n;
  while (cursor !== null) {
    const page: Awaited<ReturnType<Filesystem['readdir']>> = await fs.readdir(dir.ino, cursor, 4096);
    for (const entry of page.entries) {
      const i = Number(entry.name.slice(5));
      assert.ok(entry.name.startsWith('new-') || !doomed.has(i), `deleted ${entry.name} still listed`);
      after++;
    }
    cursor = page.cursor;
  }
  assert.equal(after, expected);
}

async function withSeed(seed: number, fn: (seed: number) => Promise<void>): Promise<void> {
  try {
    await fn(seed);
  } catch (e) {
    console.error(`large-directory test failed with seed ${seed}`);
    throw e;
  }
}

test('a directory of 100k entries: hashed lookups of random names, cursor paging across concurrent deletes and creates', async () => {
  const seed = Number(process.env['CAIRN_SEED'] ?? 0x100c);
  await withSeed(seed, (s) => largeDirectory(100_000, 2000, s));
});

test(
  'soak: a directory of 1M entries (CAIRN_SOAK=1)',
  { skip: process.env['CAIRN_SOAK'] === '1' ? false : 'set CAIRN_SOAK=1: 1M creates take minutes' },
  async () => {
    const seed = Number(process.env['CAIRN_SEED'] ?? 0x1000c);
    await withSeed(seed, (s) => largeDirectory(1_000_000, 20_000, s));
  },
);

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryObjectStore } from '../testing/memory-object-store.js';
import { Filesystem } from './filesystem.js';

// On its own file: 20k creates through the kv layer take several seconds on MemoryObjectStore.
async function makeFs(): Promise<{ fs: Filesystem }> {
  let nowNs = 1_700_000_000_000_000_000n;
  return { fs: await Filesystem.create(new MemoryObjectStore(), { uid: 0, gid: 0, nowNs: () => (nowNs += 1000n) }) };
}

test('a directory of 20k entries lists completely, without duplicates, across cursors and concurrent deletes', async () => {
  const { fs } = await makeFs();
  const dir = await fs.mkdir(fs.rootIno, 'big', { mode: 0o755 });
  const count = 20_000;
  for (let i = 0; i < count; i++) await fs.create(dir.ino, `file-${i}`, { mode: 0o644 });
  assert.equal((await fs.getattr(dir.ino)).sizeBytes, count + 2);

  const seen = new Set<string>();
  let cursor: bigint | null = 0n;
  let pages = 0;
  while (cursor !== null) {
    const page: Awaited<ReturnType<Filesystem['readdir']>> = await fs.readdir(dir.ino, cursor, 777);
    assert.ok(page.entries.length <= 777);
    for (const entry of page.entries) {
      assert.ok(!seen.has(entry.name), `duplicate ${entry.name}`);
      seen.add(entry.name);
    }
    cursor = page.cursor;
    pages++;
  }
  assert.equal(seen.size, count);
  assert.ok(pages >= Math.ceil(count / 777));

  // Delete every fourth name while listing: no duplicates, and every survivor is listed.
  const listed = new Set<string>();
  cursor = 0n;
  let deleted = 0;
  while (cursor !== null) {
    const page: Awaited<ReturnType<Filesystem['readdir']>> = await fs.readdir(dir.ino, cursor, 500);
    for (const entry of page.entries) {
      assert.ok(!listed.has(entry.name), `duplicate ${entry.name}`);
      listed.add(entry.name);
    }
    for (let i = deleted; i < deleted + 300 && i < count; i += 4) {
      await fs.unlink(dir.ino, `file-${i}`);
    }
    deleted += 300;
    cursor = page.cursor;
  }
  for (let i = 0; i < count; i++) {
    if (i % 4 !== 0) assert.ok(listed.has(`file-${i}`), `survivor file-${i} not listed`);
  }
});

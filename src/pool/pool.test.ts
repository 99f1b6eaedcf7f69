import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { createPool, importPool, findImportablePools } from './index.js';
import type { PoolHandle } from './api.js';
import { Random } from '../testing/random.js';
import { ALLOCATABLE_START_BYTES } from '../vdev/layout.js';
import { isCairnError } from '../util/errors.js';
import type { Pool } from './pool.js';
import { openKv } from '../kv/index.js';
import { MASTER_NODE_OBJECT_ID, MasterKey } from '../fs/filesystem.js';

const MiB = 1024 * 1024;

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-pool-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function writeFile(pool: PoolHandle, name: string, data: Buffer): Promise<number> {
  const st = await pool.fs.create(pool.fs.rootIno, name, { mode: 0o644 });
  for (let at = 0; at < data.length; at += MiB) await pool.fs.write(st.ino, at, data.subarray(at, Math.min(data.length, at + MiB)));
  return st.ino;
}

async function readFile(pool: PoolHandle, name: string): Promise<Buffer> {
  const st = await pool.fs.lookup(pool.fs.rootIno, name);
  const parts: Buffer[] = [];
  for (let at = 0; at < st.sizeBytes; at += MiB) parts.push(await pool.fs.read(st.ino, at, Math.min(MiB, st.sizeBytes - at)));
  return Buffer.concat(parts);
}

/** Overwrites the whole allocatable region of a device file with garbage, behind the pool's back. */
async function scribble(path: string, seed: number, fraction: number): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    const size = (await fh.stat()).size;
    const rnd = new Random(seed);
    const chunk = 64 * 1024;
    for (let at = ALLOCATABLE_START_BYTES; at + chunk < size - MiB; at += chunk) {
      if (rnd.next() < fraction) await fh.write(rnd.bytes(chunk), 0, chunk, at);
    }
  } finally {
    await fh.close();
  }
}

test('pool: data written to a mirror survives export and import, and free space returns exactly', async () => {
  await withDir(async (dir) => {
    const a = join(dir, 'a.img');
    const b = join(dir, 'b.img');
    const pool = await createPool({ name: 'tank', vdevSpec: ['mirror', a, b], createSizeBytes: 256 * MiB });
    const free0 = pool.status().space.freeBytes;
    const rnd = new Random(7);
    const data = rnd.bytes(5 * MiB + 123);
    await writeFile(pool, 'f1', data);
    await pool.sync();
    assert.ok(pool.status().space.freeBytes < free0 - 5 * MiB, 'space was allocated');
    await pool.export();
    const found = await findImportablePools([dir]);
    assert.deepEqual(found.map((f) => f.name), ['tank']);
    const again = await importPool({ searchPaths: [dir], nameOrGuid: 'tank' });
    assert.ok((await readFile(again, 'f1')).equals(data), 'data read back equals data written');
    await again.fs.unlink(again.fs.rootIno, 'f1');
    for (let i = 0; i < 4; i++) {
      await again.logHistory(`noop ${i}`);
      await again.sync();
    }
    const free1 = again.status().space.freeBytes;
    // History and space maps grow a little; the file's 5 MiB must all be back.
    assert.ok(Math.abs(free1 - free0) < 256 * 1024, `free space returns (before ${free0}, after ${free1})`);
    await again.export();
  });
});

test('pool: a second import of an imported pool is refused', async () => {
  await withDir(async (dir) => {
    const pool = await createPool({ name: 'p1', vdevSpec: [join(dir, 'd.img')], createSizeBytes: 128 * MiB });
    await assert.rejects(importPool({ searchPaths: [dir], nameOrGuid: 'p1' }), (e: Error & { code?: string }) => e.code === 'EPOOLINUSE');
    await pool.export();
  });
});

test('pool: scrub repairs a mirror side overwritten with garbage; reads never return bad data', async () => {
  await withDir(async (dir) => {
    const a = join(dir, 'a.img');
    const b = join(dir, 'b.img');
    const pool = await createPool({ name: 'heal', vdevSpec: ['mirror', a, b], createSizeBytes: 128 * MiB });
    const data = new Random(3).bytes(8 * MiB);
    await writeFile(pool, 'x', data);
    await pool.export();
    await scribble(b, 11, 0.5);
    const again = await importPool({ searchPaths: [dir] });
    assert.ok((await readFile(again, 'x')).equals(data));
    await again.scrub({ wait: true });
    const st = again.status();
    assert.equal(st.scan?.state, 'finished');
    assert.ok((st.scan?.repairedBytes ?? 0) > 0, 'scrub repaired something');
    assert.equal(st.scan?.errors, 0);
    const leafB = st.config.children[0]?.children.find((c) => c.name === b);
    assert.ok((leafB?.errors.checksum ?? 0) > 0, 'checksum errors counted on the bad side');
    await again.scrub({ wait: true });
    assert.equal(again.status().scan?.repairedBytes, 0, 'second scrub finds nothing left to repair');
    await again.export();
  });
});

test('pool: a crash (no export) imports at the last synced txg with synced data intact', async () => {
  await withDir(async (dir) => {
    const pool = await createPool({ name: 'crash', vdevSpec: [join(dir, 'd.img')], createSizeBytes: 128 * MiB }) as PoolHandle & { abandon(): Promise<void> };
    const synced = new Random(5).bytes(3 * MiB);
    await writeFile(pool, 'synced', synced);
    await pool.sync();
    await writeFile(pool, 'unsynced', Buffer.alloc(1000, 1));
    await pool.abandon();
    const again = await importPool({ searchPaths: [dir] });
    assert.ok((await readFile(again, 'synced')).equals(synced));
    await again.scrub({ wait: true });
    assert.equal(again.status().scan?.errors, 0);
    await again.export();
  });
});

test('pool: raidz2 keeps serving with two devices overwritten', async () => {
  await withDir(async (dir) => {
    const paths = [1, 2, 3, 4, 5].map((i) => join(dir, `r${i}.img`));
    const pool = await createPool({ name: 'rz', vdevSpec: ['raidz2', ...paths], createSizeBytes: 96 * MiB });
    const data = new Random(9).bytes(6 * MiB + 5);
    await writeFile(pool, 'r', data);
    await pool.export();
    await scribble(paths[1]!, 1, 1);
    await scribble(paths[3]!, 2, 1);
    const again = await importPool({ searchPaths: [dir] });
    assert.ok(createHash('sha256').update(await readFile(again, 'r')).digest().equals(createHash('sha256').update(data).digest()));
    await again.scrub({ wait: true });
    assert.equal(again.status().scan?.errors, 0);
    await again.export();
  });
});

test('pool: a full pool refuses writes with ENOSPC, keeps what was written, and recovers after a delete', async () => {
  await withDir(async (dir) => {
    const pool = (await createPool({ name: 'full', vdevSpec: [join(dir, 'small.img')], createSizeBytes: 48 * MiB })) as PoolHandle & Pick<Pool, 'spaceCheck'>;
    const rnd = new Random(21);
    const st = await pool.fs.create(pool.fs.rootIno, 'filler', { mode: 0o644 });
    const written: Buffer[] = [];
    let error: unknown = null;
    // A write that only partly fits is short (as write(2) on a full disk); the next one gets ENOSPC.
    let offset = 0;
    for (let i = 0; i < 100 && error === null; i++) {
      const chunk = rnd.bytes(MiB);
      try {
        const n = await pool.fs.write(st.ino, offset, chunk);
        written.push(chunk.subarray(0, n));
        offset += n;
      } catch (e) {
        error = e;
      }
    }
    assert.ok(isCairnError(error, 'ENOSPC'), `expected ENOSPC, got ${String(error)}`);
    await pool.sync();
    assert.equal(pool.status().health, 'ONLINE', 'a full pool is not suspended');
    const expected = Buffer.concat(written);
    assert.equal((await pool.fs.getattr(st.ino)).sizeBytes, expected.length);
    assert.ok((await pool.fs.read(st.ino, 0, expected.length)).equals(expected), 'what was written before ENOSPC reads back');
    await pool.fs.unlink(pool.fs.rootIno, 'filler');
    for (let i = 0; i < 3; i++) await pool.sync();
    const again = await pool.fs.create(pool.fs.rootIno, 'after', { mode: 0o644 });
    await pool.fs.write(again.ino, 0, rnd.bytes(8 * MiB));
    const check = await pool.spaceCheck();
    assert.equal(check.allocatedBytes, check.reachableBytes + check.deferredBytes, 'no leaked or double-counted space');
    await pool.export();
  });
});

test('pool: write, rewrite and delete loops leak no space (allocated = reachable + deferred)', async () => {
  await withDir(async (dir) => {
    const pool = (await createPool({ name: 'leak', vdevSpec: ['mirror', join(dir, 'a.img'), join(dir, 'b.img')], createSizeBytes: 128 * MiB })) as PoolHandle & Pick<Pool, 'spaceCheck'>;
    const rnd = new Random(33);
    for (let loop = 0; loop < 5; loop++) {
      for (let f = 0; f < 6; f++) {
        const name = `f${f}`;
        let ino: number;
        try {
          ino = (await pool.fs.lookup(pool.fs.rootIno, name)).ino;
        } catch {
          ino = (await pool.fs.create(pool.fs.rootIno, name, { mode: 0o644 })).ino;
        }
        await pool.fs.write(ino, rnd.int(2 * MiB), rnd.bytes(rnd.int(MiB) + 1));
        if (rnd.chance(0.3)) await pool.fs.unlink(pool.fs.rootIno, name);
      }
      const check = await pool.spaceCheck();
      assert.equal(check.allocatedBytes, check.reachableBytes + check.deferredBytes, `loop ${loop}: space accounted exactly`);
    }
    await pool.export();
  });
});

test('pool: a retained file that loses its last link reaches the unlinked set only if its txg syncs before the last release; a crash then frees it at import', async () => {
  await withDir(async (dir) => {
    const pool = await createPool({ name: 'unl', vdevSpec: [join(dir, 'd.img')], createSizeBytes: 128 * MiB }) as PoolHandle & { abandon(): Promise<void> };
    const fs = pool.fs;
    const unlinkedEntries = async (p: PoolHandle): Promise<string[]> => {
      const store = p.datasets.root.objset;
      const id = Number((await openKv(store, MASTER_NODE_OBJECT_ID).get(MasterKey.unlinked))?.readBigUInt64LE(0));
      return (await openKv(store, id).list(0n, 100)).entries.map((e) => e.key);
    };
    const made = async (name: string): Promise<number> => {
      const st = await fs.create(fs.rootIno, name, { mode: 0o644 });
      await fs.write(st.ino, 0, new Random(name.length).bytes(200_000));
      return st.ino;
    };
    // Released in the txg of its unlink (what a FUSE FORGET right after an unlink does): freed, never listed.
    const a = await made('a');
    await pool.sync();
    await fs.retain!(a);
    await fs.unlink(fs.rootIno, 'a');
    await fs.release!(a);
    await assert.rejects(fs.getattr(a), (e: unknown) => isCairnError(e, 'ENOENT'));
    // Still retained when its txg syncs: listed, readable meanwhile with nlink 0.
    const b = await made('b');
    await pool.sync();
    await fs.retain!(b);
    await fs.unlink(fs.rootIno, 'b');
    await pool.sync();
    assert.deepEqual(await unlinkedEntries(pool), [String(b)]);
    assert.equal((await fs.getattr(b)).nlink, 0);
    assert.equal((await fs.read(b, 0, 10)).length, 10);
    // Both kinds when the txg syncs: only the one still retained is listed.
    const c = await made('c');
    const d = await made('d');
    await fs.retain!(c);
    await fs.retain!(d);
    await fs.unlink(fs.rootIno, 'c');
    await fs.unlink(fs.rootIno, 'd');
    await fs.release!(c);
    await pool.sync();
    assert.deepEqual((await unlinkedEntries(pool)).sort(), [String(b), String(d)].sort());
    // Turned readonly between the unlink and the sync (the store wrapper then refuses writes): the entry
    // still lands with the txg, and the pool stays usable.
    const e = await made('e');
    await fs.retain!(e);
    await fs.unlink(fs.rootIno, 'e');
    await pool.datasets.setProperty('unl', 'readonly', 'on');
    await pool.sync();
    assert.deepEqual((await unlinkedEntries(pool)).sort(), [String(b), String(d), String(e)].sort());
    await assert.rejects(fs.release!(e), (err: unknown) => isCairnError(err, 'EROFS'), 'freeing needs a writable dataset');
    await pool.datasets.setProperty('unl', 'readonly', 'off');
    await pool.sync();
    await pool.abandon();
    const again = await importPool({ searchPaths: [dir] });
    for (const ino of [a, b, c, d, e]) await assert.rejects(again.fs.getattr(ino), (e: unknown) => isCairnError(e, 'ENOENT'), `inode ${ino}`);
    assert.deepEqual(await unlinkedEntries(again), []);
    assert.deepEqual((await again.fs.readdir(again.fs.rootIno, 0n, 10)).entries, []);
    const check = await (again as PoolHandle & Pick<Pool, 'spaceCheck'>).spaceCheck();
    assert.equal(check.allocatedBytes, check.reachableBytes + check.deferredBytes, 'no space leaked');
    await again.export();
  });
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryObjectStore } from '../testing/memory-object-store.js';
import { Random } from '../testing/random.js';
import { openKv } from '../kv/index.js';
import { createPool, importPool } from '../pool/index.js';
import type { Pool } from '../pool/pool.js';
import { CairnError, isCairnError, type ErrorCode } from '../util/errors.js';
import { Filesystem, MASTER_NODE_OBJECT_ID } from './filesystem.js';
import { decodeInode } from './inode.js';
import { XATTR_INLINE_MAX_BYTES, XATTR_SIZE_MAX_BYTES } from './xattr.js';
import type { FileSystemApi } from './types.js';

const MiB = 1024 * 1024;

async function makeFs(): Promise<{ fs: Filesystem; store: MemoryObjectStore; tick: () => bigint }> {
  const store = new MemoryObjectStore();
  let nowNs = 1_700_000_000_000_000_000n;
  const tick = (): bigint => (nowNs += 1000n);
  return { fs: await Filesystem.create(store, { uid: 0, gid: 0, nowNs: tick }), store, tick };
}

function code(c: ErrorCode): (e: unknown) => boolean {
  return (e) => isCairnError(e, c);
}

async function xattrObjectId(store: MemoryObjectStore, ino: number): Promise<number> {
  const phys = decodeInode(await store.getBonus(ino));
  assert.ok(phys !== undefined);
  return phys.xattrObjectId;
}

test('xattr: set, get, list, replace and remove round-trip; flags as XATTR_CREATE / XATTR_REPLACE', async () => {
  const { fs } = await makeFs();
  const file = await fs.create(fs.rootIno, 'f', { mode: 0o644 });
  assert.deepEqual(await fs.listxattr(file.ino), []);
  await assert.rejects(fs.getxattr(file.ino, 'user.a'), code('ENODATA'));

  await fs.setxattr(file.ino, 'user.a', Buffer.from('one'));
  await fs.setxattr(file.ino, 'security.selinux', Buffer.from('system_u:object_r:tmp_t:s0'));
  await fs.setxattr(file.ino, 'trusted.t', Buffer.alloc(0));
  // No POSIX ACLs: system.* is refused as by a file system mounted without ACL support.
  await assert.rejects(fs.setxattr(file.ino, 'system.posix_acl_access', Buffer.from([2, 0, 0, 0])), code('EOPNOTSUPP'));
  await assert.rejects(fs.getxattr(file.ino, 'system.posix_acl_access'), code('EOPNOTSUPP'));
  assert.equal((await fs.getxattr(file.ino, 'user.a')).toString(), 'one');
  assert.equal((await fs.getxattr(file.ino, 'trusted.t')).length, 0);
  assert.deepEqual(await fs.listxattr(file.ino), ['security.selinux', 'trusted.t', 'user.a']);

  // create: only when absent; replace: only when present; neither: either.
  await assert.rejects(fs.setxattr(file.ino, 'user.a', Buffer.from('two'), { create: true }), code('EEXIST'));
  await assert.rejects(fs.setxattr(file.ino, 'user.b', Buffer.from('two'), { replace: true }), code('ENODATA'));
  await assert.rejects(fs.setxattr(file.ino, 'user.a', Buffer.from('x'), { create: true, replace: true }), code('EEXIST'));
  assert.equal((await fs.getxattr(file.ino, 'user.a')).toString(), 'one');
  await assert.rejects(fs.getxattr(file.ino, 'user.b'), code('ENODATA'));
  await fs.setxattr(file.ino, 'user.a', Buffer.from('two'), { replace: true });
  await fs.setxattr(file.ino, 'user.b', Buffer.from('new'), { create: true });
  assert.equal((await fs.getxattr(file.ino, 'user.a')).toString(), 'two');
  assert.equal((await fs.getxattr(file.ino, 'user.b')).toString(), 'new');

  await fs.removexattr(file.ino, 'user.a');
  await assert.rejects(fs.getxattr(file.ino, 'user.a'), code('ENODATA'));
  await assert.rejects(fs.removexattr(file.ino, 'user.a'), code('ENODATA'));
  assert.deepEqual(await fs.listxattr(file.ino), ['security.selinux', 'trusted.t', 'user.b']);

  // Directories carry attributes too; the caller's buffer is copied in, not aliased.
  const dir = await fs.mkdir(fs.rootIno, 'd', { mode: 0o755 });
  const value = Buffer.from('dir-value');
  await fs.setxattr(dir.ino, 'user.d', value);
  value.fill(0);
  assert.equal((await fs.getxattr(dir.ino, 'user.d')).toString(), 'dir-value');
  assert.deepEqual(await fs.listxattr(dir.ino), ['user.d']);
});

test('xattr: name and value limits and errors are Linux\'s (checked against ext4)', async () => {
  const { fs } = await makeFs();
  const file = await fs.create(fs.rootIno, 'f', { mode: 0o644 });
  const v = Buffer.from('v');
  await assert.rejects(fs.setxattr(file.ino, '', v), code('ERANGE'));
  await assert.rejects(fs.getxattr(file.ino, ''), code('ERANGE'));
  await assert.rejects(fs.setxattr(file.ino, `user.${'a'.repeat(251)}`, v), code('ERANGE')); // 256 bytes
  await assert.rejects(fs.setxattr(file.ino, `user.${'é'.repeat(126)}`, v), code('ERANGE')); // 257 bytes, 131 chars
  const longest = `user.${'a'.repeat(250)}`; // 255 bytes
  await fs.setxattr(file.ino, longest, v);
  assert.equal((await fs.getxattr(file.ino, longest)).toString(), 'v');
  await assert.rejects(fs.setxattr(file.ino, 'user.', v), code('EINVAL'));
  await assert.rejects(fs.setxattr(file.ino, 'foo', v), code('EOPNOTSUPP'));
  await assert.rejects(fs.setxattr(file.ino, 'User.x', v), code('EOPNOTSUPP'));
  await assert.rejects(fs.getxattr(file.ino, 'foo'), code('EOPNOTSUPP'));
  await assert.rejects(fs.removexattr(file.ino, 'foo'), code('EOPNOTSUPP'));
  await assert.rejects(fs.setxattr(file.ino, 'user.a\0b', v), code('EINVAL'));
  await assert.rejects(fs.setxattr(file.ino, 'user.big', Buffer.alloc(XATTR_SIZE_MAX_BYTES + 1)), code('E2BIG'));
  // Linux copies the name in before it looks the path up: a bad name on a missing inode is ERANGE, a bad
  // namespace on one is ENOENT.
  await assert.rejects(fs.setxattr(999_999, '', v), code('ERANGE'));
  await assert.rejects(fs.setxattr(999_999, 'foo', v), code('ENOENT'));
  await assert.rejects(fs.listxattr(999_999), code('ENOENT'));
  assert.deepEqual(await fs.listxattr(file.ino), [longest]);

  // user.* only on files and directories: EPERM to write one on a symlink, ENODATA to read one.
  const link = await fs.symlink(fs.rootIno, 'l', 'f');
  await assert.rejects(fs.setxattr(link.ino, 'user.a', v), code('EPERM'));
  await assert.rejects(fs.removexattr(link.ino, 'user.a'), code('EPERM'));
  await assert.rejects(fs.getxattr(link.ino, 'user.a'), code('ENODATA'));
  await fs.setxattr(link.ino, 'security.label', v);
  assert.deepEqual(await fs.listxattr(link.ino), ['security.label']);
  assert.equal(await fs.readlink(link.ino), 'f');

  // listxattr fails with E2BIG once the names (each with its NUL) pass XATTR_LIST_MAX, as on ZFS.
  const many = await fs.create(fs.rootIno, 'many', { mode: 0o644 });
  const nameOf = (i: number): string => `user.${String(i).padStart(4, '0')}${'n'.repeat(241)}`; // 250 bytes
  for (let i = 0; i < 261; i++) await fs.setxattr(many.ino, nameOf(i), v); // 261 * 251 = 65511 bytes
  assert.equal((await fs.listxattr(many.ino)).length, 261);
  await fs.setxattr(many.ino, nameOf(261), v); // 65762 bytes
  await assert.rejects(fs.listxattr(many.ino), code('E2BIG'));
  await fs.removexattr(many.ino, nameOf(0));
  assert.deepEqual(await fs.listxattr(many.ino), Array.from({ length: 261 }, (_, i) => nameOf(i + 1)));
});

test('xattr: values of every size class up to 64 KiB round-trip, replace both ways leaves no stray chunk', async () => {
  const seed = 0x7a11;
  const rnd = new Random(seed);
  const { fs, store } = await makeFs();
  const file = await fs.create(fs.rootIno, 'f', { mode: 0o644 });
  const sizes = [0, 1, XATTR_INLINE_MAX_BYTES, XATTR_INLINE_MAX_BYTES + 1, 1024, 1025, 4096, 40_000, XATTR_SIZE_MAX_BYTES - 1, XATTR_SIZE_MAX_BYTES];
  try {
    for (const size of sizes) {
      const value = rnd.bytes(size);
      await fs.setxattr(file.ino, `user.s${size}`, value);
      assert.ok((await fs.getxattr(file.ino, `user.s${size}`)).equals(value), `size ${size}`);
    }
    // Every value still intact after the others were written.
    const names = await fs.listxattr(file.ino);
    assert.equal(names.length, sizes.length);
    // Replace large by small and small by large, repeatedly, on one name.
    for (const size of [XATTR_SIZE_MAX_BYTES, 10, 3000, 2000, 0, 65_000, 1]) {
      const value = rnd.bytes(size);
      await fs.setxattr(file.ino, 'user.x', value);
      assert.ok((await fs.getxattr(file.ino, 'user.x')).equals(value), `user.x size ${size}`);
    }
    // The kv map holds exactly the names plus the chunks of the values still chunked: nothing stale.
    const expectedChunks = sizes.filter((s) => s > XATTR_INLINE_MAX_BYTES).reduce((n, s) => n + Math.ceil(s / 1024), 0);
    const kv = openKv(store, await xattrObjectId(store, file.ino));
    assert.equal(await kv.count(), sizes.length + 1 + expectedChunks);
    for (const size of sizes) await fs.removexattr(file.ino, `user.s${size}`);
    assert.equal(await kv.count(), 1);
  } catch (e) {
    console.error(`xattr sizes test failed with seed ${seed}`);
    throw e;
  }
});

test('xattr: set and remove change ctime (not mtime); a failed call changes nothing', async () => {
  const { fs } = await makeFs();
  const file = await fs.create(fs.rootIno, 'f', { mode: 0o644 });
  const before = await fs.getattr(file.ino);
  await fs.setxattr(file.ino, 'user.a', Buffer.from('1'));
  const afterSet = await fs.getattr(file.ino);
  assert.ok(afterSet.ctimeNs > before.ctimeNs);
  assert.equal(afterSet.mtimeNs, before.mtimeNs);
  await assert.rejects(fs.setxattr(file.ino, 'user.a', Buffer.from('2'), { create: true }), code('EEXIST'));
  await assert.rejects(fs.removexattr(file.ino, 'user.zz'), code('ENODATA'));
  assert.equal((await fs.getattr(file.ino)).ctimeNs, afterSet.ctimeNs);
  assert.equal((await fs.getxattr(file.ino, 'user.a')).toString(), '1');
  await fs.removexattr(file.ino, 'user.a');
  const afterRemove = await fs.getattr(file.ino);
  assert.ok(afterRemove.ctimeNs > afterSet.ctimeNs);
  assert.equal(afterRemove.mtimeNs, before.mtimeNs);
});

test('xattr: the xattr object is made on first set and freed with the last attribute and with the inode', async () => {
  const { fs, store } = await makeFs();
  const baseline = store.objectCount();
  const big = Buffer.alloc(XATTR_SIZE_MAX_BYTES, 7);

  // Last attribute removed: the object goes, the inode points at none.
  const f = await fs.create(fs.rootIno, 'f', { mode: 0o644 });
  assert.equal(await xattrObjectId(store, f.ino), 0);
  await fs.setxattr(f.ino, 'user.a', big);
  await fs.setxattr(f.ino, 'user.b', Buffer.from('b'));
  assert.notEqual(await xattrObjectId(store, f.ino), 0);
  assert.equal(store.objectCount(), baseline + 2);
  await fs.removexattr(f.ino, 'user.a');
  await fs.removexattr(f.ino, 'user.b');
  assert.equal(await xattrObjectId(store, f.ino), 0);
  assert.equal(store.objectCount(), baseline + 1);

  // Hard links share the attributes; only the last unlink frees them.
  await fs.setxattr(f.ino, 'user.a', big);
  await fs.link(f.ino, fs.rootIno, 'f2');
  await fs.unlink(fs.rootIno, 'f');
  assert.ok((await fs.getxattr(f.ino, 'user.a')).equals(big));
  await fs.unlink(fs.rootIno, 'f2');
  assert.equal(store.objectCount(), baseline);
  await assert.rejects(fs.getxattr(f.ino, 'user.a'), code('ENOENT'));

  // rmdir, rename over a file and rename over an empty directory free the victim's attributes too.
  const d = await fs.mkdir(fs.rootIno, 'd', { mode: 0o755 });
  await fs.setxattr(d.ino, 'user.d', big);
  await fs.rmdir(fs.rootIno, 'd');
  assert.equal(store.objectCount(), baseline);

  const victim = await fs.create(fs.rootIno, 'victim', { mode: 0o644 });
  await fs.setxattr(victim.ino, 'user.v', Buffer.from('v'));
  const src = await fs.create(fs.rootIno, 'src', { mode: 0o644 });
  await fs.setxattr(src.ino, 'user.s', Buffer.from('s'));
  await fs.rename(fs.rootIno, 'src', fs.rootIno, 'victim');
  assert.equal(store.objectCount(), baseline + 2);
  assert.deepEqual(await fs.listxattr((await fs.lookup(fs.rootIno, 'victim')).ino), ['user.s']);
  await fs.unlink(fs.rootIno, 'victim');
  assert.equal(store.objectCount(), baseline);

  const dirVictim = await fs.mkdir(fs.rootIno, 'dv', { mode: 0o755 });
  await fs.setxattr(dirVictim.ino, 'trusted.x', big);
  await fs.mkdir(fs.rootIno, 'ds', { mode: 0o755 });
  await fs.rename(fs.rootIno, 'ds', fs.rootIno, 'dv');
  assert.equal(store.objectCount(), baseline + 1);
  await fs.rmdir(fs.rootIno, 'dv');
  assert.equal(store.objectCount(), baseline);
});

test('xattr: a file left on the unlinked set is freed at open with its xattr object', async () => {
  const { fs, store } = await makeFs();
  const kept = await fs.create(fs.rootIno, 'kept', { mode: 0o644 });
  await fs.setxattr(kept.ino, 'user.k', Buffer.alloc(5000, 1));
  const baseline = store.objectCount();
  const file = await fs.create(fs.rootIno, 'f', { mode: 0o644 });
  await fs.setxattr(file.ino, 'user.a', Buffer.alloc(5000, 2));
  assert.equal(store.objectCount(), baseline + 2);
  // What an unlink of an open file leaves behind when the pool stops: the entry is gone, the object
  // waits on the unlinked set.
  await store.hold(async () => {
    await openKv(store, fs.rootIno).delete('f');
    const unlinkedId = Number((await openKv(store, MASTER_NODE_OBJECT_ID).get('unlinked'))?.readBigUInt64LE(0));
    await openKv(store, unlinkedId).set(String(file.ino), Buffer.alloc(0));
  });
  const reopened = await Filesystem.open(store);
  assert.equal(store.objectCount(), baseline);
  await assert.rejects(reopened.getattr(file.ino), code('ENOENT'));
  assert.equal((await reopened.getxattr(kept.ino, 'user.k')).length, 5000);
});

test('xattr: concurrent calls are atomic (one create wins, a reader never sees half a replaced value)', async () => {
  const { fs } = await makeFs();
  const file = await fs.create(fs.rootIno, 'f', { mode: 0o644 });
  const results = await Promise.allSettled(
    Array.from({ length: 8 }, (_, i) => fs.setxattr(file.ino, 'user.race', Buffer.from(`w${i}`), { create: true })),
  );
  assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
  for (const r of results) if (r.status === 'rejected') assert.ok(isCairnError(r.reason, 'EEXIST'));

  const values = [Buffer.alloc(XATTR_SIZE_MAX_BYTES, 0xaa), Buffer.alloc(5000, 0xbb), Buffer.alloc(30, 0xcc)];
  await fs.setxattr(file.ino, 'user.v', values[0] as Buffer);
  let writing = true;
  const writer = (async () => {
    for (let round = 1; round <= 30; round++) await fs.setxattr(file.ino, 'user.v', values[round % values.length] as Buffer);
    writing = false;
  })();
  // Readers run while the writer replaces the value back and forth between inline and chunked forms.
  const reader = async (): Promise<number> => {
    let reads = 0;
    while (writing) {
      const got = await fs.getxattr(file.ino, 'user.v');
      assert.ok(values.some((v) => v.equals(got)), `torn value of ${got.length} bytes`);
      reads++;
    }
    return reads;
  };
  const reads = await Promise.all([reader(), reader(), writer]);
  assert.ok((reads[0] as number) > 0 && (reads[1] as number) > 0);
});

/**
 * A store whose writes fail with ENOSPC once `failAfterWrites` more have gone through, counting only the
 * first write after a read: that is where a kv operation starts changing things, so the failure lands
 * between kv operations (which is what the xattr write order must survive). A failure inside one kv
 * operation is the kv layer's to survive, and the real object set never refuses a kv object's write
 * (ENOSPC is checked only for file and volume data; metadata has the slop).
 */
function failingStore(store: MemoryObjectStore): { store: MemoryObjectStore; arm(failAfterWrites: number): void; disarm(): void } {
  let remaining = Infinity;
  let lastWasRead = false;
  const wrapped = new Proxy(store, {
    get(target, prop, receiver) {
      const v: unknown = Reflect.get(target, prop, receiver);
      if (prop === 'read') {
        return async (id: number, offset: number, length: number) => {
          lastWasRead = true;
          return target.read(id, offset, length);
        };
      }
      // A failed change fails before it changes anything, as the object set's do.
      const maybeFail = (): void => {
        const first = lastWasRead;
        lastWasRead = false;
        if (first && remaining-- <= 0) throw new CairnError('ENOSPC', 'injected: out of space');
      };
      if (prop === 'write') {
        return async (id: number, offset: number, data: Buffer) => {
          maybeFail();
          return target.write(id, offset, data);
        };
      }
      if (prop === 'modify') {
        return async (id: number, offset: number, length: number, edit: (range: Buffer) => void) => {
          maybeFail();
          return target.modify(id, offset, length, edit);
        };
      }
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { store: wrapped, arm: (n) => (remaining = n), disarm: () => (remaining = Infinity) };
}

test('xattr: a setxattr that fails part way (ENOSPC at every possible write) leaves the old value whole', async () => {
  const base = new MemoryObjectStore();
  const faulty = failingStore(base);
  const fs = await Filesystem.create(faulty.store, { uid: 0, gid: 0 });
  const file = await fs.create(fs.rootIno, 'f', { mode: 0o644 });
  const rnd = new Random(0xe05c);
  let current = rnd.bytes(XATTR_SIZE_MAX_BYTES);
  await fs.setxattr(file.ino, 'user.v', current);
  const next = [rnd.bytes(XATTR_SIZE_MAX_BYTES), rnd.bytes(3000), rnd.bytes(20), rnd.bytes(40_000)];
  let failures = 0;
  for (const value of next) {
    for (let failAfter = 0; ; failAfter++) {
      faulty.arm(failAfter);
      let failed = false;
      try {
        await fs.setxattr(file.ino, 'user.v', value);
      } catch (e) {
        assert.ok(isCairnError(e, 'ENOSPC'), String(e));
        failed = true;
        failures++;
      } finally {
        faulty.disarm();
      }
      const got = await fs.getxattr(file.ino, 'user.v');
      if (failed) {
        // Before the entry switched, the old value; after it, the new one; never a mix.
        assert.ok(got.equals(current) || got.equals(value), `torn value after a failure at write ${failAfter}`);
        if (got.equals(value)) current = value;
        continue;
      }
      assert.ok(got.equals(value));
      current = value;
      break;
    }
  }
  assert.ok(failures > 60, `only ${failures} injected failures`);
  // A later successful set cleans every chunk a failed attempt left behind.
  await fs.setxattr(file.ino, 'user.v', Buffer.from('small'));
  const kv = openKv(base, await xattrObjectId(base, file.ino));
  assert.equal(await kv.count(), 1);
  await fs.removexattr(file.ino, 'user.v');
  assert.equal(await xattrObjectId(base, file.ino), 0);
});

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-xattr-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function assertSpaceExact(pool: Pool, when: string): Promise<void> {
  const s = await pool.spaceCheck();
  assert.equal(s.allocatedBytes, s.reachableBytes + s.deferredBytes, `${when}: space leak`);
}

test('xattr: persisted across pool export/import; snapshots keep the old value and refuse changes', async () => {
  await withDir(async (dir) => {
    const rnd = new Random(0xa77);
    const vdev = join(dir, 'd.img');
    const pool = (await createPool({ name: 'xt', vdevSpec: [vdev], createSizeBytes: 128 * MiB, cacheSizeBytes: 8 * MiB })) as unknown as Pool;
    const fs: FileSystemApi = pool.fs;
    const file = await fs.create(fs.rootIno, 'f', { mode: 0o644 });
    const dirSt = await fs.mkdir(fs.rootIno, 'd', { mode: 0o755 });
    const big = rnd.bytes(XATTR_SIZE_MAX_BYTES);
    await fs.setxattr(file.ino, 'user.small', Buffer.from('small'));
    await fs.setxattr(file.ino, 'user.big', big);
    await fs.setxattr(dirSt.ino, 'security.label', Buffer.from('L'));
    const gone = await fs.create(fs.rootIno, 'gone', { mode: 0o644 });
    await fs.setxattr(gone.ino, 'user.big', big);
    await pool.datasets.snapshot('xt@s1');
    await fs.setxattr(file.ino, 'user.small', Buffer.from('changed'));
    const ctime = (await fs.getattr(file.ino)).ctimeNs;

    const snap = await pool.datasets.open('xt@s1');
    assert.equal((await snap.getxattr(file.ino, 'user.small')).toString(), 'small');
    await assert.rejects(snap.setxattr(file.ino, 'user.small', Buffer.from('x')), code('EROFS'));
    await assert.rejects(snap.removexattr(file.ino, 'user.small'), code('EROFS'));
    await pool.export();

    const again = (await importPool({ searchPaths: [dir], cacheSizeBytes: 8 * MiB })) as unknown as Pool;
    const fs2 = again.fs;
    assert.deepEqual(await fs2.listxattr(file.ino), ['user.big', 'user.small']);
    assert.equal((await fs2.getxattr(file.ino, 'user.small')).toString(), 'changed');
    assert.ok((await fs2.getxattr(file.ino, 'user.big')).equals(big));
    assert.equal((await fs2.getxattr(dirSt.ino, 'security.label')).toString(), 'L');
    assert.equal((await fs2.getattr(file.ino)).ctimeNs, ctime);
    const snap2 = await again.datasets.open('xt@s1');
    assert.equal((await snap2.getxattr(file.ino, 'user.small')).toString(), 'small');
    assert.ok((await snap2.getxattr(gone.ino, 'user.big')).equals(big));

    // Unlinking a file with a 64 KiB attribute frees its blocks: space stays exact.
    await fs2.unlink(fs2.rootIno, 'gone');
    await fs2.removexattr(file.ino, 'user.big');
    await again.sync();
    await assertSpaceExact(again, 'after unlink and removexattr');
    await again.export();
    const third = (await importPool({ searchPaths: [dir], cacheSizeBytes: 8 * MiB })) as unknown as Pool;
    assert.deepEqual(await third.fs.listxattr(file.ino), ['user.small']);
    await assert.rejects(third.fs.getxattr(gone.ino, 'user.big'), code('ENOENT'));
    await assertSpaceExact(third, 'after reimport');
    await third.export();
  });
});

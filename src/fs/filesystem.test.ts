import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryObjectStore } from '../testing/memory-object-store.js';
import { openKv } from '../kv/index.js';
import { isCairnError } from '../util/errors.js';
import { Filesystem, MASTER_NODE_OBJECT_ID, MasterKey } from './filesystem.js';
import { S_IFDIR, S_IFLNK, S_IFREG } from './inode.js';
import { FileKind } from './types.js';
import { prng, testSeed } from '../testing/random.js';

const START_NS = 1_700_000_000_000_000_000n;

/** A deterministic clock that advances only when the test says so. */
class TestClock {
  nowNs = START_NS;
  tick(ns = 1000n): bigint {
    this.nowNs += ns;
    return this.nowNs;
  }
  readonly read = (): bigint => this.nowNs;
}

async function makeFs(recordSizeBytes?: number): Promise<{ fs: Filesystem; store: MemoryObjectStore; clock: TestClock }> {
  const store = new MemoryObjectStore();
  const clock = new TestClock();
  const fs = await Filesystem.create(store, {
    uid: 1000,
    gid: 100,
    nowNs: clock.read,
    ...(recordSizeBytes === undefined ? {} : { recordSizeBytes }),
  });
  return { fs, store, clock };
}

async function rejectsWith(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(isCairnError(error), `expected a CairnError ${code}, got ${String(error)}`);
    assert.equal(error.code, code);
    return true;
  });
}

function pattern(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = (i * 31 + seed * 7 + (i >> 9)) & 0xff;
  return out;
}

test('create lays out the master node at object 1; open finds the same tree; wrong version refused', async () => {
  const { fs, store } = await makeFs();
  const root = await fs.getattr(fs.rootIno);
  assert.equal(root.kind, FileKind.directory);
  assert.equal(root.mode, S_IFDIR | 0o755);
  assert.equal(root.nlink, 2);
  assert.equal(root.uid, 1000);
  assert.equal((await store.objectInfo(MASTER_NODE_OBJECT_ID)).type, 19);
  const dir = await fs.mkdir(fs.rootIno, 'docs', { mode: 0o750 });
  const file = await fs.create(dir.ino, 'a.txt', { mode: 0o640 });
  await fs.write(file.ino, 0, Buffer.from('hello'));

  const reopened = await Filesystem.open(store);
  assert.equal(reopened.rootIno, fs.rootIno);
  const found = await reopened.resolvePath('/docs/a.txt');
  assert.equal(found.ino, file.ino);
  assert.equal(found.uid, 1000, 'inherits the owner of its parent');
  assert.equal((await reopened.read(found.ino, 0, 100)).toString(), 'hello');
  assert.equal(reopened.recordSizeBytes, 128 * 1024);

  await store.hold(async () => {
    const version = Buffer.alloc(8);
    version.writeBigUInt64LE(99n);
    await openKv(store, MASTER_NODE_OBJECT_ID).set(MasterKey.version, version);
  });
  await rejectsWith(Filesystem.open(store), 'EVERSION');
  await rejectsWith(Filesystem.open(new MemoryObjectStore()), 'EINVAL');
});

test('every mutating operation is one hold; a failed one changes nothing', async () => {
  const { fs, store } = await makeFs();
  const file = await fs.create(fs.rootIno, 'f', { mode: 0o644 });
  const before = store.holdCount;
  await fs.write(file.ino, 0, pattern(300_000, 1));
  await fs.mkdir(fs.rootIno, 'd', { mode: 0o755 });
  await fs.rename(fs.rootIno, 'f', fs.rootIno, 'g');
  assert.equal(store.holdCount - before, 3);

  const objects = store.objectCount();
  const rootBefore = await fs.getattr(fs.rootIno);
  await rejectsWith(fs.create(fs.rootIno, 'g', { mode: 0o644 }), 'EEXIST');
  await rejectsWith(fs.mkdir(fs.rootIno, 'd', { mode: 0o755 }), 'EEXIST');
  await rejectsWith(fs.rename(fs.rootIno, 'g', fs.rootIno, 'd'), 'EISDIR');
  assert.equal(store.objectCount(), objects);
  assert.deepEqual(await fs.getattr(fs.rootIno), rootBefore);
});

test('names are validated', async () => {
  const { fs } = await makeFs();
  for (const name of ['a/b', 'a\0b', '.', '..']) await rejectsWith(fs.create(fs.rootIno, name, { mode: 0o644 }), 'EINVAL');
  await rejectsWith(fs.create(fs.rootIno, 'x'.repeat(256), { mode: 0o644 }), 'ENAMETOOLONG');
  await rejectsWith(fs.mkdir(fs.rootIno, 'é'.repeat(128), { mode: 0o755 }), 'ENAMETOOLONG'); // 256 bytes
  await fs.create(fs.rootIno, 'x'.repeat(255), { mode: 0o644 });
  await fs.create(fs.rootIno, 'é'.repeat(127), { mode: 0o644 });
  await rejectsWith(fs.lookup(fs.rootIno, 'missing'), 'ENOENT');
  const file = await fs.create(fs.rootIno, 'plain', { mode: 0o644 });
  await rejectsWith(fs.lookup(file.ino, 'x'), 'ENOTDIR');
  await rejectsWith(fs.create(file.ino, 'x', { mode: 0o644 }), 'ENOTDIR');
  await rejectsWith(fs.resolvePath('relative'), 'EINVAL');
  await rejectsWith(fs.resolvePath('/plain/x'), 'ENOTDIR');
  await rejectsWith(fs.resolvePath('/plain/'), 'ENOTDIR');
});

test('sparse files: holes read as zeros, reads past EOF are short, only written blocks are allocated', async () => {
  const { fs } = await makeFs(16 * 1024);
  const file = await fs.create(fs.rootIno, 'sparse', { mode: 0o644 });
  const data = pattern(5000, 2);
  await fs.write(file.ino, 1_000_000, data);
  const stat = await fs.getattr(file.ino);
  assert.equal(stat.sizeBytes, 1_005_000);
  assert.ok(stat.allocatedBytes <= 2 * 16 * 1024, `allocated ${stat.allocatedBytes}`);
  assert.ok((await fs.read(file.ino, 0, 1_000_000)).equals(Buffer.alloc(1_000_000)));
  const tail = await fs.read(file.ino, 999_990, 100_000);
  assert.equal(tail.length, 5010, 'short read at EOF');
  assert.ok(tail.subarray(0, 10).equals(Buffer.alloc(10)));
  assert.ok(tail.subarray(10).equals(data));
  assert.equal((await fs.read(file.ino, 1_005_000, 10)).length, 0);
  assert.equal((await fs.read(file.ino, 5_000_000, 10)).length, 0);
  await rejectsWith(fs.read(file.ino, -1, 10), 'EINVAL');
  await rejectsWith(fs.read(fs.rootIno, 0, 10), 'EISDIR');
  await rejectsWith(fs.write(fs.rootIno, 0, data), 'EISDIR');
});

test('truncate: shrink frees blocks and zeroes the tail, grow makes a hole, both set mtime and ctime', async () => {
  const { fs, clock } = await makeFs(4096);
  const file = await fs.create(fs.rootIno, 't', { mode: 0o644 });
  const data = pattern(40_000, 3);
  await fs.write(file.ino, 0, data);
  const full = await fs.getattr(file.ino);
  assert.equal(full.allocatedBytes, 10 * 4096);

  const shrinkNs = clock.tick();
  const shrunk = await fs.setattr(file.ino, { sizeBytes: 5000 });
  assert.equal(shrunk.sizeBytes, 5000);
  assert.equal(shrunk.allocatedBytes, 2 * 4096, 'whole blocks past the new size are freed');
  assert.equal(shrunk.mtimeNs, shrinkNs);
  assert.equal(shrunk.ctimeNs, shrinkNs);

  await fs.setattr(file.ino, { sizeBytes: 30_000 });
  const grown = await fs.read(file.ino, 0, 100_000);
  assert.equal(grown.length, 30_000);
  assert.ok(grown.subarray(0, 5000).equals(data.subarray(0, 5000)));
  assert.ok(grown.subarray(5000).equals(Buffer.alloc(25_000)), 'old bytes never reappear after shrink + grow');
  assert.equal((await fs.getattr(file.ino)).allocatedBytes, 2 * 4096, 'growing allocates nothing');

  // A write past the end after a shrink exposes zeros in between, too.
  await fs.setattr(file.ino, { sizeBytes: 100 });
  await fs.write(file.ino, 20_000, Buffer.from('end'));
  const afterWrite = await fs.read(file.ino, 0, 30_000);
  assert.ok(afterWrite.subarray(100, 20_000).equals(Buffer.alloc(19_900)));
  assert.equal(afterWrite.subarray(20_000).toString(), 'end');

  await fs.setattr(file.ino, { sizeBytes: 0 });
  assert.equal((await fs.getattr(file.ino)).allocatedBytes, 0);
  await rejectsWith(fs.setattr(fs.rootIno, { sizeBytes: 0 }), 'EISDIR');
  await rejectsWith(fs.setattr(file.ino, { sizeBytes: -1 }), 'EINVAL');
});

test('timestamps follow POSIX', async () => {
  const { fs, clock } = await makeFs();
  const createNs = clock.tick();
  const dir = await fs.mkdir(fs.rootIno, 'd', { mode: 0o755 });
  assert.equal(dir.birthtimeNs, createNs);
  assert.equal((await fs.getattr(fs.rootIno)).mtimeNs, createNs, 'mkdir sets the parent mtime');

  const fileNs = clock.tick();
  const file = await fs.create(dir.ino, 'f', { mode: 0o644 });
  const dirAfterCreate = await fs.getattr(dir.ino);
  assert.equal(dirAfterCreate.mtimeNs, fileNs);
  assert.equal(dirAfterCreate.ctimeNs, fileNs);
  assert.equal((await fs.getattr(fs.rootIno)).mtimeNs, createNs, 'the grandparent is untouched');

  const writeNs = clock.tick();
  await fs.write(file.ino, 0, Buffer.from('x'));
  let stat = await fs.getattr(file.ino);
  assert.equal(stat.mtimeNs, writeNs);
  assert.equal(stat.ctimeNs, writeNs);
  assert.equal(stat.atimeNs, fileNs, 'write does not touch atime');

  const chmodNs = clock.tick();
  stat = await fs.setattr(file.ino, { mode: 0o600 });
  assert.equal(stat.mode, S_IFREG | 0o600);
  assert.equal(stat.mtimeNs, writeNs, 'chmod leaves mtime');
  assert.equal(stat.ctimeNs, chmodNs);

  const readNs = clock.tick();
  await fs.read(file.ino, 0, 1);
  assert.equal((await fs.getattr(file.ino)).atimeNs, readNs, 'relatime: atime older than mtime is refreshed');
  clock.tick();
  await fs.read(file.ino, 0, 1);
  assert.equal((await fs.getattr(file.ino)).atimeNs, readNs, 'relatime: a fresh atime is kept');

  const utimesNs = clock.tick();
  stat = await fs.setattr(file.ino, { atimeNs: 5n, mtimeNs: 7n });
  assert.equal(stat.atimeNs, 5n);
  assert.equal(stat.mtimeNs, 7n);
  assert.equal(stat.ctimeNs, utimesNs);

  const linkNs = clock.tick();
  await fs.link(file.ino, fs.rootIno, 'hard');
  assert.equal((await fs.getattr(file.ino)).ctimeNs, linkNs);
  assert.equal((await fs.getattr(fs.rootIno)).mtimeNs, linkNs);

  const unlinkNs = clock.tick();
  await fs.unlink(dir.ino, 'f');
  assert.equal((await fs.getattr(dir.ino)).mtimeNs, unlinkNs);
  assert.equal((await fs.getattr(file.ino)).ctimeNs, unlinkNs);
});

test('link counts: hard links, directories 2 + subdirectories, the last unlink frees the object', async () => {
  const { fs, store } = await makeFs();
  const file = await fs.create(fs.rootIno, 'f', { mode: 0o644 });
  await fs.write(file.ino, 0, Buffer.from('shared'));
  const sub = await fs.mkdir(fs.rootIno, 'sub', { mode: 0o755 });
  assert.equal((await fs.getattr(fs.rootIno)).nlink, 3);
  await fs.mkdir(sub.ino, 'inner', { mode: 0o755 });
  assert.equal((await fs.getattr(sub.ino)).nlink, 3);
  assert.equal((await fs.getattr(fs.rootIno)).nlink, 3);

  const linked = await fs.link(file.ino, sub.ino, 'g');
  assert.equal(linked.nlink, 2);
  assert.equal((await fs.lookup(sub.ino, 'g')).ino, file.ino);
  await rejectsWith(fs.link(file.ino, sub.ino, 'g'), 'EEXIST');
  await rejectsWith(fs.link(sub.ino, fs.rootIno, 'dirlink'), 'EPERM');

  const objects = store.objectCount();
  await fs.unlink(fs.rootIno, 'f');
  assert.equal((await fs.getattr(file.ino)).nlink, 1);
  assert.equal((await fs.read(file.ino, 0, 10)).toString(), 'shared', 'data survives while a link remains');
  assert.equal(store.objectCount(), objects);
  await fs.unlink(sub.ino, 'g');
  assert.equal(store.objectCount(), objects - 1, 'the last unlink frees the object');
  await rejectsWith(fs.getattr(file.ino), 'ENOENT');

  await rejectsWith(fs.unlink(fs.rootIno, 'sub'), 'EISDIR');
  await rejectsWith(fs.rmdir(fs.rootIno, 'sub'), 'ENOTEMPTY');
  await fs.rmdir(sub.ino, 'inner');
  assert.equal((await fs.getattr(sub.ino)).nlink, 2);
  await fs.rmdir(fs.rootIno, 'sub');
  assert.equal((await fs.getattr(fs.rootIno)).nlink, 2);
  assert.equal((await fs.getattr(fs.rootIno)).sizeBytes, 2);
  assert.equal(store.objectCount(), objects - 3);
});

test('rename: replace compatible targets atomically, refuse the incompatible, keep the tree consistent', async () => {
  const { fs, store } = await makeFs();
  const root = fs.rootIno;
  const a = await fs.mkdir(root, 'a', { mode: 0o755 });
  const b = await fs.mkdir(root, 'b', { mode: 0o755 });
  const x = await fs.create(a.ino, 'x', { mode: 0o644 });
  await fs.write(x.ino, 0, Buffer.from('new'));
  const y = await fs.create(b.ino, 'y', { mode: 0o644 });
  await fs.write(y.ino, 0, Buffer.from('old'));

  // File over file, across directories: the old target is freed, its name now reaches the source.
  const objects = store.objectCount();
  await fs.rename(a.ino, 'x', b.ino, 'y');
  assert.equal((await fs.lookup(b.ino, 'y')).ino, x.ino);
  assert.equal((await fs.read(x.ino, 0, 10)).toString(), 'new');
  await rejectsWith(fs.lookup(a.ino, 'x'), 'ENOENT');
  await rejectsWith(fs.getattr(y.ino), 'ENOENT');
  assert.equal(store.objectCount(), objects - 1);
  assert.equal((await fs.getattr(a.ino)).sizeBytes, 2);
  assert.equal((await fs.getattr(b.ino)).sizeBytes, 3);

  // Directory moves: parents' link counts and ".." follow.
  const c = await fs.mkdir(a.ino, 'c', { mode: 0o755 });
  assert.equal((await fs.getattr(a.ino)).nlink, 3);
  await fs.rename(a.ino, 'c', b.ino, 'c');
  assert.equal((await fs.getattr(a.ino)).nlink, 2);
  assert.equal((await fs.getattr(b.ino)).nlink, 3);
  assert.equal((await fs.lookup(c.ino, '..')).ino, b.ino);
  assert.equal((await fs.resolvePath('/b/c/../y')).ino, x.ino);

  // Into its own subtree, or onto an ancestor.
  await rejectsWith(fs.rename(root, 'b', c.ino, 'inside'), 'EINVAL');
  await rejectsWith(fs.rename(root, 'b', b.ino, 'self'), 'EINVAL');
  await rejectsWith(fs.rename(b.ino, 'c', root, 'b'), 'ENOTEMPTY');

  // Kind mismatches and a non-empty target directory.
  await rejectsWith(fs.rename(b.ino, 'y', root, 'a'), 'EISDIR');
  await rejectsWith(fs.rename(root, 'a', b.ino, 'y'), 'ENOTDIR');
  await fs.create(c.ino, 'keep', { mode: 0o644 });
  await rejectsWith(fs.rename(root, 'a', b.ino, 'c'), 'ENOTEMPTY');
  await rejectsWith(fs.rename(root, 'missing', root, 'z'), 'ENOENT');

  // Directory over an empty directory: replaced, link counts settle.
  const empty = await fs.mkdir(root, 'empty', { mode: 0o755 });
  assert.equal((await fs.getattr(root)).nlink, 5);
  await fs.rename(root, 'a', root, 'empty');
  await rejectsWith(fs.getattr(empty.ino), 'ENOENT');
  assert.equal((await fs.lookup(root, 'empty')).ino, a.ino);
  assert.equal((await fs.getattr(root)).nlink, 4);

  // Two names of one file: nothing happens, both stay.
  await fs.link(x.ino, root, 'alias');
  await fs.rename(root, 'alias', b.ino, 'y');
  assert.equal((await fs.lookup(root, 'alias')).ino, x.ino);
  assert.equal((await fs.getattr(x.ino)).nlink, 2);
  // Same name: a no-op.
  await fs.rename(root, 'b', root, 'b');
  assert.equal((await fs.lookup(root, 'b')).ino, b.ino);
});

test('symlinks: inline and long targets, resolution through them, loops and bad targets', async () => {
  const { fs, store } = await makeFs();
  const dir = await fs.mkdir(fs.rootIno, 'real', { mode: 0o755 });
  const file = await fs.create(dir.ino, 'f', { mode: 0o644 });
  const short = await fs.symlink(fs.rootIno, 'short', 'real');
  assert.equal(short.mode, S_IFLNK | 0o777);
  assert.equal(short.sizeBytes, 4);
  assert.equal(short.allocatedBytes, 0, 'a short target lives in the bonus');
  assert.equal(await fs.readlink(short.ino), 'real');
  const longTarget = `${'x/'.repeat(200)}../../f`;
  const long = await fs.symlink(fs.rootIno, 'long', longTarget);
  assert.equal(await fs.readlink(long.ino), longTarget);
  assert.ok(long.allocatedBytes > 0);

  assert.equal((await fs.resolvePath('/short/f')).ino, file.ino);
  assert.equal((await fs.resolvePath('/short')).ino, short.ino, 'the last component is not followed');
  assert.equal((await fs.resolvePath('/short/')).ino, dir.ino, 'a trailing slash follows it');
  await fs.symlink(dir.ino, 'up', '../short/f');
  assert.equal((await fs.resolvePath('/real/up')).kind, FileKind.symlink);
  await fs.symlink(fs.rootIno, 'abs', '/real');
  assert.equal((await fs.resolvePath('/abs/f')).ino, file.ino);
  await fs.symlink(fs.rootIno, 'loop', 'loop');
  await rejectsWith(fs.resolvePath('/loop/x'), 'ELOOP');
  await rejectsWith(fs.readlink(file.ino), 'EINVAL');
  await rejectsWith(fs.symlink(fs.rootIno, 'empty', ''), 'ENOENT');
  await rejectsWith(fs.symlink(fs.rootIno, 'huge', 'y'.repeat(4096)), 'ENAMETOOLONG');
  const objects = store.objectCount();
  await rejectsWith(fs.symlink(fs.rootIno, 'short', 'again'), 'EEXIST');
  await rejectsWith(fs.symlink(fs.rootIno, 'short', 'a long target '.repeat(40)), 'EEXIST'); // its object held the target
  assert.equal(store.objectCount(), objects, 'a refused create leaves no object behind');
  await rejectsWith(fs.read(short.ino, 0, 1), 'EINVAL');
  // Chmod-ing a symlink inode keeps its target readable (the inline target is written back with it).
  await fs.setattr(short.ino, { uid: 5 });
  assert.equal(await fs.readlink(short.ino), 'real');
});

test('concurrent creates of one name: exactly one wins; of many names: all land', async () => {
  const { fs } = await makeFs();
  const results = await Promise.allSettled(
    Array.from({ length: 20 }, () => fs.create(fs.rootIno, 'same', { mode: 0o644 })),
  );
  assert.equal(results.filter((result) => result.status === 'fulfilled').length, 1);
  await Promise.all(Array.from({ length: 100 }, (_, i) => fs.create(fs.rootIno, `n${i}`, { mode: 0o644 })));
  const root = await fs.getattr(fs.rootIno);
  assert.equal(root.sizeBytes, 2 + 101);
  const page = await fs.readdir(fs.rootIno, 0n, 1000);
  assert.equal(page.entries.length, 101);
});

test('statfs: zeros without a source, the pool figures with one', async () => {
  const { fs, store } = await makeFs();
  assert.deepEqual(await fs.statfs(), { totalBytes: 0, freeBytes: 0, availableBytes: 0, files: 0 });
  const figures = { totalBytes: 1000, freeBytes: 600, availableBytes: 500, files: 7 };
  const withSource = await Filesystem.open(store, { statfs: () => figures });
  assert.deepEqual(await withSource.statfs(), figures);
});

test('a setgid directory gives new entries its group, and new directories its setgid bit', async () => {
  const fs = await Filesystem.create(new MemoryObjectStore(), { uid: 0, gid: 0 });
  const shared = await fs.mkdir(fs.rootIno, 'shared', { mode: 0o2777, uid: 0, gid: 1234 });
  assert.equal(shared.mode & 0o7777, 0o2777);
  const file = await fs.create(shared.ino, 'f', { mode: 0o644, uid: 65534, gid: 65534 });
  assert.equal(file.gid, 1234);
  assert.equal(file.mode & 0o7777, 0o644, 'a file does not get the setgid bit');
  const sub = await fs.mkdir(shared.ino, 'd', { mode: 0o755, uid: 65534, gid: 65534 });
  assert.equal(sub.gid, 1234);
  assert.equal(sub.mode & 0o7777, 0o2755);
  const plain = await fs.create(fs.rootIno, 'g', { mode: 0o644, uid: 65534, gid: 65534 });
  assert.equal(plain.gid, 65534, 'elsewhere the caller keeps its group');
});

test('an open file outlives its last link: readable with nlink 0, listed nowhere, freed at the last release or at reopen', async () => {
  const store = new MemoryObjectStore();
  const fs = await Filesystem.create(store, { uid: 0, gid: 0 });
  const dir = await fs.mkdir(fs.rootIno, 'd', { mode: 0o755 });
  const baseline = store.objectCount();
  const file = await fs.create(dir.ino, 'f', { mode: 0o644 });
  await fs.write(file.ino, 0, Buffer.from('still here'));
  await fs.setxattr(file.ino, 'user.k', Buffer.from('v'));
  await fs.retain(file.ino);
  await fs.retain(file.ino);
  await fs.unlink(dir.ino, 'f');
  assert.equal((await fs.getattr(file.ino)).nlink, 0);
  assert.equal((await fs.read(file.ino, 0, 100)).toString(), 'still here');
  await fs.write(file.ino, 10, Buffer.from('!'));
  assert.equal((await fs.readdir(dir.ino, 0n, 10)).entries.length, 0);
  await assert.rejects(fs.link(file.ino, fs.rootIno, 'back'), (e: unknown) => isCairnError(e, 'ENOENT'), 'no link back in, as linkat(2)');
  await fs.rmdir(fs.rootIno, 'd'); // its directory is empty: removable
  await fs.release(file.ino);
  assert.equal((await fs.read(file.ino, 0, 100)).toString(), 'still here!', 'one retain is left');
  await fs.release(file.ino);
  await assert.rejects(fs.getattr(file.ino), (e: unknown) => isCairnError(e, 'ENOENT'));
  assert.equal(store.objectCount(), baseline - 1, 'the file and its xattr object are freed (and the directory)');
  await assert.rejects(fs.release(file.ino), (e: unknown) => isCairnError(e, 'EINVAL'));
  // A crash while open: the unlinked set frees it when the file system is opened again.
  const g = await fs.create(fs.rootIno, 'g', { mode: 0o644 });
  await fs.retain(g.ino);
  await fs.rename(fs.rootIno, 'g', fs.rootIno, 'g'); // a no-op rename keeps it
  const h = await fs.create(fs.rootIno, 'h', { mode: 0o644 });
  await fs.rename(fs.rootIno, 'h', fs.rootIno, 'g'); // rename over the open file drops its last link
  assert.equal((await fs.getattr(g.ino)).nlink, 0);
  const reopened = await Filesystem.open(store);
  await assert.rejects(reopened.getattr(g.ino), (e: unknown) => isCairnError(e, 'ENOENT'));
  assert.equal((await reopened.lookup(reopened.rootIno, 'g')).ino, h.ino);
});

test('releasing a file that still has links changes nothing, even while a mutation holds the lock', async () => {
  const store = new MemoryObjectStore();
  const fs = await Filesystem.create(store, { uid: 0, gid: 0 });
  const file = await fs.create(fs.rootIno, 'f', { mode: 0o644 });
  await fs.retain(file.ino);
  const objects = store.objectCount();
  // A release that went through the lock would queue behind this slow write; one that returns at once does not.
  let writeDone = false;
  const slowWrite = fs.write(file.ino, 0, Buffer.alloc(1 << 20, 7)).then(() => (writeDone = true));
  await fs.release(file.ino);
  assert.equal(writeDone, false, 'release returned before the write queued ahead of it');
  await slowWrite;
  assert.equal(store.objectCount(), objects);
  assert.equal((await fs.getattr(file.ino)).sizeBytes, 1 << 20);
});

test('the name cache never answers for a name that was removed, rebound or whose directory or file was replaced (seeded, concurrent)', async () => {
  for (const seed of [testSeed(), 1, 2, 3]) {
    const random = prng(seed);
    const store = new MemoryObjectStore();
    const fs = await Filesystem.create(store, { uid: 0, gid: 0 });
    const dirNames = ['a', 'b', 'c'];
    const fileNames = ['f0', 'f1', 'f2', 'f3', 'f4', 'f5'];
    const pick = <T>(list: T[]): T => list[Math.floor(random() * list.length)] as T;
    const ignore = (e: unknown) => {
      if (!isCairnError(e)) throw e;
    };
    const dirIno = async (name: string): Promise<number | undefined> => fs.lookup(fs.rootIno, name).then((st) => st.ino, () => undefined);
    for (let round = 0; round < 150; round++) {
      // Several operations at once, lookups among them, as FUSE requests in flight are.
      const ops: Promise<unknown>[] = [];
      for (let k = 0; k < 8; k++) {
        const r = random();
        const d = pick(dirNames);
        const f = pick(fileNames);
        ops.push((async () => {
          const parent = await dirIno(d);
          if (r < 0.1) return fs.mkdir(fs.rootIno, d, { mode: 0o755 });
          // rmdir empties first: unlinks every file, then removes (the inode number may come back for a new directory)
          if (r < 0.15 && parent !== undefined) {
            for (const name of fileNames) await fs.unlink(parent, name).catch(ignore);
            return fs.rmdir(fs.rootIno, d);
          }
          if (parent === undefined) return undefined;
          if (r < 0.4) return fs.create(parent, f, { mode: 0o644 });
          if (r < 0.55) return fs.unlink(parent, f);
          if (r < 0.7) {
            const other = await dirIno(pick(dirNames));
            return other === undefined ? undefined : fs.rename(parent, f, other, pick(fileNames));
          }
          if (r < 0.75) {
            const target = await fs.lookup(parent, f);
            return fs.link(target.ino, parent, pick(fileNames));
          }
          return fs.lookup(parent, f);
        })().catch(ignore));
      }
      await Promise.all(ops);
      // Every lookup agrees with the directory's own listing (the kv, which the cache sits in front of).
      for (const d of dirNames) {
        const parent = await dirIno(d);
        if (parent === undefined) continue;
        const listed = new Map((await fs.readdir(parent, 0n, 100)).entries.map((e) => [e.name, e.ino]));
        for (const f of fileNames) {
          const looked: number | undefined = await fs.lookup(parent, f).then((st) => st.ino, () => undefined);
          assert.equal(looked, listed.get(f), `seed ${seed} round ${round}: ${d}/${f}`);
        }
      }
    }
  }
});

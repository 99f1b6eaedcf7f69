/**
 * SnapshotNamespace on its own (no kernel): numbering, listing freshness, refusals and staleness, over a
 * real pool's dataset and its snapshots. The same behaviour through a real mount is in
 * snapshot-mount.test.ts.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPool, type PoolHandle } from '../pool/index.js';
import type { FileSystemApi, Stat } from '../fs/types.js';
import { isCairnError, type ErrorCode } from '../util/errors.js';
import { E, ErrnoReply } from './errno.js';
import { FS_INDEX_LIMIT, INODE_SPAN, SnapshotNamespace, type SnapshotProvider } from './snapshot-dir.js';

const MiB = 1024 * 1024;
const DATASET = 'snapns/home';

function code(c: ErrorCode): (e: unknown) => boolean {
  return (e) => isCairnError(e, c);
}

function isStale(e: unknown): boolean {
  return e instanceof ErrnoReply && e.errnoNumber === E.ESTALE;
}

async function put(fs: FileSystemApi, name: string, text: string, mode = 0o644): Promise<Stat> {
  const st = await fs.create(fs.rootIno, name, { mode });
  await fs.write(st.ino, 0, Buffer.from(text));
  return st;
}

async function text(fs: FileSystemApi, ino: number): Promise<string> {
  const st = await fs.getattr(ino);
  return (await fs.read(ino, 0, st.sizeBytes)).toString();
}

async function names(fs: FileSystemApi, ino: number, limit = 64): Promise<string[]> {
  const out: string[] = [];
  let cursor: bigint | null = 0n;
  while (cursor !== null) {
    const page: { entries: { name: string }[]; cursor: bigint | null } = await fs.readdir(ino, cursor, limit);
    for (const e of page.entries) out.push(e.name);
    cursor = page.cursor;
  }
  return out;
}

describe('SnapshotNamespace over a pool dataset', () => {
  let dir = '';
  let pool: PoolHandle;
  let live: FileSystemApi;
  let listCalls = 0;
  let clockMs = 1_000_000;
  const provider: SnapshotProvider = {
    list: () => {
      listCalls++;
      return pool.datasets
        .list()
        .filter((e) => e.name.startsWith(`${DATASET}@`))
        .map((e) => e.name.slice(DATASET.length + 1));
    },
    open: (s) => pool.datasets.open(`${DATASET}@${s}`),
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-snapns-'));
    pool = await createPool({ name: 'snapns', vdevSpec: [join(dir, 'dev.img')], createSizeBytes: 128 * MiB, cacheSizeBytes: 8 * MiB });
    await pool.datasets.create(DATASET);
    live = await pool.datasets.open(DATASET);
    await put(live, 'a.txt', 'old', 0o640);
    await live.mkdir(live.rootIno, 'sub', { mode: 0o755 });
    await pool.datasets.snapshot(`${DATASET}@one`);
  });

  after(async () => {
    try {
      await pool.export();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('serves snapshots under .cairn/snapshot with numbers apart from the live ones; hidden from the root listing', async () => {
    const ns = new SnapshotNamespace(live, provider, { nowMs: () => clockMs });
    assert.equal(ns.rootIno, live.rootIno);
    assert.deepEqual((await names(ns, ns.rootIno)).sort(), ['a.txt', 'sub']);
    const control = await ns.lookup(ns.rootIno, '.cairn');
    assert.equal(control.kind, 'directory');
    assert.ok(control.ino >= INODE_SPAN);
    assert.deepEqual(await names(ns, control.ino), ['snapshot']);
    const snapdir = await ns.lookup(control.ino, 'snapshot');
    assert.deepEqual(await names(ns, snapdir.ino), ['one']);
    const root = await ns.lookup(snapdir.ino, 'one');
    assert.equal(root.kind, 'directory');
    const liveFile = await ns.lookup(ns.rootIno, 'a.txt');
    await live.write(liveFile.ino, 0, Buffer.from('new'));
    const snapFile = await ns.lookup(root.ino, 'a.txt');
    assert.equal(await text(ns, snapFile.ino), 'old');
    await assert.rejects(ns.lookup(root.ino, 'missing'), code('ENOENT'), 'a missing name in a snapshot is ENOENT, not ESTALE');
    assert.equal(await text(ns, liveFile.ino), 'new');
    assert.notEqual(snapFile.ino, liveFile.ino);
    assert.equal(snapFile.ino % INODE_SPAN, liveFile.ino, 'the inner number is the object id');
    assert.equal(snapFile.mode & 0o7777, 0o640);
    assert.deepEqual((await ns.getattr(snapFile.ino)).ino, snapFile.ino);
    assert.deepEqual((await names(ns, root.ino)).sort(), ['a.txt', 'sub']);
    const listed = (await ns.readdir(root.ino, 0n, 64)).entries.find((e) => e.name === 'a.txt');
    assert.equal(listed?.ino, snapFile.ino, 'readdir and lookup agree on numbers');
    // a real entry named .cairn in the live root is shadowed, never listed twice
    await live.mkdir(live.rootIno, '.cairn', { mode: 0o755 });
    assert.ok(!(await names(ns, ns.rootIno)).includes('.cairn'));
    assert.equal((await ns.lookup(ns.rootIno, '.cairn')).ino, control.ino);
    await live.rmdir(live.rootIno, '.cairn');
  });

  it('snapdir=visible lists .cairn first, whatever the page size', async () => {
    const ns = new SnapshotNamespace(live, provider, { snapdir: 'visible' });
    for (const limit of [1, 2, 64]) assert.deepEqual((await names(ns, ns.rootIno, limit)).sort(), ['.cairn', 'a.txt', 'sub'], `limit ${limit}`);
    assert.equal((await names(ns, ns.rootIno, 1))[0], '.cairn');
  });

  it('asks the provider at most once per cache period for listings, and again on a lookup miss', async () => {
    const ns = new SnapshotNamespace(live, provider, { nowMs: () => clockMs, listCacheMs: 1000 });
    const snapdir = await ns.lookup((await ns.lookup(ns.rootIno, '.cairn')).ino, 'snapshot');
    listCalls = 0;
    await names(ns, snapdir.ino);
    await names(ns, snapdir.ino);
    assert.equal(listCalls, 1);
    await pool.datasets.snapshot(`${DATASET}@two`);
    assert.deepEqual(await names(ns, snapdir.ino), ['one'], 'cached listing within the period');
    const two = await ns.lookup(snapdir.ino, 'two'); // a miss asks again
    assert.equal(listCalls, 2);
    assert.deepEqual(await names(ns, snapdir.ino), ['one', 'two']);
    clockMs += 1000;
    await pool.datasets.destroy(`${DATASET}@two`);
    assert.deepEqual(await names(ns, snapdir.ino), ['one'], 'a destroyed snapshot leaves the listing after the period');
    await assert.rejects(ns.lookup(snapdir.ino, 'two'), code('ENOENT'));
    await assert.rejects(ns.getattr(two.ino), isStale, 'nodes of a destroyed snapshot are stale');
    await assert.rejects(ns.lookup(snapdir.ino, 'no/such'), code('ENOENT'));
  });

  it('a snapshot destroyed and taken again under the same name gets new numbers; old open files read ESTALE', async () => {
    const ns = new SnapshotNamespace(live, provider, { nowMs: () => clockMs });
    const snapdir = await ns.lookup((await ns.lookup(ns.rootIno, '.cairn')).ino, 'snapshot');
    await pool.datasets.snapshot(`${DATASET}@again`);
    const first = await ns.lookup(await ns.lookup(snapdir.ino, 'again').then((s) => s.ino), 'a.txt');
    assert.equal(await text(ns, first.ino), 'new');
    await pool.datasets.destroy(`${DATASET}@again`);
    await assert.rejects(ns.readInto(first.ino, 0, Buffer.alloc(3)), isStale);
    await assert.rejects(ns.readdir(first.ino - (first.ino % INODE_SPAN), 0n, 8), isStale);
    const a = (await ns.lookup(live.rootIno, 'a.txt')).ino;
    await live.write(a, 0, Buffer.from('NEW'));
    await pool.datasets.snapshot(`${DATASET}@again`);
    const second = await ns.lookup(await ns.lookup(snapdir.ino, 'again').then((s) => s.ino), 'a.txt');
    assert.notEqual(Math.floor(second.ino / INODE_SPAN), Math.floor(first.ino / INODE_SPAN));
    assert.equal(await text(ns, second.ino), 'NEW');
    await assert.rejects(ns.getattr(first.ino), isStale);
    await pool.datasets.destroy(`${DATASET}@again`);
  });

  it('refuses every change under .cairn (EROFS), and creating, removing or renaming .cairn itself', async () => {
    const ns = new SnapshotNamespace(live, provider);
    const control = await ns.lookup(ns.rootIno, '.cairn');
    const snapdir = await ns.lookup(control.ino, 'snapshot');
    const root = await ns.lookup(snapdir.ino, 'one');
    const file = await ns.lookup(root.ino, 'a.txt');
    const liveFile = await ns.lookup(ns.rootIno, 'a.txt');
    const m = { mode: 0o644 };
    await assert.rejects(ns.write(file.ino, 0, Buffer.from('x')), code('EROFS'));
    await assert.rejects(ns.setattr(file.ino, { mode: 0o600 }), code('EROFS'));
    await assert.rejects(ns.create(root.ino, 'n', m), code('EROFS'));
    await assert.rejects(ns.mkdir(snapdir.ino, 'newsnap', m), code('EROFS'));
    await assert.rejects(ns.rmdir(snapdir.ino, 'one'), code('EROFS'));
    await assert.rejects(ns.unlink(root.ino, 'a.txt'), code('EROFS'));
    await assert.rejects(ns.symlink(root.ino, 's', 't'), code('EROFS'));
    await assert.rejects(ns.rename(root.ino, 'a.txt', root.ino, 'b'), code('EROFS'));
    await assert.rejects(ns.setxattr(file.ino, 'user.x', Buffer.from('1')), code('EROFS'));
    await assert.rejects(ns.removexattr(control.ino, 'user.x'), code('EROFS'));
    await assert.rejects(ns.rename(root.ino, 'a.txt', ns.rootIno, 'b'), code('EXDEV'));
    await assert.rejects(ns.link(file.ino, ns.rootIno, 'b'), code('EXDEV'));
    await assert.rejects(ns.link(liveFile.ino, root.ino, 'b'), code('EROFS'));
    await assert.rejects(ns.mkdir(ns.rootIno, '.cairn', m), code('EEXIST'));
    await assert.rejects(ns.create(ns.rootIno, '.cairn', m), code('EEXIST'));
    await assert.rejects(ns.rmdir(ns.rootIno, '.cairn'), code('EBUSY'));
    await assert.rejects(ns.rename(ns.rootIno, '.cairn', ns.rootIno, 'x'), code('EBUSY'));
    await assert.rejects(ns.rename(ns.rootIno, 'a.txt', ns.rootIno, '.cairn'), code('EBUSY'));
    assert.ok(ns.isReadonlyIno(file.ino) && ns.isReadonlyIno(control.ino) && !ns.isReadonlyIno(liveFile.ino));
    assert.equal(await text(ns, file.ino), 'old', 'nothing changed');
  });

  it('reuses the index of a gone snapshot when all 2^13 are taken', async () => {
    // a provider of many tiny fake file systems: only numbering is under test here
    const existing = new Set<string>();
    const fake = (name: string): FileSystemApi => ({ rootIno: 7, getattr: async () => ({ ...rootStat, ino: 7 }), name }) as unknown as FileSystemApi;
    const rootStat = await live.getattr(live.rootIno);
    const systems = new Map<string, FileSystemApi>();
    const many: SnapshotProvider = {
      list: () => [...existing],
      open: async (s) => {
        if (!existing.has(s)) throw new Error(`no ${s}`);
        let fs = systems.get(s);
        if (!fs) systems.set(s, (fs = fake(s)));
        return fs;
      },
    };
    let nowMs = 0;
    const ns = new SnapshotNamespace(live, many, { listCacheMs: 1000, nowMs: () => nowMs });
    const snapdir = await ns.lookup((await ns.lookup(ns.rootIno, '.cairn')).ino, 'snapshot');
    const capacity = FS_INDEX_LIMIT - 2;
    const seen = new Set<number>();
    for (let i = 0; i < capacity; i++) existing.add(`s${i}`);
    for (let i = 0; i < capacity; i++) {
      const st = await ns.lookup(snapdir.ino, `s${i}`);
      assert.ok(Number.isSafeInteger(st.ino));
      seen.add(st.ino);
    }
    assert.equal(seen.size, capacity);
    existing.add('extra');
    await assert.rejects(ns.lookup(snapdir.ino, 'extra'), code('EBUSY'), 'no index free while all snapshots exist');
    existing.delete('s5');
    nowMs += 1000;
    const reused = await ns.lookup(snapdir.ino, 'extra');
    assert.equal(reused.ino, [...seen][5], 'the gone snapshot index is reused');
    assert.ok(reused.ino < 2 ** 53);
  });
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPool, importPool } from '../pool/index.js';
import type { DeviceOpenFn } from '../pool/api.js';
import type { Pool } from '../pool/pool.js';
import type { FileSystemApi } from '../fs/types.js';
import { FaultyDevice } from '../testing/faulty-device.js';
import { Random } from '../testing/random.js';
import { isCairnError } from '../util/errors.js';
import { ALLOCATABLE_START_BYTES } from '../vdev/layout.js';

const MiB = 1024 * 1024;

interface Rig {
  pool: Pool;
  devices: Map<string, FaultyDevice>;
  reimport(): Promise<Pool>;
}

async function makePool(name: string, seed: number): Promise<Rig> {
  const devices = new Map<string, FaultyDevice>();
  const paths = [`/ds/${name}/a`, `/ds/${name}/b`];
  for (const p of paths) devices.set(p, new FaultyDevice({ sizeBytes: 128 * MiB, seed: seed++, path: p }));
  const openDevice: DeviceOpenFn = async (path) => {
    const d = devices.get(path);
    if (!d) throw new Error(`no device ${path}`);
    return d;
  };
  const pool = (await createPool({ name, vdevSpec: ['mirror', ...paths], openDevice, cacheSizeBytes: 8 * MiB })) as unknown as Pool;
  const rig: Rig = {
    pool,
    devices,
    reimport: async () => {
      rig.pool = (await importPool({ searchPaths: paths, openDevice, cacheSizeBytes: 8 * MiB })) as unknown as Pool;
      return rig.pool;
    },
  };
  return rig;
}

async function put(fs: FileSystemApi, name: string, data: Buffer): Promise<void> {
  let ino: number;
  try {
    ino = (await fs.lookup(fs.rootIno, name)).ino;
    await fs.setattr(ino, { sizeBytes: 0 });
  } catch (e) {
    if (!isCairnError(e, 'ENOENT')) throw e;
    ino = (await fs.create(fs.rootIno, name, { mode: 0o644 })).ino;
  }
  for (let at = 0; at < data.length; at += MiB) await fs.write(ino, at, data.subarray(at, Math.min(data.length, at + MiB)));
}

async function get(fs: FileSystemApi, name: string): Promise<Buffer> {
  const st = await fs.lookup(fs.rootIno, name);
  return fs.read(st.ino, 0, st.sizeBytes);
}

async function assertSpaceExact(pool: Pool, when: string): Promise<void> {
  const s = await pool.spaceCheck();
  assert.equal(s.allocatedBytes, s.reachableBytes + s.deferredBytes, `${when}: allocated ${s.allocatedBytes} != reachable ${s.reachableBytes} + deferred ${s.deferredBytes}`);
}

/** Lets deferred frees come back (DEFER_TXGS txgs must pass). */
async function settle(pool: Pool): Promise<void> {
  for (let i = 0; i < 4; i++) {
    await pool.logHistory('settle');
    await pool.sync();
  }
}

function code(c: string): (e: unknown) => boolean {
  return (e) => isCairnError(e, c as never);
}

test('datasets: nested create, -p, list, destroy frees the tree and refuses with children or snapshots', async () => {
  const rig = await makePool('nest', 1);
  const pool = rig.pool;
  await settle(pool);
  const free0 = pool.status().space.freeBytes;
  await pool.datasets.create('nest/home');
  await assert.rejects(pool.datasets.create('nest/a/b'), code('ENOENT'));
  await pool.datasets.create('nest/a/b', { parents: true });
  await assert.rejects(pool.datasets.create('nest/home'), code('EEXIST'));
  assert.deepEqual(pool.datasets.list().map((e) => e.name), ['nest', 'nest/a', 'nest/a/b', 'nest/home']);
  const home = await pool.datasets.open('nest/home');
  const data = new Random(5).bytes(3 * MiB);
  await put(home, 'big', data);
  await put(pool.fs, 'rootfile', Buffer.from('root'));
  await assertSpaceExact(pool, 'after writes');
  await assert.rejects(pool.datasets.destroy('nest/a'), (e: unknown) => isCairnError(e, 'EBUSY') && /nest\/a\/b/.test((e as Error).message));
  await pool.datasets.snapshot('nest/a/b@s');
  await assert.rejects(pool.datasets.destroy('nest/a/b'), (e: unknown) => isCairnError(e, 'EBUSY') && /nest\/a\/b@s/.test((e as Error).message));
  await pool.datasets.destroy('nest/a/b@s');
  await pool.datasets.destroy('nest/a/b');
  await pool.datasets.destroy('nest/a');
  await pool.sync();
  await pool.export();
  const again = await rig.reimport();
  assert.deepEqual(again.datasets.list().map((e) => e.name), ['nest', 'nest/home']);
  assert.ok((await get(await again.datasets.open('nest/home'), 'big')).equals(data));
  assert.equal((await get(again.fs, 'rootfile')).toString(), 'root');
  await assertSpaceExact(again, 'after import');
  const stale = await again.datasets.open('nest/home');
  await again.datasets.destroy('nest/home');
  await assert.rejects(stale.create(stale.rootIno, 'late', { mode: 0o644 }), code('ENOENT'));
  await assert.rejects(again.datasets.open('nest/home'), code('ENOENT'));
  await again.fs.unlink(again.fs.rootIno, 'rootfile');
  await settle(again);
  await assertSpaceExact(again, 'after destroy');
  const free1 = again.status().space.freeBytes;
  assert.ok(Math.abs(free1 - free0) < 256 * 1024, `destroyed dataset's space returns (before ${free0}, after ${free1})`);
  await again.export();
});

test('snapshots: old data stays readable after overwrite and delete, across export/import; views are read-only', async () => {
  const rig = await makePool('snap', 10);
  let pool = rig.pool;
  await pool.datasets.create('snap/home');
  const rnd = new Random(11);
  const v1 = rnd.bytes(2 * MiB + 17);
  const keep = rnd.bytes(100_000);
  let home = await pool.datasets.open('snap/home');
  await put(home, 'f', v1);
  await put(home, 'gone', keep);
  await pool.datasets.snapshot('snap/home@monday');
  const v2 = rnd.bytes(MiB);
  await put(home, 'f', v2);
  await home.unlink(home.rootIno, 'gone');
  let snap = await pool.datasets.open('snap/home@monday');
  const atime = (await snap.lookup(snap.rootIno, 'f')).atimeNs;
  assert.ok((await get(snap, 'f')).equals(v1), 'snapshot reads the old contents');
  assert.ok((await get(snap, 'gone')).equals(keep), 'snapshot still has the deleted file');
  assert.ok((await get(home, 'f')).equals(v2));
  await assert.rejects(snap.create(snap.rootIno, 'x', { mode: 0o644 }), code('EROFS'));
  await assert.rejects(snap.write((await snap.lookup(snap.rootIno, 'f')).ino, 0, Buffer.from('x')), code('EROFS'));
  await pool.sync();
  assert.equal(pool.gate.dirtyBytes, 0, 'reading a snapshot dirties nothing (no atime update, no unsynced dirty data)');
  assert.equal((await snap.lookup(snap.rootIno, 'f')).atimeNs, atime, 'snapshot inodes do not change');
  await assertSpaceExact(pool, 'after overwrite');
  const space = await pool.datasets.space('snap/home');
  assert.ok(space.usedBySnapshotsBytes >= 2 * MiB + 100_000, `usedbysnapshots counts the dead list (${space.usedBySnapshotsBytes})`);
  assert.ok(space.writtenBytes >= MiB && space.writtenBytes < 2 * MiB, `written since the snapshot (${space.writtenBytes})`);
  const snapSpace = await pool.datasets.space('snap/home@monday');
  assert.equal(snapSpace.usedBytes, space.usedBySnapshotsBytes, 'one snapshot: its used is all of usedbysnapshots');
  assert.ok(snapSpace.referencedBytes >= 2 * MiB + 100_000);
  await pool.export();
  pool = await rig.reimport();
  snap = await pool.datasets.open('snap/home@monday');
  home = await pool.datasets.open('snap/home');
  assert.ok((await get(snap, 'f')).equals(v1), 'snapshot survives export/import');
  assert.ok((await get(snap, 'gone')).equals(keep));
  assert.ok((await get(home, 'f')).equals(v2));
  await assert.rejects(home.lookup(home.rootIno, 'gone'), code('ENOENT'));
  await assertSpaceExact(pool, 'after import');
  await pool.export();
});

test('destroy snapshot: frees exactly the blocks only it referenced; chain of three', async () => {
  const rig = await makePool('dsnap', 20);
  const pool = rig.pool;
  await pool.datasets.create('dsnap/d');
  const fs = await pool.datasets.open('dsnap/d');
  const rnd = new Random(21);
  const a = rnd.bytes(2 * MiB);
  await put(fs, 'a', a);
  await pool.datasets.snapshot('dsnap/d@1');
  const b = rnd.bytes(2 * MiB);
  await put(fs, 'a', b); // a's blocks: only @1
  await pool.datasets.snapshot('dsnap/d@2');
  const c = rnd.bytes(MiB);
  await put(fs, 'a', c); // b's blocks: only @2
  await pool.datasets.snapshot('dsnap/d@3');
  await assertSpaceExact(pool, 'three snapshots');
  await settle(pool);
  const used2 = (await pool.datasets.space('dsnap/d@2')).usedBytes;
  assert.ok(used2 >= 2 * MiB && used2 < 2 * MiB + 256 * 1024, `@2 uniquely holds b (${used2})`);
  const free0 = pool.status().space.freeBytes;
  await pool.datasets.destroy('dsnap/d@2');
  await assertSpaceExact(pool, 'after destroying the middle snapshot');
  await settle(pool);
  const free1 = pool.status().space.freeBytes;
  assert.ok(free1 - free0 >= used2 - 64 * 1024 && free1 - free0 <= used2 + 64 * 1024, `freed ${free1 - free0}, expected about ${used2}`);
  assert.ok((await get(await pool.datasets.open('dsnap/d@1'), 'a')).equals(a));
  assert.ok((await get(await pool.datasets.open('dsnap/d@3'), 'a')).equals(c));
  const used1 = (await pool.datasets.space('dsnap/d@1')).usedBytes;
  assert.ok(used1 >= 2 * MiB, `@1 still holds a (${used1})`);
  const staleView = await pool.datasets.open('dsnap/d@1');
  await pool.datasets.destroy('dsnap/d@1');
  await assert.rejects(staleView.lookup(staleView.rootIno, 'a'), code('ENOENT'));
  await pool.datasets.destroy('dsnap/d@3');
  await assertSpaceExact(pool, 'all snapshots gone');
  assert.equal((await pool.datasets.space('dsnap/d')).usedBySnapshotsBytes, 0);
  assert.ok((await get(fs, 'a')).equals(c));
  await pool.export();
});

test('clone: shares every block until written, diverges, and pins its origin snapshot', async () => {
  const rig = await makePool('cl', 30);
  const pool = rig.pool;
  await pool.datasets.create('cl/src');
  const src = await pool.datasets.open('cl/src');
  const rnd = new Random(31);
  const data = rnd.bytes(4 * MiB);
  await put(src, 'f', data);
  await pool.datasets.snapshot('cl/src@s');
  await settle(pool);
  const alloc0 = pool.status().space.allocatedBytes;
  await pool.datasets.clone('cl/src@s', 'cl/fork');
  await settle(pool);
  const alloc1 = pool.status().space.allocatedBytes;
  assert.ok(alloc1 - alloc0 < 128 * 1024, `a clone allocates no data (${alloc1 - alloc0} bytes)`);
  const fork = await pool.datasets.open('cl/fork');
  assert.ok((await get(fork, 'f')).equals(data), 'clone reads the snapshot data');
  assert.ok((await pool.datasets.space('cl/fork')).usedBytes < 64 * 1024);
  const patch = rnd.bytes(MiB);
  await put(fork, 'g', patch);
  await fork.write((await fork.lookup(fork.rootIno, 'f')).ino, 0, patch);
  assert.ok((await get(src, 'f')).equals(data), 'origin unchanged');
  const forked = await get(fork, 'f');
  assert.ok(forked.subarray(0, MiB).equals(patch) && forked.subarray(MiB).equals(data.subarray(MiB)));
  await assertSpaceExact(pool, 'clone written');
  await assert.rejects(pool.datasets.destroy('cl/src@s'), (e: unknown) => isCairnError(e, 'EBUSY') && /cl\/fork/.test((e as Error).message));
  await pool.export();
  const again = await rig.reimport();
  assert.ok((await get(await again.datasets.open('cl/fork'), 'g')).equals(patch));
  await assert.rejects(again.datasets.destroy('cl/src@s'), code('EBUSY'));
  await again.datasets.destroy('cl/fork');
  await assertSpaceExact(again, 'clone destroyed');
  await again.datasets.destroy('cl/src@s');
  await assertSpaceExact(again, 'origin destroyed');
  assert.ok((await get(await again.datasets.open('cl/src'), 'f')).equals(data));
  await again.export();
});

test('rollback: restores the newest snapshot; refuses when newer snapshots exist', async () => {
  const rig = await makePool('rb', 40);
  const pool = rig.pool;
  const rnd = new Random(41);
  const v1 = rnd.bytes(MiB);
  await put(pool.fs, 'f', v1);
  await pool.datasets.snapshot('rb@one');
  await put(pool.fs, 'f', rnd.bytes(2 * MiB));
  await put(pool.fs, 'new', rnd.bytes(3000));
  await pool.datasets.snapshot('rb@two');
  await put(pool.fs, 'later', rnd.bytes(5000));
  await assert.rejects(pool.datasets.rollback('rb@one'), (e: unknown) => isCairnError(e, 'EEXIST') && /rb@two/.test((e as Error).message));
  await pool.datasets.destroy('rb@two');
  const before = pool.fs;
  await pool.datasets.rollback('rb@one');
  await assert.rejects(before.lookup(before.rootIno, 'f'), code('ENOENT'));
  assert.ok((await get(pool.fs, 'f')).equals(v1), 'root file system is the snapshot again');
  await assert.rejects(pool.fs.lookup(pool.fs.rootIno, 'new'), code('ENOENT'));
  await assert.rejects(pool.fs.lookup(pool.fs.rootIno, 'later'), code('ENOENT'));
  await assertSpaceExact(pool, 'after rollback');
  // The head's dead list emptied: only metadata rewritten since (file system open) is held by @one.
  assert.ok((await pool.datasets.space('rb')).usedBySnapshotsBytes < 64 * 1024);
  const v3 = rnd.bytes(MiB);
  await put(pool.fs, 'f', v3);
  assert.ok((await get(await pool.datasets.open('rb@one'), 'f')).equals(v1));
  await pool.export();
  const again = await rig.reimport();
  assert.ok((await get(again.fs, 'f')).equals(v3));
  assert.ok((await get(await again.datasets.open('rb@one'), 'f')).equals(v1));
  await assertSpaceExact(again, 'after import');
  await again.export();
});

test('snapshot cost does not grow with data: same block writes for 1 file and 2000 files', async () => {
  const rig = await makePool('o1', 50);
  const pool = rig.pool;
  await pool.datasets.create('o1/small');
  await pool.datasets.create('o1/large');
  await put(await pool.datasets.open('o1/small'), 'f0', Buffer.from('x'));
  const large = await pool.datasets.open('o1/large');
  for (let i = 0; i < 2000; i++) await put(large, `f${i}`, Buffer.from(`file ${i}`));
  const cost = async (name: string): Promise<number> => {
    await settle(pool);
    const before = pool.iostat().writeOps;
    await pool.datasets.snapshot(name);
    return pool.iostat().writeOps - before;
  };
  // Warm up both (first snapshot of each creates its snapshots kv).
  await cost('o1/small@warm');
  await cost('o1/large@warm');
  const small = await cost('o1/small@s');
  const largeCost = await cost('o1/large@s');
  assert.ok(small > 0, 'a snapshot commits a txg');
  assert.ok(Math.abs(small - largeCost) <= 6, `snapshot writes: 1 file ${small}, 2000 files ${largeCost}`);
  await assertSpaceExact(pool, 'after snapshots');
  await pool.export();
});

test('crash right after snapshot and after destroy: import is consistent and exact', async () => {
  const rig = await makePool('crash', 60);
  let pool = rig.pool;
  await pool.datasets.create('crash/d');
  const rnd = new Random(61);
  const v1 = rnd.bytes(MiB);
  await put(await pool.datasets.open('crash/d'), 'f', v1);
  await pool.datasets.snapshot('crash/d@s');
  await put(await pool.datasets.open('crash/d'), 'f', rnd.bytes(MiB)); // not synced: lost in the crash
  for (const d of rig.devices.values()) d.powerCut();
  await pool.abandon();
  pool = await rig.reimport();
  assert.ok((await get(await pool.datasets.open('crash/d@s'), 'f')).equals(v1));
  assert.ok((await get(await pool.datasets.open('crash/d'), 'f')).equals(v1));
  await assertSpaceExact(pool, 'after crash following snapshot');
  const v2 = rnd.bytes(MiB);
  await put(await pool.datasets.open('crash/d'), 'f', v2);
  await pool.sync();
  await pool.datasets.destroy('crash/d@s');
  for (const d of rig.devices.values()) d.powerCut();
  await pool.abandon();
  pool = await rig.reimport();
  assert.deepEqual(pool.datasets.list().map((e) => e.name), ['crash', 'crash/d']);
  assert.ok((await get(await pool.datasets.open('crash/d'), 'f')).equals(v2));
  await assertSpaceExact(pool, 'after crash following destroy');
  await pool.datasets.destroy('crash/d');
  for (const d of rig.devices.values()) d.powerCut();
  await pool.abandon();
  pool = await rig.reimport();
  assert.deepEqual(pool.datasets.list().map((e) => e.name), ['crash']);
  await assertSpaceExact(pool, 'after crash following dataset destroy');
  await pool.export();
});

test('a version 1 root dataset record opens as "no snapshots" and gets space figures', async () => {
  const rig = await makePool('v1', 70);
  let pool = rig.pool;
  const data = new Random(71).bytes(MiB);
  await put(pool.fs, 'f', data);
  await pool.sync();
  const id = await pool.mos.datasetObject('root_dataset');
  const old = await pool.mos.readDataset(id);
  await pool.hold(() => pool.mos.writeDataset(id, old)); // the version 1 encoder
  await pool.sync();
  assert.equal((await pool.mos.os.getBonus(id)).readUInt32LE(4), 1, 'record is version 1 on disk');
  for (const d of rig.devices.values()) d.powerCut();
  await pool.abandon();
  pool = await rig.reimport();
  assert.ok((await get(pool.fs, 'f')).equals(data));
  assert.ok((await pool.datasets.space('v1')).referencedBytes >= MiB);
  await pool.datasets.snapshot('v1@s');
  await put(pool.fs, 'f', Buffer.from('new'));
  assert.ok((await get(await pool.datasets.open('v1@s'), 'f')).equals(data));
  await assertSpaceExact(pool, 'upgraded');
  await pool.export();
});

test('scrub covers every snapshot and clone once and heals their blocks', async () => {
  const rig = await makePool('scrub', 80);
  const pool = rig.pool;
  await pool.datasets.create('scrub/d');
  const fs = await pool.datasets.open('scrub/d');
  const rnd = new Random(81);
  const old = rnd.bytes(2 * MiB);
  await put(fs, 'f', old);
  await pool.datasets.snapshot('scrub/d@s');
  await pool.datasets.clone('scrub/d@s', 'scrub/c');
  await put(await pool.datasets.open('scrub/c'), 'g', rnd.bytes(MiB));
  await put(fs, 'f', rnd.bytes(MiB)); // the old blocks are now the snapshot's (and the clone's) only
  const { reachableBytes } = await pool.spaceCheck();
  await pool.scrub({ wait: true });
  assert.equal(pool.status().scan?.examinedBytes, reachableBytes, 'scrub examines every reachable block exactly once');
  // Ruin one side of the mirror where the data lives; scrub must rebuild the snapshot's blocks from the other.
  const [pathA, pathB] = [...rig.devices.keys()] as [string, string];
  (rig.devices.get(pathB) as FaultyDevice).corrupt(ALLOCATABLE_START_BYTES, 48 * MiB);
  await pool.scrub({ wait: true });
  const scan = pool.status().scan;
  assert.equal(scan?.errors, 0);
  assert.ok((scan?.repairedBytes ?? 0) >= 2 * MiB, `repaired ${scan?.repairedBytes}`);
  (rig.devices.get(pathA) as FaultyDevice).die();
  pool.arc.clear();
  assert.ok((await get(await pool.datasets.open('scrub/d@s'), 'f')).equals(old), 'snapshot blocks were healed on the surviving side');
  await pool.abandon();
});

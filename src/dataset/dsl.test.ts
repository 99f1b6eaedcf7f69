import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FaultyDevice } from '../testing/faulty-device.js';
import { Random } from '../testing/random.js';
import { isCairnError } from '../util/errors.js';
import { ALLOCATABLE_START_BYTES } from '../vdev/layout.js';
import { assertSpaceExact, code, get, makePool, MiB, put, settle } from './test-rig.js';

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

test('snapshot, clone and rollback cost does not grow with data: same block I/O for 1 file and 2000 files', async () => {
  const rig = await makePool('o1', 50);
  const pool = rig.pool;
  await pool.datasets.create('o1/small');
  await pool.datasets.create('o1/large');
  await put(await pool.datasets.open('o1/small'), 'f0', Buffer.from('x'));
  const large = await pool.datasets.open('o1/large');
  for (let i = 0; i < 2000; i++) await put(large, `f${i}`, Buffer.from(`file ${i}`));
  const cost = async (op: () => Promise<void>): Promise<number> => {
    await settle(pool);
    const before = pool.iostat();
    await op();
    const after = pool.iostat();
    return after.writeOps - before.writeOps + (after.readOps - before.readOps);
  };
  const compare = async (what: string, op: (ds: string) => Promise<void>): Promise<void> => {
    const small = await cost(() => op('o1/small'));
    const largeCost = await cost(() => op('o1/large'));
    assert.ok(small > 0, `${what} commits a txg`);
    assert.ok(Math.abs(small - largeCost) <= 6, `${what} block I/O: 1 file ${small}, 2000 files ${largeCost}`);
  };
  // Warm up both (the first snapshot and clone of each create their kv maps).
  for (const ds of ['o1/small', 'o1/large']) {
    await pool.datasets.snapshot(`${ds}@warm`);
    await pool.datasets.clone(`${ds}@warm`, `${ds}-warm`);
  }
  await compare('snapshot', (ds) => pool.datasets.snapshot(`${ds}@s`));
  await compare('clone', (ds) => pool.datasets.clone(`${ds}@s`, `${ds}-fork`));
  await compare('rollback', (ds) => pool.datasets.rollback(`${ds}@s`));
  assert.equal((await pool.datasets.open('o1/large-fork').then((fs) => fs.lookup(fs.rootIno, 'f1999'))).sizeBytes, 9);
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

test('small writes change cached records in place only where no snapshot or clone can read them (seeded, with reads racing the writes)', async () => {
  const rig = await makePool('take', 30);
  const pool = rig.pool;
  await pool.datasets.create('take/fs');
  const fs = await pool.datasets.open('take/fs');
  const rnd = new Random(31);
  const recordBytes = 128 * 1024;
  const size = 8 * recordBytes;
  const model = rnd.bytes(size);
  const ino = (await fs.create(fs.rootIno, 'f', { mode: 0o644 })).ino;
  await fs.write(ino, 0, model);
  // Small writes into every record, several txgs (each leaves its records cached for the next one
  // to take), a snapshot and a clone in between; every view is read back while writes are in flight.
  const smallWrites = async (count: number): Promise<void> => {
    const writes: Promise<unknown>[] = [];
    for (let k = 0; k < count; k++) {
      const at = rnd.int(size - 4096);
      const data = rnd.bytes(1 + rnd.int(4096));
      data.copy(model, at);
      writes.push(fs.write(ino, at, data));
    }
    await Promise.all(writes);
  };
  const views: Array<{ name: string; expected: Buffer }> = [];
  const checkViews = async (): Promise<void> => {
    for (const view of views) {
      const vfs = await pool.datasets.open(view.name);
      const st = await vfs.lookup(vfs.rootIno, 'f');
      assert.ok((await vfs.read(st.ino, 0, size)).equals(view.expected), `${view.name} changed`);
    }
  };
  for (let round = 0; round < 6; round++) {
    await smallWrites(40);
    await pool.sync();
    if (round === 1 || round === 3) {
      await pool.datasets.snapshot(`take/fs@r${round}`);
      views.push({ name: `take/fs@r${round}`, expected: Buffer.from(model) });
    }
    if (round === 2) {
      await pool.datasets.clone('take/fs@r1', 'take/clone');
      views.push({ name: 'take/clone', expected: Buffer.from(views[0]!.expected) });
    }
    await Promise.all([checkViews(), smallWrites(20)]);
    assert.ok((await fs.read(ino, 0, size)).equals(model), `live file after round ${round}`);
  }
  // The clone's own small writes never show in its origin snapshot.
  const clone = await pool.datasets.open('take/clone');
  const cloneIno = (await clone.lookup(clone.rootIno, 'f')).ino;
  await clone.write(cloneIno, 5000, Buffer.alloc(3000, 0xee));
  await pool.sync();
  await clone.write(cloneIno, 9000, Buffer.alloc(3000, 0xdd));
  views.find((v) => v.name === 'take/clone')!.expected.fill(0xee, 5000, 8000).fill(0xdd, 9000, 12000);
  await checkViews();
  await pool.sync();
  await pool.export();
  const again = await rig.reimport();
  const live = await again.datasets.open('take/fs');
  assert.ok((await get(live, 'f')).equals(model), 'live file after import');
  for (const view of views) assert.ok((await get(await again.datasets.open(view.name), 'f')).equals(view.expected), `${view.name} after import`);
  await assertSpaceExact(again, 'after import');
  await again.export();
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Pool } from '../pool/pool.js';
import { Random } from '../testing/random.js';
import type { Filesystem } from '../fs/index.js';
import { isCairnError } from '../util/errors.js';
import { assertSpaceExact, code, get, makePool, MiB, put, settle } from './test-rig.js';

async function prop(pool: Pool, name: string, property: string): Promise<{ value: unknown; source: string }> {
  const [r] = await pool.datasets.getProperties(name, [property]);
  assert.ok(r, `${name} ${property}`);
  return { value: r.value, source: r.source };
}

test('properties: set, inherit with sources, persisted; compression and copies change what is written', async () => {
  const rig = await makePool('props', 100);
  let pool = rig.pool;
  await pool.datasets.create('props/a/b', { parents: true });
  await pool.datasets.setProperty('props/a', 'compression', 'off');
  await pool.datasets.setProperty('props/a', 'org.cairn:owner', 'ops');
  assert.deepEqual(await prop(pool, 'props/a/b', 'compression'), { value: 'off', source: 'inherited from props/a' });
  assert.deepEqual(await prop(pool, 'props/a/b', 'org.cairn:owner'), { value: 'ops', source: 'inherited from props/a' });
  assert.deepEqual(await prop(pool, 'props', 'compression'), { value: 'on', source: 'default' });
  await assert.rejects(pool.datasets.setProperty('props/a', 'compression', 'gzip-99'), code('EINVAL'));
  await assert.rejects(pool.datasets.setProperty('props/a', 'used', '1G'), code('EINVAL'));
  await assert.rejects(pool.datasets.inheritProperty('props/a', 'quota'), code('EINVAL'));
  // Zeros compress to holes with compression on; with it off they take their full size.
  const zeros = Buffer.alloc(2 * MiB);
  await put(await pool.datasets.open('props/a/b'), 'z', zeros);
  await pool.datasets.create('props/c');
  await put(await pool.datasets.open('props/c'), 'z', zeros);
  await pool.sync();
  const refB = Number((await prop(pool, 'props/a/b', 'referenced')).value);
  const refC = Number((await prop(pool, 'props/c', 'referenced')).value);
  assert.ok(refB >= 2 * MiB && refC < MiB / 4, `uncompressed ${refB}, compressed ${refC}`);
  await pool.datasets.setProperty('props/c', 'copies', '2');
  const data = new Random(1).bytes(MiB);
  await put(await pool.datasets.open('props/c'), 'd', data);
  await pool.sync();
  const refC2 = Number((await prop(pool, 'props/c', 'referenced')).value);
  assert.ok(refC2 - refC >= 2 * MiB, `copies=2 stores two copies (${refC2 - refC})`);
  // recordsize applies to files created afterwards; atime=off stops reads from recording access.
  await pool.datasets.setProperty('props/c', 'recordsize', '16K');
  await pool.datasets.setProperty('props/c', 'atime', 'off');
  const c = (await pool.datasets.open('props/c')) as Filesystem;
  assert.equal(c.recordSizeBytes, 16 * 1024);
  await pool.datasets.setProperty('props/c', 'compression', 'off');
  await put(c, 'small-records', new Random(4).bytes(192 * 1024));
  await pool.sync();
  const st = await c.lookup(c.rootIno, 'small-records');
  // Twelve 16 KiB records, two copies each, plus a compressed indirect block (two 128 KiB records,
  // 512 KiB, at the default recordsize).
  assert.ok(st.allocatedBytes >= 2 * 192 * 1024 && st.allocatedBytes < 2 * 192 * 1024 + 64 * 1024, `allocated ${st.allocatedBytes}`);
  await c.setattr(st.ino, { atimeNs: 5n });
  await c.read(st.ino, 0, 10);
  assert.equal((await c.getattr(st.ino)).atimeNs, 5n, 'atime=off: a read leaves atime alone');
  await pool.datasets.setProperty('props/a', 'readonly', 'on');
  const b = await pool.datasets.open('props/a/b');
  await assert.rejects(put(b, 'z2', Buffer.from('x')), code('EROFS'));
  assert.ok((await get(b, 'z')).equals(zeros), 'a read-only dataset still reads');
  await pool.datasets.inheritProperty('props/a', 'readonly');
  await put(b, 'z2', Buffer.from('x'));
  await pool.datasets.inheritProperty('props/a', 'compression', { recursive: true });
  assert.deepEqual(await prop(pool, 'props/a/b', 'compression'), { value: 'on', source: 'default' });
  await pool.export();
  pool = await rig.reimport();
  assert.deepEqual(await prop(pool, 'props/c', 'copies'), { value: 2, source: 'local' });
  assert.deepEqual(await prop(pool, 'props/a/b', 'org.cairn:owner'), { value: 'ops', source: 'inherited from props/a' });
  const all = await pool.datasets.getProperties('props/c');
  for (const p of ['used', 'available', 'referenced', 'compressratio', 'written', 'usedbysnapshots', 'usedbychildren', 'logicalused', 'creation', 'guid']) {
    assert.ok(all.some((r) => r.name === p), `get all lists ${p}`);
  }
  assert.ok((await get(await pool.datasets.open('props/c'), 'd')).equals(data));
  await assertSpaceExact(pool, 'props');
  await pool.export();
});

test('quota, refquota and reservation are enforced at write time', async () => {
  const rig = await makePool('quota', 200);
  const pool = rig.pool;
  await pool.datasets.create('quota/home/u1', { parents: true });
  await pool.datasets.setProperty('quota/home', 'quota', '4M');
  const u1 = await pool.datasets.open('quota/home/u1');
  const rnd = new Random(2);
  await put(u1, 'a', rnd.bytes(3 * MiB));
  await pool.sync();
  await assert.rejects(put(u1, 'b', rnd.bytes(2 * MiB)), code('EDQUOT'));
  // refquota counts what the dataset references, not its snapshots.
  await pool.datasets.create('quota/r');
  await pool.datasets.setProperty('quota/r', 'refquota', '2M');
  await assert.rejects(put(await pool.datasets.open('quota/r'), 'big', rnd.bytes(3 * MiB)), code('EDQUOT'));
  await assert.rejects(pool.datasets.setProperty('quota/home', 'quota', '1M'), code('EINVAL'));
  // A reservation takes space from everyone else.
  await pool.sync();
  const availBefore = Number((await prop(pool, 'quota/r', 'available')).value);
  await pool.datasets.create('quota/resv');
  await pool.datasets.setProperty('quota/resv', 'reservation', '40M');
  const availAfter = Number((await prop(pool, 'quota/r', 'available')).value);
  assert.ok(availAfter <= Math.min(availBefore, 2 * MiB) || availBefore - availAfter >= 39 * MiB, `avail ${availBefore} → ${availAfter}`);
  const rootAvailBefore = Number((await prop(pool, 'quota', 'available')).value);
  await assert.rejects(pool.datasets.setProperty('quota/resv', 'reservation', `${Math.ceil((rootAvailBefore + 50 * MiB) / MiB)}M`), code('ENOSPC'));
  assert.ok(Number((await prop(pool, 'quota', 'used')).value) >= 40 * MiB, 'the root counts the reservation as used');
  await pool.export();
});

test('volumes: thick reserves its size, thin allocates what is written; data round-trips; volsize grows', async () => {
  const rig = await makePool('vols', 300);
  let pool = rig.pool;
  await pool.datasets.create('vols/thick', { volsizeBytes: 16 * MiB });
  await pool.datasets.create('vols/thin', { volsizeBytes: 1024 * MiB, sparse: true });
  await assert.rejects(pool.datasets.create('vols/huge', { volsizeBytes: 1024 * 1024 * MiB }), code('ENOSPC'));
  await assert.rejects(pool.datasets.create('vols/odd', { volsizeBytes: 1000 }), code('EINVAL'));
  await assert.rejects(pool.datasets.create('vols/thick/child'), code('EINVAL'));
  assert.equal((await prop(pool, 'vols/thick', 'refreservation')).value, 16 * MiB);
  assert.ok(Number((await prop(pool, 'vols/thick', 'used')).value) >= 16 * MiB);
  assert.ok(Number((await prop(pool, 'vols/thin', 'used')).value) < MiB);
  const thin = await pool.datasets.openVolume('vols/thin');
  const data = new Random(3).bytes(3 * MiB + 512);
  await thin.write(700 * MiB + 4096, data);
  await thin.flush();
  const used = Number((await prop(pool, 'vols/thin', 'used')).value);
  assert.ok(used >= 3 * MiB && used < 8 * MiB, `thin volume uses what was written (${used})`);
  await pool.datasets.snapshot('vols/thin@s');
  await thin.trim(700 * MiB, 8 * MiB);
  assert.ok((await thin.read(700 * MiB + 4096, 4096)).equals(Buffer.alloc(4096)));
  const snapVol = await pool.datasets.openVolume('vols/thin@s');
  assert.ok((await snapVol.read(700 * MiB + 4096, data.length)).equals(data), 'the snapshot keeps the trimmed data');
  await assert.rejects(snapVol.write(0, Buffer.alloc(512)), code('EROFS'));
  await pool.datasets.setProperty('vols/thick', 'volsize', '32M');
  assert.equal((await prop(pool, 'vols/thick', 'volsize')).value, 32 * MiB);
  assert.equal((await prop(pool, 'vols/thick', 'refreservation')).value, 32 * MiB, 'a thick volume keeps its size reserved');
  await (await pool.datasets.openVolume('vols/thick')).write(31 * MiB, data.subarray(0, MiB));
  await pool.datasets.clone('vols/thin@s', 'vols/fork');
  assert.equal((await pool.datasets.openVolume('vols/fork')).sizeBytes, 1024 * MiB);
  await pool.sync();
  await pool.export();
  pool = await rig.reimport();
  assert.deepEqual(pool.datasets.list().filter((e) => e.type === 'volume').map((e) => e.name), ['vols/fork', 'vols/thick', 'vols/thin']);
  assert.ok((await (await pool.datasets.openVolume('vols/thick')).read(31 * MiB, MiB)).equals(data.subarray(0, MiB)));
  assert.ok((await (await pool.datasets.openVolume('vols/fork')).read(700 * MiB + 4096, data.length)).equals(data));
  await assert.rejects(pool.datasets.open('vols/thin'), code('EINVAL'));
  await assertSpaceExact(pool, 'volumes');
  await pool.export();
});

test('snapshot -r is one txg; rename of datasets and snapshots persists; holds block destroy', async () => {
  const rig = await makePool('ren', 400);
  let pool = rig.pool;
  await pool.datasets.create('ren/a/b/c', { parents: true });
  await put(await pool.datasets.open('ren/a/b'), 'f', Buffer.from('b-data'));
  const made = await pool.datasets.snapshotMany(['ren/a@mon'], { recursive: true });
  assert.deepEqual(made, ['ren/a@mon', 'ren/a/b@mon', 'ren/a/b/c@mon']);
  const txgs = new Set(pool.datasets.list().filter((e) => e.name.endsWith('@mon')).map((e) => e.createTxg));
  assert.equal(txgs.size, 1, 'recursive snapshots share one txg');
  await assert.rejects(pool.datasets.snapshotMany(['ren/a@mon'], { recursive: true }), code('EEXIST'));
  await pool.datasets.rename('ren/a/b', 'ren/x/y', { parents: true });
  await pool.datasets.rename('ren/x/y@mon', 'ren/x/y@monday');
  await assert.rejects(pool.datasets.rename('ren/x/y@monday', 'ren/a@tue'), code('EINVAL'));
  await assert.rejects(pool.datasets.rename('ren/a', 'ren/a/inside'), code('EINVAL'));
  await assert.rejects(pool.datasets.rename('ren/a', 'other/a'), code('EXDEV'));
  await pool.datasets.hold('keep', 'ren/x/y@monday');
  await assert.rejects(pool.datasets.destroy('ren/x/y@monday'), (e: unknown) => isCairnError(e, 'EBUSY') && /keep/.test((e as Error).message));
  await pool.export();
  pool = await rig.reimport();
  assert.deepEqual(pool.datasets.list().map((e) => e.name), ['ren', 'ren/a', 'ren/a@mon', 'ren/x', 'ren/x/y', 'ren/x/y/c', 'ren/x/y/c@mon', 'ren/x/y@monday']);
  assert.equal((await get(await pool.datasets.open('ren/x/y@monday'), 'f')).toString(), 'b-data');
  assert.deepEqual((await pool.datasets.holds('ren/x/y@monday')).map((h) => h.tag), ['keep']);
  await pool.datasets.release('keep', 'ren/x/y@monday');
  await assert.rejects(pool.datasets.release('keep', 'ren/x/y@monday'), code('ENOENT'));
  await pool.datasets.destroy('ren/x/y@monday');
  await assertSpaceExact(pool, 'rename');
  await pool.export();
});

test('destroy -r / -R / -n: refusals name what blocks, dry run reclaims exactly what the real one frees', async () => {
  const rig = await makePool('del', 500);
  const pool = rig.pool;
  const rnd = new Random(7);
  await pool.datasets.create('del/p/q', { parents: true });
  const q = await pool.datasets.open('del/p/q');
  await put(q, 'one', rnd.bytes(2 * MiB));
  await pool.datasets.snapshot('del/p/q@s1');
  await put(q, 'one', rnd.bytes(2 * MiB));
  await pool.datasets.snapshot('del/p/q@s2');
  await put(q, 'two', rnd.bytes(MiB));
  await put(q, 'one', rnd.bytes(MiB)); // s2 alone now holds the second 2 MiB of 'one'
  await pool.datasets.clone('del/p/q@s1', 'del/fork');
  await put(await pool.datasets.open('del/fork'), 'own', rnd.bytes(MiB));
  await assert.rejects(pool.datasets.destroyWith('del/p'), (e: unknown) => isCairnError(e, 'EBUSY') && /del\/p\/q/.test((e as Error).message));
  await assert.rejects(pool.datasets.destroyWith('del/p', { recursive: true }), (e: unknown) => isCairnError(e, 'EBUSY') && /del\/fork/.test((e as Error).message));
  // Dry run of two snapshots... the first has a clone: -R takes it along.
  const dry = await pool.datasets.destroyWith('del/p', { dependents: true, dryRun: true });
  assert.deepEqual(new Set(dry.destroyed), new Set(['del/fork', 'del/p/q@s2', 'del/p/q@s1', 'del/p/q', 'del/p']));
  assert.ok(dry.destroyed.indexOf('del/fork') < dry.destroyed.indexOf('del/p/q@s1'), 'the clone goes before its origin');
  assert.ok(pool.datasets.exists('del/fork'), 'a dry run changes nothing');
  // The exact figure for a single snapshot: destroy it and watch the pool's free space.
  await pool.datasets.clone('del/p/q@s2', 'del/fork2');
  await pool.datasets.destroyWith('del/fork2');
  await settle(pool);
  const s2 = await pool.datasets.destroyWith('del/p/q@s2', { dryRun: true });
  const free0 = pool.status().space.freeBytes;
  await pool.datasets.destroyWith('del/p/q@s2');
  await settle(pool);
  const freedS2 = pool.status().space.freeBytes - free0;
  assert.ok(s2.reclaimBytes >= 2 * MiB, `s2 alone holds 2 MiB (${s2.reclaimBytes})`);
  assert.ok(Math.abs(freedS2 - s2.reclaimBytes) < 64 * 1024, `destroy -n reclaim ${s2.reclaimBytes} vs freed ${freedS2} (dead-list metadata aside)`);
  const all = await pool.datasets.destroyWith('del/p', { dependents: true, dryRun: true });
  const free1 = pool.status().space.freeBytes;
  await pool.datasets.destroyWith('del/p', { dependents: true });
  await settle(pool);
  const freed = pool.status().space.freeBytes - free1;
  // The pool also gets back the MOS records of five datasets (3 copies each), which zfs does not count either.
  assert.ok(Math.abs(freed - all.reclaimBytes) < 256 * 1024, `reclaim ${all.reclaimBytes} vs freed ${freed} (MOS records aside)`);
  assert.deepEqual(pool.datasets.list().map((e) => e.name), ['del']);
  await assertSpaceExact(pool, 'destroy');
  await pool.export();
});

test('promote: the clone takes the origin snapshots, the origin becomes its clone, space stays exact', async () => {
  const rig = await makePool('pro', 600);
  let pool = rig.pool;
  const rnd = new Random(9);
  await pool.datasets.create('pro/orig');
  const orig = await pool.datasets.open('pro/orig');
  const v1 = rnd.bytes(2 * MiB);
  await put(orig, 'f', v1);
  await pool.datasets.snapshot('pro/orig@a');
  await put(orig, 'g', rnd.bytes(MiB));
  await pool.datasets.snapshot('pro/orig@b');
  await put(orig, 'f', rnd.bytes(MiB));
  await pool.datasets.clone('pro/orig@b', 'pro/fork');
  const fork = await pool.datasets.open('pro/fork');
  await put(fork, 'h', rnd.bytes(MiB));
  await pool.datasets.promote('pro/fork');
  const names = pool.datasets.list().map((e) => e.name);
  assert.deepEqual(names, ['pro', 'pro/fork', 'pro/fork@a', 'pro/fork@b', 'pro/orig']);
  assert.equal((await prop(pool, 'pro/orig', 'origin')).value, 'pro/fork@b');
  assert.equal((await prop(pool, 'pro/fork', 'origin')).value, '-');
  await assert.rejects(pool.datasets.destroy('pro/fork@b'), (e: unknown) => isCairnError(e, 'EBUSY') && /pro\/orig/.test((e as Error).message));
  for (const n of ['pro/fork', 'pro/orig']) {
    const exact = await pool.datasets.space(n);
    assert.equal(Number((await prop(pool, n, 'usedbysnapshots')).value), exact.usedBySnapshotsBytes, `${n} usedbysnapshots`);
  }
  await assertSpaceExact(pool, 'after promote');
  // The old origin can now go without touching the promoted clone.
  await pool.datasets.destroy('pro/orig');
  await pool.datasets.destroy('pro/fork@b');
  await settle(pool);
  await assertSpaceExact(pool, 'after destroying the old origin');
  await pool.export();
  pool = await rig.reimport();
  assert.ok((await get(await pool.datasets.open('pro/fork@a'), 'f')).equals(v1));
  assert.equal((await get(await pool.datasets.open('pro/fork'), 'h')).length, MiB);
  await assertSpaceExact(pool, 'after import');
  await pool.export();
});

test('diff: + - M R between a snapshot and the live dataset or a later snapshot', async () => {
  const rig = await makePool('dif', 700);
  const pool = rig.pool;
  await pool.datasets.create('dif/h');
  const fs = await pool.datasets.open('dif/h');
  await put(fs, 'keep', Buffer.from('k'));
  await put(fs, 'gone', Buffer.from('g'));
  await put(fs, 'edit', Buffer.from('e'));
  await pool.datasets.snapshot('dif/h@s');
  await fs.unlink(fs.rootIno, 'gone');
  await put(fs, 'edit', Buffer.from('edited'));
  await put(fs, 'new', Buffer.from('n'));
  await fs.rename(fs.rootIno, 'keep', fs.rootIno, 'kept');
  const lines = async (to?: string): Promise<string[]> => {
    const out: string[] = [];
    for await (const e of pool.datasets.diff('dif/h@s', to)) out.push(`${e.change} ${e.path}${e.newPath ? ` ${e.newPath}` : ''}`);
    return out.sort();
  };
  const live = await lines();
  assert.deepEqual(live, ['+ /new', '- /gone', 'M /', 'M /edit', 'R /keep /kept']);
  await pool.datasets.snapshot('dif/h@t');
  assert.deepEqual(await lines('dif/h@t'), live);
  await assert.rejects(lines('dif'), code('EINVAL'));
  await pool.export();
});

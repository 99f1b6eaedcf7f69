/**
 * Review of the dataset layer: each test pins a bug found in dsl.ts (it failed before the fix). The
 * figure most of them check is the one users act on: what `destroy -n` says comes back must be what a
 * real destroy gives back to the pool (MOS records aside), and `used` must agree with it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Pool } from '../pool/pool.js';
import { Random } from '../testing/random.js';
import { assertSpaceExact, get, makePool, MiB, put, settle } from './test-rig.js';

async function num(pool: Pool, name: string, property: string): Promise<number> {
  const [r] = await pool.datasets.getProperties(name, [property]);
  assert.ok(r, `${name} ${property}`);
  return Number(r.value);
}

/** destroy -n, then the real destroy: the reclaim figure must match what the pool gets back. */
async function destroyMatchesReclaim(pool: Pool, name: string, options: { recursive?: boolean; dependents?: boolean } = {}, usedIsReclaim = true): Promise<number> {
  await settle(pool);
  const dry = await pool.datasets.destroyWith(name, { ...options, dryRun: true });
  const usedBefore = name.includes('@') || !usedIsReclaim ? undefined : await num(pool, name, 'used');
  const free0 = pool.status().space.freeBytes;
  await pool.datasets.destroyWith(name, options);
  await settle(pool);
  const freed = pool.status().space.freeBytes - free0;
  // MOS records of the destroyed datasets (the dataset object, its kvs and dead list: a few KiB each,
  // several copies) are not counted, as in zfs; anything a data block's size or more is a real error.
  const slackBytes = 64 * 1024 * dry.destroyed.length;
  assert.ok(Math.abs(freed - dry.reclaimBytes) < slackBytes, `${name}: destroy -n said ${dry.reclaimBytes}, the pool got back ${freed}`);
  if (usedBefore !== undefined && !name.includes('@')) {
    assert.ok(Math.abs(freed - usedBefore) < slackBytes, `${name}: used was ${usedBefore}, the pool got back ${freed}`);
  }
  return freed;
}

test('promote of a clone with snapshots of its own: they stay in its chain (usedbysnapshots, destroy -n)', async () => {
  const rig = await makePool('rvp', 9100);
  const pool = rig.pool;
  const rnd = new Random(9101);
  await pool.datasets.create('rvp/o');
  await put(await pool.datasets.open('rvp/o'), 'a', rnd.bytes(MiB));
  await pool.datasets.snapshot('rvp/o@s');
  await pool.datasets.clone('rvp/o@s', 'rvp/c');
  const c = await pool.datasets.open('rvp/c');
  await put(c, 'f', rnd.bytes(2 * MiB));
  await pool.datasets.snapshot('rvp/c@c1');
  await c.unlink(c.rootIno, 'f');
  await pool.datasets.snapshot('rvp/c@c2'); // c2's dead list holds f: only c1 references it
  await pool.sync();
  const before = await num(pool, 'rvp/c', 'usedbysnapshots');
  assert.ok(before >= 2 * MiB, `usedbysnapshots before promote (${before})`);
  await pool.datasets.promote('rvp/c');
  await pool.sync();
  const after = await num(pool, 'rvp/c', 'usedbysnapshots');
  const exact = await pool.datasets.space('rvp/c');
  assert.equal(after, exact.usedBySnapshotsBytes);
  assert.ok(after >= before, `promote cannot shrink the clone's usedbysnapshots (${before} → ${after})`);
  await assertSpaceExact(pool, 'after promote');
  // c1 alone holds f: destroying it gives back 2 MiB, and destroy -n says so.
  const freed = await destroyMatchesReclaim(pool, 'rvp/c@c1');
  assert.ok(freed >= 2 * MiB, `c1 held f (${freed})`);
  await destroyMatchesReclaim(pool, 'rvp/o', { recursive: true });
  await destroyMatchesReclaim(pool, 'rvp/c', { recursive: true });
  await assertSpaceExact(pool, 'end');
  await pool.export();
});

test('rollback after promote: usedbydataset follows the new origin on both sides', async () => {
  const rig = await makePool('rvr', 9200);
  const pool = rig.pool;
  const rnd = new Random(9201);
  await pool.datasets.create('rvr/o');
  const o = await pool.datasets.open('rvr/o');
  await put(o, 'a', rnd.bytes(2 * MiB)); // before the origin: the promoted clone's after promote
  await pool.datasets.snapshot('rvr/o@s');
  await pool.datasets.clone('rvr/o@s', 'rvr/c');
  const c = await pool.datasets.open('rvr/c');
  await put(c, 'cb', rnd.bytes(100_000));
  await pool.datasets.snapshot('rvr/c@c1');
  await put(c, 'cd', rnd.bytes(MiB));
  await put(o, 'b', rnd.bytes(100_000));
  await pool.datasets.snapshot('rvr/o@t');
  await put(o, 'd', rnd.bytes(MiB));
  await pool.datasets.promote('rvr/c');
  await pool.datasets.rollback('rvr/o@t');
  await pool.datasets.rollback('rvr/c@c1');
  await pool.sync();
  // o is now a clone of c@s: a (born before s) is not its own.
  const usedO = await num(pool, 'rvr/o', 'usedbydataset');
  assert.ok(usedO < MiB, `o's usedbydataset after rollback is b and metadata only (${usedO})`);
  // c is no clone any more: a is its own.
  const usedC = await num(pool, 'rvr/c', 'usedbydataset');
  assert.ok(usedC >= 2 * MiB, `c's usedbydataset after rollback includes a (${usedC})`);
  assert.ok((await get(c, 'a').catch(async () => get(await pool.datasets.open('rvr/c'), 'a'))).length === 2 * MiB);
  await destroyMatchesReclaim(pool, 'rvr/o', { recursive: true });
  await destroyMatchesReclaim(pool, 'rvr/c', { recursive: true });
  await assertSpaceExact(pool, 'end');
  await pool.export();
});

test('destroy -r of a tree holding a clone of a snapshot in the same tree succeeds, whatever the order', async () => {
  const rig = await makePool('rvd', 9300);
  const pool = rig.pool;
  const rnd = new Random(9301);
  for (const [src, dst] of [['a', 'b'], ['z', 'y']]) {
    await pool.datasets.create(`rvd/t${src}/${src}`, { parents: true });
    await put(await pool.datasets.open(`rvd/t${src}/${src}`), 'f', rnd.bytes(MiB));
    await pool.datasets.snapshot(`rvd/t${src}/${src}@s`);
    await pool.datasets.clone(`rvd/t${src}/${src}@s`, `rvd/t${src}/${dst}`);
    await put(await pool.datasets.open(`rvd/t${src}/${dst}`), 'g', rnd.bytes(MiB));
  }
  // zfs destroy -r: a dependent clone inside the tree being destroyed is no obstacle.
  await destroyMatchesReclaim(pool, 'rvd/ta', { recursive: true });
  await destroyMatchesReclaim(pool, 'rvd/tz', { recursive: true });
  assert.deepEqual(pool.datasets.list().map((e) => e.name), ['rvd']);
  await assertSpaceExact(pool, 'end');
  await pool.export();
});

test('destroy -n -r of a filesystem holding a thick volume: an unused reservation is not reclaimed space', async () => {
  const rig = await makePool('rvv', 9400);
  const pool = rig.pool;
  await pool.datasets.create('rvv/p');
  await pool.datasets.create('rvv/p/vol', { volsizeBytes: 16 * MiB });
  const vol = await pool.datasets.openVolume('rvv/p/vol');
  await vol.write(0, new Random(9401).bytes(MiB));
  await vol.flush();
  await pool.datasets.create('rvv/p/res', { properties: { reservation: '8M' } });
  // used counts the reservations (zfs does); what comes back is only what was written.
  await destroyMatchesReclaim(pool, 'rvv/p', { recursive: true }, false);
  await assertSpaceExact(pool, 'end');
  await pool.export();
});

test('quota: writes a child makes inside its reservation, or into a thick volume, do not count twice in the parent', async () => {
  const rig = await makePool('rvq', 9500);
  const pool = rig.pool;
  const rnd = new Random(9501);
  await pool.datasets.create('rvq/p', { properties: { quota: '8400K' } });
  await pool.datasets.create('rvq/p/c', { properties: { reservation: '8M' } });
  // The parent already counts the 8 MiB reservation (less than a record short of its quota, with its
  // own metadata); 6 MiB written inside the reservation change nothing up there.
  const c = await pool.datasets.open('rvq/p/c');
  await put(c, 'f', rnd.bytes(6 * MiB));
  await pool.sync();
  assert.equal(await num(pool, 'rvq/p', 'usedbychildren'), 8 * MiB, 'the parent counts the reservation, not reservation + data');
  // A thick volume can be filled whatever quota is above it: its refreservation already counts.
  await pool.datasets.create('rvq/v', { properties: { quota: '17M' } });
  await pool.datasets.create('rvq/v/vol', { volsizeBytes: 16 * MiB });
  const vol = await pool.datasets.openVolume('rvq/v/vol');
  const data = rnd.bytes(16 * MiB);
  for (let at = 0; at < data.length; at += MiB) await vol.write(at, data.subarray(at, at + MiB));
  await vol.flush();
  assert.ok((await vol.read(0, 16 * MiB)).equals(data));
  // And the quota still holds: the parent refuses what goes past it.
  await pool.datasets.create('rvq/p/d');
  await assert.rejects(put(await pool.datasets.open('rvq/p/d'), 'g', rnd.bytes(MiB)), (e: unknown) => (e as { code?: string }).code === 'EDQUOT');
  await pool.export();
});

test('rename into a parent whose quota it would exceed is refused (zfs: out of space), one that fits moves', async () => {
  const rig = await makePool('rvn', 9600);
  const pool = rig.pool;
  const rnd = new Random(9601);
  await pool.datasets.create('rvn/small', { properties: { quota: '4M' } });
  await pool.datasets.create('rvn/big');
  await put(await pool.datasets.open('rvn/big'), 'f', rnd.bytes(3 * MiB));
  await pool.datasets.create('rvn/res', { properties: { reservation: '5M' } });
  await pool.sync();
  await put(await pool.datasets.open('rvn/small'), 'g', rnd.bytes(2 * MiB));
  await pool.sync();
  await assert.rejects(pool.datasets.rename('rvn/big', 'rvn/small/big'), (e: unknown) => ['ENOSPC', 'EDQUOT'].includes((e as { code?: string }).code ?? ''));
  await assert.rejects(pool.datasets.rename('rvn/res', 'rvn/small/res'), (e: unknown) => ['ENOSPC', 'EDQUOT'].includes((e as { code?: string }).code ?? ''));
  assert.ok(pool.datasets.exists('rvn/big') && pool.datasets.exists('rvn/res'));
  await pool.datasets.create('rvn/tiny');
  await pool.datasets.rename('rvn/tiny', 'rvn/small/tiny');
  const used = await num(pool, 'rvn/small', 'used');
  assert.ok(used <= 4 * MiB, `the quota holds (${used})`);
  await pool.export();
});

test('properties survive export/import: readonly, recordsize, atime, copies, a clone\'s compression, user properties on snapshots', async () => {
  const rig = await makePool('rvo', 9700);
  let pool = rig.pool;
  await pool.datasets.create('rvo/a');
  await put(await pool.datasets.open('rvo/a'), 'f', Buffer.from('data'));
  await pool.datasets.snapshot('rvo/a@s');
  await pool.datasets.setProperty('rvo/a@s', 'org.cairn:note', 'before upgrade');
  await pool.datasets.clone('rvo/a@s', 'rvo/c', { properties: { compression: 'zstd', recordsize: '32K' } });
  await pool.datasets.setProperty('rvo/c', 'atime', 'off');
  await pool.datasets.setProperty('rvo/c', 'copies', '2');
  await pool.datasets.setProperty('rvo/a', 'readonly', 'on');
  await pool.export();
  pool = await rig.reimport();
  const value = async (n: string, p: string): Promise<unknown> => (await pool.datasets.getProperties(n, [p]))[0]?.value;
  assert.equal(await value('rvo/a@s', 'org.cairn:note'), 'before upgrade');
  assert.equal(await value('rvo/c', 'compression'), 'zstd');
  assert.equal(await value('rvo/c', 'recordsize'), 32 * 1024);
  assert.equal(await value('rvo/c', 'atime'), 'off');
  assert.equal(await value('rvo/c', 'copies'), 2);
  assert.equal(await value('rvo/a', 'readonly'), 'on');
  const c = (await pool.datasets.open('rvo/c')) as unknown as { recordSizeBytes: number; atimeUpdates: boolean };
  assert.equal(c.recordSizeBytes, 32 * 1024);
  assert.equal(c.atimeUpdates, false);
  const a = await pool.datasets.open('rvo/a');
  await assert.rejects(put(a, 'g', Buffer.from('x')), (e: unknown) => (e as { code?: string }).code === 'EROFS');
  // copies=2 is what the clone writes with after import.
  const cfs = await pool.datasets.open('rvo/c');
  const ref0 = await num(pool, 'rvo/c', 'referenced');
  await put(cfs, 'r', new Random(9701).bytes(MiB));
  await pool.sync();
  assert.ok((await num(pool, 'rvo/c', 'referenced')) - ref0 >= 2 * MiB, 'copies=2 after import');
  // A snapshot renamed keeps its user property; its clone still names it as origin.
  await pool.datasets.rename('rvo/a@s', 'rvo/a@t');
  assert.equal(await value('rvo/a@t', 'org.cairn:note'), 'before upgrade');
  assert.equal(await value('rvo/c', 'origin'), 'rvo/a@t');
  await pool.export();
  pool = await rig.reimport();
  assert.equal(await value('rvo/c', 'origin'), 'rvo/a@t');
  assert.equal(await value('rvo/a@t', 'org.cairn:note'), 'before upgrade');
  await pool.export();
});

test('thick volume resize: a power cut between its steps never leaves the volume reserving less than its size', async () => {
  for (const [fromSize, toSize] of [['16M', '32M'], ['32M', '16M']] as const) {
    const rig = await makePool('rvz', 9800);
    let pool = rig.pool;
    const bytes = (s: string): number => Number(s.slice(0, -1)) * MiB;
    await pool.datasets.create('rvz/vol', { volsizeBytes: bytes(fromSize) });
    await pool.sync();
    // The power goes right after the first step of the resize that reaches the disk (a txg may commit
    // at any moment between two holds: the timer, the write throttle, another caller's sync).
    const internals = pool.datasets as unknown as {
      host: { hold: <T>(fn: () => Promise<T>) => Promise<T> };
      node(name: string): { volume: { resize(n: number): Promise<void> } };
    };
    const volume = internals.node('rvz/vol').volume;
    const realResize = volume.resize.bind(volume);
    const realHold = internals.host.hold;
    let armed = true;
    const crash = async (): Promise<void> => {
      if (!armed) return;
      armed = false;
      await pool.sync();
      for (const d of rig.devices.values()) d.powerCut();
      throw new Error('power cut');
    };
    volume.resize = async (n) => {
      await realResize(n);
      await crash();
    };
    internals.host.hold = async <T>(fn: () => Promise<T>): Promise<T> => {
      const out = await realHold(fn);
      await crash();
      return out;
    };
    await assert.rejects(pool.datasets.setProperty('rvz/vol', 'volsize', toSize), /power cut/);
    await pool.abandon();
    pool = await rig.reimport();
    const size = await num(pool, 'rvz/vol', 'volsize');
    const refreservation = await num(pool, 'rvz/vol', 'refreservation');
    assert.ok(refreservation >= size, `${fromSize} → ${toSize}: volsize ${size} with refreservation ${refreservation} after the power cut`);
    await pool.export();
  }
});

test('clone of a clone promoted twice, renamed, rolled back: used and destroy -n match what each destroy frees', async () => {
  const rig = await makePool('rvx', 9900);
  let pool = rig.pool;
  const rnd = new Random(9901);
  await pool.datasets.create('rvx/o');
  const o = await pool.datasets.open('rvx/o');
  await put(o, 'a', rnd.bytes(MiB));
  await pool.datasets.snapshot('rvx/o@s1');
  await put(o, 'a2', rnd.bytes(300_000));
  await pool.datasets.clone('rvx/o@s1', 'rvx/c1');
  const c1 = await pool.datasets.open('rvx/c1');
  await put(c1, 'b', rnd.bytes(700_000));
  await c1.unlink(c1.rootIno, 'a'); // c1's dead list: a (born before its origin)
  await pool.datasets.snapshot('rvx/c1@s2');
  await put(c1, 'b', rnd.bytes(200_000)); // c1@s2 alone holds the first b
  await pool.datasets.clone('rvx/c1@s2', 'rvx/c2');
  const c2 = await pool.datasets.open('rvx/c2');
  await put(c2, 'c', rnd.bytes(500_000));
  await pool.datasets.snapshot('rvx/c2@own');
  await c2.unlink(c2.rootIno, 'c');
  await pool.datasets.promote('rvx/c2'); // takes c1@s2; c1 becomes its clone; c2's origin is o@s1
  await pool.datasets.rename('rvx/c2', 'rvx/deep/c2', { parents: true });
  await pool.datasets.promote('rvx/deep/c2'); // takes o@s1; o becomes its clone
  await pool.datasets.rollback('rvx/deep/c2@own');
  await pool.sync();
  const names = pool.datasets.list().map((e) => e.name);
  assert.deepEqual(names, ['rvx', 'rvx/c1', 'rvx/deep', 'rvx/deep/c2', 'rvx/deep/c2@own', 'rvx/deep/c2@s1', 'rvx/deep/c2@s2', 'rvx/o']);
  for (const n of names.filter((x) => !x.includes('@'))) {
    const exact = await pool.datasets.space(n);
    assert.equal(await num(pool, n, 'usedbysnapshots'), exact.usedBySnapshotsBytes, `${n} usedbysnapshots`);
    assert.equal(await num(pool, n, 'used'), exact.usedBytes, `${n} used`);
  }
  await assertSpaceExact(pool, 'after the promotes');
  await pool.export();
  pool = await rig.reimport();
  assert.equal((await get(await pool.datasets.open('rvx/deep/c2'), 'c')).length, 500_000);
  assert.equal((await get(await pool.datasets.open('rvx/deep/c2@s1'), 'a')).length, MiB);
  await destroyMatchesReclaim(pool, 'rvx/o');
  await destroyMatchesReclaim(pool, 'rvx/c1');
  await destroyMatchesReclaim(pool, 'rvx/deep/c2@s2');
  await destroyMatchesReclaim(pool, 'rvx/deep/c2@own');
  await destroyMatchesReclaim(pool, 'rvx/deep', { recursive: true });
  await assertSpaceExact(pool, 'end');
  await pool.export();
});

test('destroy -R: a chain of clones of clones goes, clones first; a hold anywhere in it refuses it all', async () => {
  const rig = await makePool('rvc', 9950);
  const pool = rig.pool;
  const rnd = new Random(9951);
  await pool.datasets.create('rvc/a');
  await put(await pool.datasets.open('rvc/a'), 'f', rnd.bytes(MiB));
  let from = 'rvc/a';
  for (let i = 0; i < 4; i++) {
    await pool.datasets.snapshot(`${from}@s`);
    await pool.datasets.clone(`${from}@s`, `rvc/k${i}`);
    from = `rvc/k${i}`;
    await put(await pool.datasets.open(from), `g${i}`, rnd.bytes(300_000));
  }
  await pool.datasets.hold('keep', 'rvc/k2@s');
  await assert.rejects(pool.datasets.destroyWith('rvc/a', { dependents: true }), (e: unknown) => (e as { code?: string }).code === 'EBUSY' && /rvc\/k2@s/.test((e as Error).message));
  assert.equal(pool.datasets.list().length, 10, 'a refused plan destroys nothing');
  await pool.datasets.release('keep', 'rvc/k2@s');
  const dry = await pool.datasets.destroyWith('rvc/a', { dependents: true, dryRun: true });
  for (let i = 0; i < 4; i++) {
    assert.ok(dry.destroyed.indexOf(`rvc/k${i}`) < dry.destroyed.indexOf(i === 0 ? 'rvc/a@s' : `rvc/k${i - 1}@s`), `k${i} before its origin`);
  }
  await destroyMatchesReclaim(pool, 'rvc/a', { dependents: true }, false); // used does not count the clones
  assert.deepEqual(pool.datasets.list().map((e) => e.name), ['rvc']);
  await assertSpaceExact(pool, 'end');
  await pool.export();
});

test('rollback of a clone, a renamed snapshot cloned and destroyed with -R: figures match what destroys free', async () => {
  const rig = await makePool('rvb', 9970);
  let pool = rig.pool;
  const rnd = new Random(9971);
  await pool.datasets.create('rvb/o');
  const o = await pool.datasets.open('rvb/o');
  await put(o, 'a', rnd.bytes(MiB));
  await put(o, 'k', rnd.bytes(400_000));
  await pool.datasets.snapshot('rvb/o@s');
  await pool.datasets.clone('rvb/o@s', 'rvb/c');
  const c = await pool.datasets.open('rvb/c');
  await put(c, 'x', rnd.bytes(600_000));
  await pool.datasets.snapshot('rvb/c@c1');
  await c.unlink(c.rootIno, 'a');
  await c.unlink(c.rootIno, 'x');
  await put(c, 'y', rnd.bytes(800_000));
  await pool.datasets.rollback('rvb/c@c1');
  await pool.sync();
  const cNow = await pool.datasets.open('rvb/c');
  assert.equal((await get(cNow, 'x')).length, 600_000);
  assert.equal((await get(cNow, 'a')).length, MiB);
  assert.equal(await num(pool, 'rvb/c', 'usedbysnapshots'), 0, 'nothing freed since c1');
  await pool.datasets.rename('rvb/o@s', 'rvb/o@renamed');
  await pool.datasets.clone('rvb/o@renamed', 'rvb/c2');
  await put(await pool.datasets.open('rvb/c2'), 'z', rnd.bytes(300_000));
  await pool.export();
  pool = await rig.reimport();
  await destroyMatchesReclaim(pool, 'rvb/c@c1', {});
  await destroyMatchesReclaim(pool, 'rvb/o@renamed', { dependents: true });
  assert.deepEqual(pool.datasets.list().map((e) => e.name), ['rvb', 'rvb/o']);
  await destroyMatchesReclaim(pool, 'rvb/o');
  await assertSpaceExact(pool, 'end');
  await pool.export();
});

interface AuditNode {
  id: number;
  name: string;
  isSnapshot: boolean;
  phys: { prevSnapshot: number; nextSnapshot: number; referencedBytes: number; uniqueBytes: number; rootBp: unknown; parentDir: number };
  snapshots: Map<string, number>;
  os: { traverse(visit: (bp: { dvas: Array<{ asize: number }> }) => Promise<void>, root?: unknown, minBirthTxg?: number): Promise<void> } | null;
}

/**
 * Checks the figures the manager keeps against walks of the trees (the independent truth): every
 * head's snapshot chain is exactly its snapshots, referenced is what its tree holds, usedbydataset is
 * what it holds born after its origin, and usedbysnapshots is the dead-list count.
 */
async function audit(pool: Pool, when: string): Promise<void> {
  const m = pool.datasets as unknown as { nodes: Map<number, AuditNode>; originTxg(n: AuditNode): number };
  const walker = [...m.nodes.values()].find((n) => n.os !== null)?.os;
  assert.ok(walker);
  const walk = async (root: unknown, minBirthTxg: number): Promise<number> => {
    let bytes = 0;
    await walker.traverse(async (bp) => {
      for (const d of bp.dvas) bytes += d.asize;
    }, root, minBirthTxg);
    return bytes;
  };
  for (const n of m.nodes.values()) {
    assert.equal(n.phys.referencedBytes, await walk(n.os ? (n.os as unknown as { root: unknown }).root : n.phys.rootBp, 0), `${when}: referenced of ${n.name}`);
    if (n.isSnapshot) continue;
    const chain: number[] = [];
    for (let id = n.phys.prevSnapshot; id !== 0; id = m.nodes.get(id)?.phys.prevSnapshot ?? 0) chain.push(id);
    const own = chain.filter((id) => m.nodes.get(id)?.phys.parentDir === n.id);
    assert.deepEqual(new Set(own), new Set(n.snapshots.values()), `${when}: snapshot chain of ${n.name}`);
    assert.equal(n.phys.uniqueBytes, await walk((n.os as unknown as { root: unknown }).root, m.originTxg(n)), `${when}: usedbydataset of ${n.name}`);
    const exact = await pool.datasets.space(n.name);
    assert.equal(await num(pool, n.name, 'usedbysnapshots'), exact.usedBySnapshotsBytes, `${when}: usedbysnapshots of ${n.name}`);
  }
}

test('seeded review simulation: promotes of clones with snapshots, rollbacks, renames; figures match tree walks', async () => {
  const seeds = process.env['CAIRN_SEED'] ? [Number(process.env['CAIRN_SEED'])] : [1, 2, 3, 4, 5, 6];
  for (const seed of seeds) {
    const rig = await makePool(`rs${seed}`, 10_000 + seed);
    const pool = rig.pool;
    const rnd = new Random(seed);
    let counter = 0;
    const heads = (): string[] => pool.datasets.list().filter((e) => !e.name.includes('@')).map((e) => e.name);
    const snaps = (): string[] => pool.datasets.list().filter((e) => e.name.includes('@')).map((e) => e.name);
    try {
      for (let step = 0; step < 70; step++) {
        const r = rnd.next();
        const when = `seed ${seed} step ${step}`;
        try {
          if (r < 0.3) {
            const fs = await pool.datasets.open(rnd.pick(heads()));
            const file = `f${rnd.int(4)}`;
            if (rnd.next() < 0.3) await fs.unlink(fs.rootIno, file).catch(() => undefined);
            else await put(fs, file, rnd.bytes(rnd.int(150_000)));
          } else if (r < 0.45) {
            await pool.datasets.snapshot(`${rnd.pick(heads())}@s${counter++}`);
          } else if (r < 0.55 && snaps().length > 0) {
            await pool.datasets.clone(rnd.pick(snaps()), `rs${seed}/c${counter++}`);
          } else if (r < 0.65) {
            const clones = [];
            for (const h of heads()) if ((await pool.datasets.getProperties(h, ['origin']))[0]?.value !== '-') clones.push(h);
            if (clones.length > 0) await pool.datasets.promote(rnd.pick(clones));
          } else if (r < 0.73 && snaps().length > 0) {
            await pool.datasets.rollback(rnd.pick(snaps()));
          } else if (r < 0.8) {
            const victims = [...snaps(), ...heads().filter((h) => h !== `rs${seed}`)];
            if (victims.length > 0) await pool.datasets.destroyWith(rnd.pick(victims), { recursive: rnd.next() < 0.5 });
          } else if (r < 0.86) {
            const candidates = [...snaps(), ...heads().filter((h) => h !== `rs${seed}`)];
            if (candidates.length === 0) continue;
            const from = rnd.pick(candidates);
            const to = from.includes('@') ? `${from.slice(0, from.indexOf('@'))}@r${counter++}` : `rs${seed}/r${counter++}`;
            await pool.datasets.rename(from, to);
          } else if (r < 0.9) {
            await pool.datasets.create(`rs${seed}/d${counter++}`);
          } else {
            await pool.sync();
            await audit(pool, when);
          }
        } catch (e) {
          if (!['EBUSY', 'EEXIST', 'ENOENT'].includes((e as { code?: string }).code ?? '')) throw e;
        }
      }
      await pool.sync();
      await audit(pool, `seed ${seed} end`);
      await assertSpaceExact(pool, `seed ${seed} end`);
      await pool.export();
    } catch (e) {
      console.error(`review simulation failed: CAIRN_SEED=${seed}`);
      await pool.abandon().catch(() => undefined);
      throw e;
    }
  }
});

test('destroy -r fs@snap: the descendants\' snapshots go even where fs itself has none (zfs), none at all is ENOENT', async () => {
  const rig = await makePool('rvs', 9990);
  const pool = rig.pool;
  await pool.datasets.create('rvs/b/c', { parents: true });
  await pool.datasets.create('rvs/b/d');
  await pool.datasets.snapshotMany(['rvs/b@x'], { recursive: true });
  await pool.datasets.destroy('rvs/b@x');
  const result = await pool.datasets.destroyWith('rvs/b@x', { recursive: true });
  assert.deepEqual(result.destroyed.sort(), ['rvs/b/c@x', 'rvs/b/d@x']);
  assert.deepEqual(pool.datasets.list().map((e) => e.name), ['rvs', 'rvs/b', 'rvs/b/c', 'rvs/b/d']);
  await assert.rejects(pool.datasets.destroyWith('rvs/b@x', { recursive: true }), (e: unknown) => (e as { code?: string }).code === 'ENOENT');
  await assert.rejects(pool.datasets.destroyWith('rvs/b@x'), (e: unknown) => (e as { code?: string }).code === 'ENOENT');
  await pool.export();
});

test('refreservation beyond the dataset\'s own quota or refquota is refused (zfs: out of space)', async () => {
  const rig = await makePool('rvf', 9995);
  const pool = rig.pool;
  await pool.datasets.create('rvf/q', { properties: { quota: '10M' } });
  await pool.datasets.create('rvf/r', { properties: { refquota: '10M' } });
  for (const name of ['rvf/q', 'rvf/r']) {
    await assert.rejects(pool.datasets.setProperty(name, 'refreservation', '20M'), (e: unknown) => (e as { code?: string }).code === 'ENOSPC', name);
    await pool.datasets.setProperty(name, 'refreservation', '5M');
  }
  // With it in place the dataset can still be written up to its quota.
  await put(await pool.datasets.open('rvf/q'), 'f', new Random(9996).bytes(4 * MiB));
  await pool.export();
});

test('quota with copies=2: dirty data counts at its copies, so a burst of writes cannot land past the quota', async () => {
  const rig = await makePool('rvk', 9997);
  const pool = rig.pool;
  await pool.datasets.create('rvk/a', { properties: { quota: '6M', copies: '2', compression: 'off' } });
  const fs = await pool.datasets.open('rvk/a');
  const ino = (await fs.create(fs.rootIno, 'f', { mode: 0o644 })).ino;
  const rnd = new Random(9998);
  let refused = false;
  for (let at = 0; at < 5 * MiB && !refused; at += 256 * 1024) {
    try {
      await fs.write(ino, at, rnd.bytes(256 * 1024));
    } catch (e) {
      assert.equal((e as { code?: string }).code, 'EDQUOT');
      refused = true;
    }
  }
  assert.ok(refused, '5 MiB at two copies is 10 MiB: past a 6 MiB quota');
  await pool.sync();
  const used = await num(pool, 'rvk/a', 'used');
  assert.ok(used <= 6 * MiB, `used ${used} stays within the 6 MiB quota`);
  await pool.export();
});

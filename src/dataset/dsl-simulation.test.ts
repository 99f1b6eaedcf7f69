/**
 * Seeded dataset simulation: random creates, writes, deletes, snapshots (some recursive), clones,
 * rollbacks, destroys (some -r), renames, promotes, property changes and power cuts, checked against a model of every dataset's and snapshot's files, with the pool's space
 * check exact at every sync and import. CAIRN_SEED=n replays one seed; CAIRN_DSIM_SEEDS=n runs n seeds.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPool, importPool } from '../pool/index.js';
import type { DeviceOpenFn } from '../pool/api.js';
import type { Pool } from '../pool/pool.js';
import type { FileSystemApi } from '../fs/types.js';
import { FaultyDevice } from '../testing/faulty-device.js';
import { Random } from '../testing/random.js';
import { isCairnError } from '../util/errors.js';

const MiB = 1024 * 1024;
type Files = Map<string, Buffer>;
type Model = Map<string, Files>; // dataset or snapshot name → files

function copyModel(m: Model): Model {
  return new Map([...m].map(([k, v]) => [k, new Map(v)]));
}

async function listFiles(fs: FileSystemApi): Promise<Files> {
  const out: Files = new Map();
  let cursor: bigint | null = 0n;
  while (cursor !== null) {
    const page: { entries: { name: string }[]; cursor: bigint | null } = await fs.readdir(fs.rootIno, cursor, 1000);
    for (const e of page.entries) {
      if (e.name === '.' || e.name === '..') continue;
      const st = await fs.lookup(fs.rootIno, e.name);
      out.set(e.name, await fs.read(st.ino, 0, st.sizeBytes));
    }
    cursor = page.cursor;
  }
  return out;
}

async function check(pool: Pool, model: Model, seed: number, when: string): Promise<void> {
  const names = pool.datasets.list().map((e) => e.name).sort();
  assert.deepEqual(names, [...model.keys()].sort(), `seed ${seed} ${when}: dataset names`);
  for (const [name, files] of model) {
    const got = await listFiles(await pool.datasets.open(name));
    assert.deepEqual([...got.keys()].sort(), [...files.keys()].sort(), `seed ${seed} ${when}: files of ${name}`);
    for (const [f, data] of files) assert.ok(got.get(f)?.equals(data), `seed ${seed} ${when}: ${name}:${f}`);
  }
  const s = await pool.spaceCheck();
  assert.equal(s.allocatedBytes, s.reachableBytes + s.deferredBytes, `seed ${seed} ${when}: space check`);
  // The figures kept in memory (what get and the quota checks use) agree with a count of the dead lists.
  for (const name of names.filter((n) => !n.includes('@'))) {
    const exact = await pool.datasets.space(name);
    const got = new Map((await pool.datasets.getProperties(name, ['used', 'usedbysnapshots', 'referenced'])).map((r) => [r.name, r.value]));
    assert.equal(got.get('usedbysnapshots'), exact.usedBySnapshotsBytes, `seed ${seed} ${when}: usedbysnapshots of ${name}`);
    assert.equal(got.get('used'), exact.usedBytes, `seed ${seed} ${when}: used of ${name}`);
    assert.equal(got.get('referenced'), exact.referencedBytes, `seed ${seed} ${when}: referenced of ${name}`);
  }
}

/** Renames every model entry at or below `from` (its descendants and snapshots) to start with `to`. */
function renameInModel(model: Model, from: string, to: string): void {
  for (const key of [...model.keys()]) {
    if (key === from || key.startsWith(`${from}/`) || key.startsWith(`${from}@`)) {
      const files = model.get(key) as Files;
      model.delete(key);
      model.set(to + key.slice(from.length), files);
    }
  }
}

async function runSeed(seed: number, steps: number): Promise<void> {
  const rnd = new Random(seed);
  const devices = new Map<string, FaultyDevice>();
  const paths = [`/dsim/${seed}/a`, `/dsim/${seed}/b`];
  for (const p of paths) devices.set(p, new FaultyDevice({ sizeBytes: 96 * MiB, seed: rnd.nextU32(), path: p }));
  const openDevice: DeviceOpenFn = async (path) => devices.get(path) as FaultyDevice;
  const poolName = `ds${seed}`;
  let pool = (await createPool({ name: poolName, vdevSpec: ['mirror', ...paths], openDevice, cacheSizeBytes: 4 * MiB })) as unknown as Pool;
  let live: Model = new Map([[poolName, new Map()]]);
  let synced = copyModel(live);
  let counter = 0;
  try {
    for (let step = 0; step < steps; step++) {
      const r = rnd.next();
      const heads = [...live.keys()].filter((n) => !n.includes('@'));
      const snaps = [...live.keys()].filter((n) => n.includes('@'));
      const when = `step ${step}`;
      if (r < 0.35) {
        const ds = rnd.pick(heads);
        const file = `f${rnd.int(6)}`;
        const data = rnd.bytes(rnd.int(200_000));
        const fs = await pool.datasets.open(ds);
        let ino: number;
        try {
          ino = (await fs.lookup(fs.rootIno, file)).ino;
          await fs.setattr(ino, { sizeBytes: 0 });
        } catch (e) {
          if (!isCairnError(e, 'ENOENT')) throw e;
          ino = (await fs.create(fs.rootIno, file, { mode: 0o644 })).ino;
        }
        await fs.write(ino, 0, data);
        live.get(ds)?.set(file, data);
      } else if (r < 0.45) {
        const ds = rnd.pick(heads);
        const files = live.get(ds) as Files;
        const file = [...files.keys()][0];
        if (file === undefined) continue;
        const fs = await pool.datasets.open(ds);
        await fs.unlink(fs.rootIno, file);
        files.delete(file);
      } else if (r < 0.52) {
        const name = `${rnd.pick(heads)}/d${counter++}`;
        if (name.split('/').length > 4) continue;
        await pool.datasets.create(name);
        live.set(name, new Map());
      } else if (r < 0.64) {
        const ds = rnd.pick(heads);
        const name = `${ds}@s${counter++}`;
        await pool.datasets.snapshot(name);
        live.set(name, new Map(live.get(ds)));
        synced = copyModel(live);
      } else if (r < 0.69 && snaps.length > 0) {
        const snap = rnd.pick(snaps);
        const name = `${snap.slice(0, snap.indexOf('@'))}/c${counter++}`;
        if (name.split('/').length > 4) continue;
        await pool.datasets.clone(snap, name);
        live.set(name, new Map(live.get(snap)));
        synced = copyModel(live);
      } else if (r < 0.74 && snaps.length > 0) {
        const snap = rnd.pick(snaps);
        const head = snap.slice(0, snap.indexOf('@'));
        try {
          await pool.datasets.rollback(snap);
          live.set(head, new Map(live.get(snap)));
          synced = copyModel(live);
        } catch (e) {
          if (!isCairnError(e, 'EEXIST')) throw e; // newer snapshots exist
        }
      } else if (r < 0.84) {
        const victims = [...snaps, ...heads.filter((h) => h !== poolName)];
        if (victims.length === 0) continue;
        const name = rnd.pick(victims);
        try {
          await pool.datasets.destroy(name);
          live.delete(name);
          synced = copyModel(live);
        } catch (e) {
          if (!isCairnError(e, 'EBUSY')) throw e; // children, snapshots or clones
        }
      } else if (r < 0.86) {
        const candidates = heads.filter((h) => h !== poolName).concat(snaps);
        if (candidates.length === 0) continue;
        const from = rnd.pick(candidates);
        if (from.includes('@')) {
          const to = `${from.slice(0, from.indexOf('@'))}@r${counter++}`;
          await pool.datasets.rename(from, to);
          renameInModel(live, from, to);
        } else {
          const parent = rnd.pick(heads.filter((h) => h !== from && !h.startsWith(`${from}/`)));
          const to = `${parent}/r${counter++}`;
          const depth = Math.max(...[...live.keys()].filter((k) => k === from || k.startsWith(`${from}/`)).map((k) => k.split('@')[0]?.split('/').length ?? 0));
          if (to.split('/').length + depth - from.split('/').length > 5) continue;
          await pool.datasets.rename(from, to);
          renameInModel(live, from, to);
        }
      } else if (r < 0.88) {
        const clones: Array<[string, string]> = [];
        for (const h of heads) {
          const origin = (await pool.datasets.getProperties(h, ['origin']))[0]?.value;
          if (typeof origin === 'string' && origin !== '-') clones.push([h, origin]);
        }
        if (clones.length === 0) continue;
        const [clone, origin] = rnd.pick(clones);
        const oldHead = origin.slice(0, origin.indexOf('@'));
        const txgOf = new Map(pool.datasets.list().map((e) => [e.name, e.createTxg]));
        const moving = snaps.filter((n) => n.startsWith(`${oldHead}@`) && (txgOf.get(n) ?? 0) <= (txgOf.get(origin) ?? 0));
        try {
          await pool.datasets.promote(clone);
        } catch (e) {
          if (!isCairnError(e, 'EEXIST')) throw e; // a snapshot name clash
          continue;
        }
        for (const n of moving) renameInModel(live, n, `${clone}${n.slice(n.indexOf('@'))}`);
        synced = copyModel(live);
      } else if (r < 0.9) {
        const ds = rnd.pick(heads);
        if (rnd.next() < 0.5) await pool.datasets.setProperty(ds, 'compression', rnd.pick(['off', 'on', 'zstd']));
        else await pool.datasets.setProperty(ds, 'copies', rnd.pick(['1', '2']));
      } else if (r < 0.91) {
        const ds = rnd.pick(heads);
        const made = await pool.datasets.snapshotMany([`${ds}@rs${counter++}`], { recursive: true });
        for (const name of made) live.set(name, new Map(live.get(name.slice(0, name.indexOf('@')))));
        synced = copyModel(live);
      } else if (r < 0.92) {
        const candidates = heads.filter((h) => h !== poolName);
        if (candidates.length === 0) continue;
        const ds = rnd.pick(candidates);
        try {
          const result = await pool.datasets.destroyWith(ds, { recursive: true });
          for (const name of result.destroyed) live.delete(name);
          assert.deepEqual(result.destroyed.sort(), [...live.keys(), ...result.destroyed].filter((k) => k === ds || k.startsWith(`${ds}/`) || k.startsWith(`${ds}@`)).sort());
        } catch (e) {
          if (!isCairnError(e, 'EBUSY')) throw e; // a clone outside the tree depends on it
        }
        synced = copyModel(live);
      } else if (r < 0.96) {
        await pool.sync();
        synced = copyModel(live);
        await check(pool, live, seed, when);
      } else {
        for (const d of devices.values()) d.powerCut();
        await pool.abandon();
        pool = (await importPool({ searchPaths: paths, openDevice, cacheSizeBytes: 4 * MiB })) as unknown as Pool;
        live = copyModel(synced);
        await check(pool, live, seed, `${when} (after power cut)`);
      }
    }
    await check(pool, live, seed, 'end');
    await pool.export();
  } catch (e) {
    console.error(`dataset simulation failed: CAIRN_SEED=${seed}`);
    await pool.abandon().catch(() => undefined);
    throw e;
  }
}

test('dataset simulation: random dataset operations and power cuts match the model, space exact', async () => {
  const fromEnv = process.env['CAIRN_SEED'];
  const count = Number(process.env['CAIRN_DSIM_SEEDS'] ?? (process.env['CAIRN_SOAK'] ? 200 : 4));
  const seeds = fromEnv ? [Number(fromEnv)] : Array.from({ length: count }, (_, i) => i + 1);
  for (const seed of seeds) await runSeed(seed, 90);
});

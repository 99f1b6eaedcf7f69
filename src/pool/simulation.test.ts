/**
 * The seeded simulation (ztest's descendant): a pool on fault-injecting in-memory disks runs a random
 * file workload while the disks flip bits on read, lose or tear unflushed writes on power cuts, and
 * die. After every crash the pool is imported again and must hold exactly the files of its last synced
 * txg (or of the txg that was syncing, if its uberblock made it), read back byte for byte, and scrub
 * clean. A failing run prints its seed; CAIRN_SEED=N reruns one seed, CAIRN_SIM_SEEDS=N (from
 * CAIRN_SIM_FIRST_SEED) runs N seeds, CAIRN_SOAK=1 runs 2000 longer ones.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPool, importPool } from './index.js';
import type { DeviceOpenFn, PoolHandle } from './api.js';
import { FaultyDevice } from '../testing/faulty-device.js';
import { Random } from '../testing/random.js';
import { isCairnError } from '../util/errors.js';
import type { Pool } from './pool.js';

const MiB = 1024 * 1024;
type Model = Map<string, Buffer>;
type CrashablePool = PoolHandle & Pick<Pool, 'abandon' | 'spaceCheck'>;

interface Layout {
  spec: (paths: string[]) => string[];
  devices: number;
  /** Devices that may be damaged at once without losing data. */
  redundancy: number;
}

const LAYOUTS: Layout[] = [
  { spec: (p) => ['mirror', ...p], devices: 2, redundancy: 1 },
  { spec: (p) => ['raidz1', ...p], devices: 3, redundancy: 1 },
  { spec: (p) => ['raidz2', ...p], devices: 4, redundancy: 2 },
  { spec: (p) => [...p], devices: 1, redundancy: 0 },
];

let readsDone = 0;

/** Every other read goes through readInto (a FUSE read's path: whole blocks from the device straight into the buffer). */
async function readAll(pool: PoolHandle, name: string): Promise<Buffer> {
  const st = await pool.fs.lookup(pool.fs.rootIno, name);
  if (readsDone++ % 2 === 0) return pool.fs.read(st.ino, 0, st.sizeBytes);
  const target = Buffer.alloc(st.sizeBytes, 0xee);
  const n = await pool.fs.readInto(st.ino, 0, target);
  return target.subarray(0, n);
}

async function checkAgainst(pool: PoolHandle, models: Model[], seed: number, when: string): Promise<Model> {
  const names: string[] = [];
  for (let cursor: bigint | null = 0n; cursor !== null;) {
    const page: { entries: { name: string }[]; cursor: bigint | null } = await pool.fs.readdir(pool.fs.rootIno, cursor, 1000);
    names.push(...page.entries.map((e) => e.name));
    cursor = page.cursor;
  }
  names.sort();
  for (const model of models) {
    if (names.join('/') !== [...model.keys()].sort().join('/')) continue;
    let same = true;
    for (const [name, data] of model) {
      if (!(await readAll(pool, name)).equals(data)) {
        same = false;
        break;
      }
    }
    if (same) return model;
  }
  assert.fail(`seed ${seed}: after ${when} the pool holds [${names.join(', ')}], matching no synced state`);
}

async function runSeed(seed: number, steps: number): Promise<void> {
  const rnd = new Random(seed);
  const layout = rnd.pick(LAYOUTS);
  const devices = new Map<string, FaultyDevice>();
  const paths: string[] = [];
  for (let i = 0; i < layout.devices; i++) {
    const path = `/sim/${seed}/d${i}`;
    paths.push(path);
    devices.set(path, new FaultyDevice({ sizeBytes: 64 * MiB, seed: rnd.nextU32(), path }));
  }
  const openDevice: DeviceOpenFn = async (path) => {
    const d = devices.get(path);
    if (!d) throw new Error(`no simulated device ${path}`);
    return d;
  };
  let pool = (await createPool({ name: `sim${seed}`, vdevSpec: layout.spec(paths), openDevice, cacheSizeBytes: 4 * MiB })) as CrashablePool;
  let synced: Model = new Map();
  const live: Model = new Map();
  const reimport = async (): Promise<void> => {
    pool = (await importPool({ searchPaths: paths, openDevice, cacheSizeBytes: 4 * MiB })) as CrashablePool;
  };
  try {
    for (let step = 0; step < steps; step++) {
      const r = rnd.next();
      const names = [...live.keys()];
      if (process.env['CAIRN_SIM_TRACE']) {
        const dead = [...devices.values()].filter((d) => d.isDead).map((d) => d.path).join(',');
        console.error(`step ${step} r=${r.toFixed(3)} txg=${(pool as unknown as Pool).txg} health=${pool.status().health} dead=[${dead}] live=[${[...live.keys()].sort().join(',')}] synced=[${[...synced.keys()].sort().join(',')}]`);
      }
      if (r < 0.35 || names.length === 0) {
        const name = `f${rnd.int(40)}`;
        const data = rnd.chance(0.3) ? Buffer.alloc(rnd.int(200_000), rnd.int(256)) : rnd.bytes(rnd.int(300_000));
        if (live.has(name)) {
          const st = await pool.fs.lookup(pool.fs.rootIno, name);
          await pool.fs.setattr(st.ino, { sizeBytes: 0 });
          await pool.fs.write(st.ino, 0, data);
        } else {
          const st = await pool.fs.create(pool.fs.rootIno, name, { mode: 0o644 });
          await pool.fs.write(st.ino, 0, data);
        }
        live.set(name, data);
      } else if (r < 0.5) {
        const name = rnd.pick(names);
        const old = live.get(name) as Buffer;
        const at = rnd.int(old.length + 10_000);
        const patch = rnd.bytes(rnd.int(50_000) + 1);
        const next = Buffer.alloc(Math.max(old.length, at + patch.length));
        old.copy(next);
        patch.copy(next, at);
        const st = await pool.fs.lookup(pool.fs.rootIno, name);
        await pool.fs.write(st.ino, at, patch);
        live.set(name, next);
      } else if (r < 0.6) {
        const name = rnd.pick(names);
        await pool.fs.unlink(pool.fs.rootIno, name);
        live.delete(name);
      } else if (r < 0.8) {
        await pool.sync();
        synced = new Map(live);
      } else if (r < 0.83 && layout.redundancy > 0) {
        // The last device dies mid-workload, or comes back and is brought online (resilvered).
        const last = [...devices.values()][layout.devices - 1] as FaultyDevice;
        if (!last.isDead) {
          last.die();
        } else {
          last.revive();
          // online resilvers (syncing first) only a device the pool saw fail; one that died unnoticed
          // (no I/O reached it) comes back with nothing to do and no txg, so sync explicitly.
          await pool.online(last.path);
          await pool.sync();
          synced = new Map(live);
        }
      } else if (r < 0.86) {
        // Bit flips on reads of devices within what redundancy still covers: every read stays right.
        const dead = [...devices.values()].filter((d) => d.isDead).length;
        const victims = [...devices.values()].slice(0, layout.redundancy - dead);
        for (const d of victims) d.faults.readBitFlipProbability = 0.2;
        await pool.sync();
        synced = new Map(live);
        for (const name of names.slice(0, 5)) assert.ok((await readAll(pool, name)).equals(live.get(name) as Buffer), `seed ${seed}: read under bit flips`);
        for (const d of victims) d.faults.readBitFlipProbability = 0;
      } else if (r < 0.93) {
        // Power cut between operations: unsynced changes are lost, synced ones kept.
        for (const d of devices.values()) d.powerCut();
        await pool.abandon();
        await reimport();
        const got = await checkAgainst(pool, [synced], seed, `power cut at step ${step}`);
        live.clear();
        for (const [k, v] of got) live.set(k, v);
      } else {
        // Power cut in the middle of a txg sync, at a seeded moment.
        const before = new Map(synced);
        const during = new Map(live);
        const syncing = pool.sync().catch((e: unknown) => e);
        for (let i = rnd.int(30); i > 0; i--) await new Promise((resolve) => setImmediate(resolve));
        for (const d of devices.values()) {
          d.powerCut();
          d.die();
        }
        await syncing;
        await pool.abandon();
        for (const d of devices.values()) d.revive();
        await reimport();
        const got = await checkAgainst(pool, [before, during], seed, `power cut during sync at step ${step}`);
        synced = new Map(got);
        live.clear();
        for (const [k, v] of got) live.set(k, v);
      }
    }
    for (const d of devices.values()) {
      if (d.isDead) {
        d.revive();
        await pool.online(d.path);
      }
    }
    await pool.sync();
    await pool.scrub({ wait: true });
    const scan = pool.status().scan;
    assert.equal(scan?.errors, 0, `seed ${seed}: scrub found permanent errors`);
    await checkAgainst(pool, [live], seed, 'the final scrub');
    const space = await pool.spaceCheck();
    assert.equal(space.allocatedBytes, space.reachableBytes + space.deferredBytes, `seed ${seed}: allocated space differs from reachable + deferred`);
    // Damage up to the redundancy level behind the pool's back: the scrub repairs all of it.
    if (layout.redundancy > 0) {
      await pool.export();
      for (const d of [...devices.values()].slice(0, layout.redundancy)) d.corrupt(4 * MiB, 20 * MiB);
      await reimport();
      await pool.scrub({ wait: true });
      assert.equal(pool.status().scan?.errors, 0, `seed ${seed}: scrub after corruption found permanent errors`);
      await checkAgainst(pool, [live], seed, 'corruption and scrub');
      await pool.scrub({ wait: true });
      assert.equal(pool.status().scan?.repairedBytes, 0, `seed ${seed}: a second scrub still repaired data`);
    }
    await pool.export();
  } catch (e) {
    console.error(`simulation failed: CAIRN_SEED=${seed} (layout ${layout.devices} devices, redundancy ${layout.redundancy})`);
    if (isCairnError(e)) console.error(e.code, e.message);
    await pool.abandon().catch(() => undefined);
    throw e;
  }
}

test('simulation: seeded workloads with power cuts, torn writes, bit flips and dead disks', async () => {
  const fromEnv = process.env['CAIRN_SEED'];
  const count = Number(process.env['CAIRN_SIM_SEEDS'] ?? (process.env['CAIRN_SOAK'] ? 2000 : 24));
  const first = Number(process.env['CAIRN_SIM_FIRST_SEED'] ?? 1);
  const seeds = fromEnv ? [Number(fromEnv)] : Array.from({ length: count }, (_, i) => first + i);
  for (const seed of seeds) await runSeed(seed, process.env['CAIRN_SOAK'] ? 120 : 60);
});

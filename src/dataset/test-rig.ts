/** Shared by the dataset tests: a mirror pool on FaultyDevices, file helpers and space checks. */
import assert from 'node:assert/strict';
import { createPool, importPool } from '../pool/index.js';
import type { DeviceOpenFn } from '../pool/api.js';
import type { Pool } from '../pool/pool.js';
import type { FileSystemApi } from '../fs/types.js';
import { FaultyDevice } from '../testing/faulty-device.js';
import { isCairnError } from '../util/errors.js';

export const MiB = 1024 * 1024;

export interface Rig {
  pool: Pool;
  devices: Map<string, FaultyDevice>;
  reimport(): Promise<Pool>;
}

export async function makePool(name: string, seed: number): Promise<Rig> {
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

export async function put(fs: FileSystemApi, name: string, data: Buffer): Promise<void> {
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

export async function get(fs: FileSystemApi, name: string): Promise<Buffer> {
  const st = await fs.lookup(fs.rootIno, name);
  return fs.read(st.ino, 0, st.sizeBytes);
}

export async function assertSpaceExact(pool: Pool, when: string): Promise<void> {
  const s = await pool.spaceCheck();
  assert.equal(s.allocatedBytes, s.reachableBytes + s.deferredBytes, `${when}: allocated ${s.allocatedBytes} != reachable ${s.reachableBytes} + deferred ${s.deferredBytes}`);
}

/** Lets deferred frees come back (DEFER_TXGS txgs must pass). */
export async function settle(pool: Pool): Promise<void> {
  for (let i = 0; i < 4; i++) {
    await pool.logHistory('settle');
    await pool.sync();
  }
}

export function code(c: string): (e: unknown) => boolean {
  return (e) => isCairnError(e, c as never);
}


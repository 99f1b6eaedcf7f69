/**
 * The pool layer (OpenZFS SPA): create, import and own a pool of vdevs. Theory in pool.ts (txgs,
 * labels, ownership), mos.ts (the meta object set), metaslab.ts (space), scan.ts (scrub, resilver).
 * This entry file is the only one other layers import.
 */
import { readdir, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { CairnError } from '../util/errors.js';
import { buildVdevConfig, openFileDevice, openVdev, parseVdevSpec } from '../vdev/index.js';
import type { BlockDevice, Vdev, VdevConfig } from '../vdev/types.js';
import type { CreatePoolOptions, DeviceOpenFn, ImportablePool, ImportPoolOptions, PoolHandle } from './api.js';
import { newestConfig, readDeviceLabels, type LabelConfig, type Uberblock } from './label.js';
import { ARC_SIZE_DEFAULT_BYTES, Pool } from './pool.js';

export type * from './api.js';
export type * from './types.js';
export { Pool } from './pool.js';

/** Names that would read as vdev keywords, as zpool refuses them. */
const RESERVED_NAMES = /^(mirror|raidz[0-9]*|draid[0-9]*|spare|log|cache|special|dedup)/;

export function validatePoolName(name: string): void {
  if (!/^[A-Za-z][A-Za-z0-9_.:-]*$/.test(name)) {
    throw new CairnError('EINVAL', `invalid pool name '${name}': must begin with a letter and contain only letters, digits, '_', '-', '.', ':'`);
  }
  if (name.length > 240) throw new CairnError('ENAMETOOLONG', `pool name '${name}' is too long`);
  if (RESERVED_NAMES.test(name)) throw new CairnError('EINVAL', `invalid pool name '${name}': name is reserved`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Refuses a pool another live process owns (invariant 5). */
function checkNotInUse(config: LabelConfig, force: boolean): void {
  if (config.state !== 'active') return;
  if (config.hostname === hostname()) {
    if (config.pid !== process.pid && isAlive(config.pid) && !force) {
      throw new CairnError('EPOOLINUSE', `pool '${config.name}' is in use by process ${config.pid} on this host (use -f if that process is not Cairn)`);
    }
    return;
  }
  if (!force) {
    throw new CairnError('EPOOLINUSE', `pool '${config.name}' may be in use by host '${config.hostname}'; use -f to import it anyway`);
  }
}

export async function createPool(options: CreatePoolOptions): Promise<PoolHandle> {
  validatePoolName(options.name);
  const openDevice = options.openDevice ?? openFileDevice;
  const spec = parseVdevSpec(options.vdevSpec);
  const devices = new Map<string, BlockDevice>();
  try {
    for (const path of spec.flatMap((g) => g.paths)) {
      const device = await openDevice(path, options.createSizeBytes === undefined ? { exclusive: true } : { exclusive: true, create: options.createSizeBytes });
      devices.set(path, device);
      const existing = newestConfig(await readDeviceLabels(device));
      if (existing && existing.state !== 'destroyed' && options.force !== true) {
        throw new CairnError('EFOREIGN', `${path} is part of ${existing.state} pool '${existing.name}' (use -f to override)`, { pool: existing.name });
      }
    }
    const configs = buildVdevConfig(spec, devices);
    const vdevs: Vdev[] = [];
    for (const cfg of configs) vdevs.push(await openVdev(cfg, async (p) => devices.get(p) ?? null));
    return await Pool.create(options.name, vdevs, {
      arcSizeBytes: options.cacheSizeBytes ?? ARC_SIZE_DEFAULT_BYTES,
      properties: options.properties ?? {},
      openDevice,
    });
  } catch (e) {
    await Promise.allSettled([...devices.values()].map((d) => d.close()));
    throw e;
  }
}

interface FoundPool {
  config: LabelConfig;
  /** Leaf GUID → path where it was found. */
  paths: Map<string, string>;
  /** Leaf GUID → txg of the label config that claimed it (the newest claim wins). */
  claimTxg: Map<string, number>;
  uberblocks: Uberblock[];
}

async function candidateFiles(searchPaths: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const p of searchPaths) {
    let s;
    try {
      s = await stat(p);
    } catch {
      continue;
    }
    if (s.isDirectory()) {
      for (const name of (await readdir(p)).sort()) {
        const full = join(p, name);
        try {
          const st = await stat(full);
          if (st.isFile() || st.isBlockDevice()) out.push(resolve(full));
        } catch {
          // vanished or unreadable: not a candidate
        }
      }
    } else if (s.isFile() || s.isBlockDevice()) {
      out.push(resolve(p));
    }
  }
  return out;
}

async function scan(searchPaths: string[], openDevice?: DeviceOpenFn): Promise<Map<string, FoundPool>> {
  const found = new Map<string, FoundPool>();
  const open = openDevice ?? openFileDevice;
  for (const path of openDevice ? searchPaths : await candidateFiles(searchPaths)) {
    let device: BlockDevice;
    try {
      device = await open(path, { readOnly: true });
    } catch {
      continue;
    }
    try {
      const labels = await readDeviceLabels(device);
      const config = newestConfig(labels);
      if (!config || config.state === 'destroyed') continue;
      let entry = found.get(config.poolGuid);
      if (!entry) {
        entry = { config, paths: new Map(), claimTxg: new Map(), uberblocks: [] };
        found.set(config.poolGuid, entry);
      } else if (config.txg > entry.config.txg) {
        entry.config = config;
      }
      if ((entry.claimTxg.get(config.guid) ?? -1) < config.txg) {
        entry.paths.set(config.guid, path);
        entry.claimTxg.set(config.guid, config.txg);
      }
      for (const ub of labels.uberblocks) if (ub.poolGuid === config.poolGuid) entry.uberblocks.push(ub);
    } finally {
      await device.close();
    }
  }
  return found;
}

function leafGuids(configs: VdevConfig[]): string[] {
  return configs.flatMap((c) => (c.children ? leafGuids(c.children) : [c.guid]));
}

function health(found: FoundPool): string {
  const all = leafGuids(found.config.vdevTree);
  const present = all.filter((g) => found.paths.has(g)).length;
  return present === all.length ? 'ONLINE' : present === 0 ? 'UNAVAIL' : 'DEGRADED';
}

export async function findImportablePools(searchPaths: string[]): Promise<ImportablePool[]> {
  const found = await scan(searchPaths);
  return [...found.values()].map((f) => ({
    name: f.config.name, guid: f.config.poolGuid, health: health(f), devices: [...f.paths.values()],
  }));
}

/** Rewrites leaf paths to where the devices were found (they may have moved since export). */
function relocate(configs: VdevConfig[], paths: Map<string, string>): VdevConfig[] {
  return configs.map((c) => {
    if (c.children) return { ...c, children: relocate(c.children, paths) };
    const path = paths.get(c.guid);
    return path === undefined ? c : { ...c, path };
  });
}

export async function importPool(options: ImportPoolOptions): Promise<PoolHandle> {
  const found = await scan(options.searchPaths, options.openDevice);
  const openDevice = options.openDevice ?? openFileDevice;
  let matches = [...found.values()];
  if (options.nameOrGuid !== undefined) {
    const key = options.nameOrGuid;
    matches = matches.filter((f) => f.config.name === key || f.config.poolGuid === key.toLowerCase().padStart(16, '0'));
  }
  if (matches.length === 0) {
    throw new CairnError('ENOENT', options.nameOrGuid === undefined ? 'no pools available to import' : `cannot import '${options.nameOrGuid}': no such pool available`);
  }
  if (matches.length > 1) {
    throw new CairnError('EINVAL', `more than one pool matches; import by GUID: ${matches.map((m) => `${m.config.name} (${m.config.poolGuid})`).join(', ')}`);
  }
  const target = matches[0] as FoundPool;
  checkNotInUse(target.config, options.force === true);
  const vdevConfigs = relocate(target.config.vdevTree, target.paths);
  const opened: BlockDevice[] = [];
  const vdevs: Vdev[] = [];
  try {
    for (const cfg of vdevConfigs) {
      vdevs.push(await openVdev(cfg, async (p) => {
        try {
          const d = await openDevice(p, { exclusive: true });
          opened.push(d);
          return d;
        } catch (e) {
          if (e instanceof CairnError && e.code === 'EBUSY') throw new CairnError('EPOOLINUSE', `pool '${target.config.name}' is already imported by this process`);
          return null;
        }
      }));
    }
    const missing = vdevs.filter((v) => v.state === 'UNAVAIL' || v.state === 'FAULTED');
    if (missing.length > 0) {
      throw new CairnError('ENOREPLICAS', `cannot import '${target.config.name}': ${missing.length} top-level vdev(s) have too many missing devices (${missing.map((v) => v.config().path ?? `${v.kind}-${v.id}`).join(', ')})`);
    }
    return await Pool.open(target.config, vdevs, target.uberblocks, { arcSizeBytes: options.cacheSizeBytes ?? ARC_SIZE_DEFAULT_BYTES, openDevice });
  } catch (e) {
    await Promise.allSettled(opened.map((d) => d.close()));
    throw e;
  }
}

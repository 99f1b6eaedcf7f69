/**
 * The vdev tree: the zpool-style spec grammar, building a VdevConfig from a spec and opened devices, and
 * reopening a tree of live Vdevs from a saved VdevConfig.
 *
 * Grammar (as zpool create/add): tokens are device paths or group keywords. A path outside any group is
 * a top-level vdev of its own (a stripe); `mirror`, `raidz` (= raidz1), `raidz1`, `raidz2`, `raidz3`
 * start a group that takes every following path up to the next keyword. A device path contains a `/`,
 * which is how a misspelt keyword is told from a device.
 */
import { CairnError } from '../util/errors.js';
import { assert } from '../util/assert.js';
import { DEVICE_SIZE_MIN_BYTES, leafAllocatableBytes } from './layout.js';
import { randomGuid } from './guid.js';
import { LeafVdev } from './leaf.js';
import { MirrorVdev } from './mirror.js';
import { RaidzVdev } from './raidz.js';
import type { BlockDevice, Vdev, VdevConfig, VdevKind } from './types.js';

export const ASHIFT_DEFAULT = 12;

export interface VdevSpecGroup {
  type: VdevKind;
  paths: string[];
  /** raidz only. */
  nparity?: number;
}

const GROUP_KEYWORDS: Record<string, { type: VdevKind; nparity?: number }> = {
  mirror: { type: 'mirror' },
  raidz: { type: 'raidz', nparity: 1 },
  raidz1: { type: 'raidz', nparity: 1 },
  raidz2: { type: 'raidz', nparity: 2 },
  raidz3: { type: 'raidz', nparity: 3 },
};

/** zpool keywords Cairn does not implement: refused by name rather than as unknown words. */
const UNSUPPORTED_KEYWORDS = new Set(['spare', 'log', 'cache', 'special', 'dedup', 'draid', 'draid1', 'draid2', 'draid3']);

function badSpec(message: string): CairnError {
  return new CairnError('EBADSPEC', message);
}

function groupName(group: VdevSpecGroup): string {
  return group.type === 'raidz' ? `raidz${group.nparity ?? 1}` : group.type;
}

export function parseVdevSpec(tokens: readonly string[]): VdevSpecGroup[] {
  const groups: VdevSpecGroup[] = [];
  let open: VdevSpecGroup | null = null;
  for (const token of tokens) {
    const keyword = GROUP_KEYWORDS[token];
    if (keyword !== undefined) {
      open = keyword.nparity === undefined
        ? { type: keyword.type, paths: [] }
        : { type: keyword.type, paths: [], nparity: keyword.nparity };
      groups.push(open);
    } else if (token.includes('/')) {
      if (open === null) groups.push({ type: 'file', paths: [token] });
      else open.paths.push(token);
    } else if (UNSUPPORTED_KEYWORDS.has(token)) {
      throw badSpec(`'${token}' vdevs are not supported`);
    } else {
      throw badSpec(`unknown keyword '${token}' (device paths must contain a '/'; groups are mirror, raidz, raidz1, raidz2, raidz3)`);
    }
  }
  if (groups.length === 0) throw badSpec('no devices given');
  const seen = new Set<string>();
  for (const group of groups) {
    const name = groupName(group);
    if (group.paths.length === 0) throw badSpec(`${name} group has no devices`);
    if (group.type === 'mirror' && group.paths.length < 2) {
      throw badSpec(`a mirror needs at least 2 devices, got 1 (${group.paths[0]})`);
    }
    const nparity = group.nparity ?? 0;
    if (group.type === 'raidz' && group.paths.length < nparity + 1) {
      throw badSpec(`${name} needs at least ${nparity + 1} devices, got ${group.paths.length}`);
    }
    for (const path of group.paths) {
      if (seen.has(path)) throw badSpec(`device ${path} is used more than once`);
      seen.add(path);
    }
  }
  return groups;
}

export interface BuildVdevConfigOptions {
  ashift?: number;
  /** Id of the first top-level vdev (zpool add continues after the existing ones). */
  firstId?: number;
}

/**
 * The config of a new tree: fresh GUIDs, sizes from the devices (a mirror is as large as its smallest
 * side, a raidz is N × its smallest child). Devices below DEVICE_SIZE_MIN_BYTES are refused.
 */
export function buildVdevConfig(
  spec: readonly VdevSpecGroup[], devices: ReadonlyMap<string, BlockDevice>, options: BuildVdevConfigOptions = {},
): VdevConfig[] {
  const ashift = options.ashift ?? ASHIFT_DEFAULT;
  if (!Number.isInteger(ashift) || ashift < 9 || ashift > 16) throw new CairnError('EINVAL', `ashift ${ashift} is not in 9..16`);
  const sector = 2 ** ashift;
  const leafConfig = (path: string, id: number): VdevConfig => {
    const device = devices.get(path);
    if (device === undefined) throw new CairnError('ENOENT', `device ${path} was not opened`);
    if (device.sizeBytes < DEVICE_SIZE_MIN_BYTES) {
      throw new CairnError('EINVAL', `device ${path} is too small (${device.sizeBytes} bytes, at least ${DEVICE_SIZE_MIN_BYTES})`);
    }
    return { type: 'file', guid: randomGuid(), id, ashift, asize: leafAllocatableBytes(device.sizeBytes, ashift), path };
  };
  return spec.map((group, index) => {
    const id = (options.firstId ?? 0) + index;
    if (group.type === 'file') {
      assert(group.paths.length === 1, 'a file group has one path');
      return leafConfig(group.paths[0] as string, id);
    }
    const children = group.paths.map((path, i) => leafConfig(path, i));
    const smallest = Math.min(...children.map((c) => c.asize));
    if (group.type === 'mirror') {
      return { type: 'mirror', guid: randomGuid(), id, ashift, asize: smallest, children };
    }
    const nparity = group.nparity ?? 1;
    return {
      type: 'raidz', guid: randomGuid(), id, ashift, nparity,
      asize: children.length * Math.floor(smallest / sector) * sector, children,
    };
  });
}

/** Returns the device at a path, or null when it is missing (its leaf opens UNAVAIL). */
export type DeviceOpener = (path: string) => Promise<BlockDevice | null>;

/**
 * Reopens live vdevs from a saved config. A missing device, or one now smaller than the config says,
 * gives an UNAVAIL leaf; its parents then run degraded or faulted as their redundancy allows.
 */
export async function openVdevTree(configs: readonly VdevConfig[], openDevice: DeviceOpener): Promise<Vdev[]> {
  const opened: Vdev[] = [];
  try {
    for (const config of configs) opened.push(await openVdev(config, openDevice));
  } catch (e) {
    await Promise.allSettled(opened.map((v) => v.close()));
    throw e;
  }
  return opened;
}

export async function openVdev(config: VdevConfig, openDevice: DeviceOpener): Promise<Vdev> {
  switch (config.type) {
    case 'file': {
      assert(config.path !== undefined, `leaf ${config.guid} has no path`);
      let device = await openDevice(config.path);
      if (device !== null && leafAllocatableBytes(device.sizeBytes, config.ashift) < config.asize) {
        await device.close();
        device = null;
      }
      return new LeafVdev({
        guid: config.guid, id: config.id, ashift: config.ashift, asize: config.asize, path: config.path, device,
        offline: config.offline ?? false,
      });
    }
    case 'mirror':
    case 'raidz': {
      const childConfigs = config.children ?? [];
      if (childConfigs.length === 0) throw new CairnError('EBADSPEC', `${config.type} ${config.guid} has no children in its config`);
      const children: Vdev[] = [];
      try {
        for (const child of childConfigs) children.push(await openVdev(child, openDevice));
      } catch (e) {
        await Promise.allSettled(children.map((v) => v.close()));
        throw e;
      }
      if (config.type === 'mirror') {
        return new MirrorVdev({ guid: config.guid, id: config.id, ashift: config.ashift, asize: config.asize, children });
      }
      return new RaidzVdev({
        guid: config.guid, id: config.id, ashift: config.ashift, asize: config.asize, nparity: config.nparity ?? 1, children,
      });
    }
  }
}

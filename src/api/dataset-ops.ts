/**
 * The dataset verbs' own logic on top of DatasetManager: which datasets a `list`/`get` selection names
 * (names, -r, -d, -t, as zfs_for_each walks them), the order zfs prints them in, and the property rows
 * sent to the CLI. Selection and ordering are pure so they are tested without a pool.
 */
import type { DatasetListEntry, DatasetManager } from '../dataset/index.js';
import type { DatasetType } from '../dataset/properties.js';
import { CairnError } from '../util/errors.js';
import type { DatasetRow, DatasetSelection, WireProperty } from './protocol.js';

export const DATASET_TYPES: readonly DatasetType[] = ['filesystem', 'volume', 'snapshot'];
const DEFAULT_TYPES: readonly DatasetType[] = ['filesystem', 'volume'];

/** "tank/home@monday" → "tank". */
export function poolOfDataset(name: string): string {
  const end = name.search(/[/@]/);
  return end < 0 ? name : name.slice(0, end);
}

/** -t filesystem,snapshot / -t all → the set of types; EINVAL for anything else. */
export function parseTypes(types: readonly string[] | undefined): Set<DatasetType> {
  if (types === undefined || types.length === 0) return new Set(DEFAULT_TYPES);
  const out = new Set<DatasetType>();
  for (const type of types) {
    if (type === 'all') DATASET_TYPES.forEach((t) => out.add(t));
    else if (type === 'fs') out.add('filesystem');
    else if (type === 'vol') out.add('volume');
    else if (type === 'snap') out.add('snapshot');
    else if ((DATASET_TYPES as readonly string[]).includes(type)) out.add(type as DatasetType);
    else throw new CairnError('EINVAL', `invalid type '${type}': must be filesystem, volume, snapshot or all`);
  }
  return out;
}

function headPart(name: string): string {
  const at = name.indexOf('@');
  return at < 0 ? name : name.slice(0, at);
}

function slashes(name: string): number {
  let count = 0;
  for (let i = 0; i < name.length; i++) if (name.charCodeAt(i) === 0x2f) count++;
  return count;
}

/**
 * zfs_compare: datasets by name (byte order), each dataset's snapshots right after it, oldest first.
 * So `list -t all` prints tank, tank@s1, tank/home, tank/home@s1.
 */
export function compareZfsOrder(a: DatasetListEntry, b: DatasetListEntry): number {
  const headA = headPart(a.name);
  const headB = headPart(b.name);
  if (headA !== headB) return headA < headB ? -1 : 1;
  const snapA = a.name.length !== headA.length;
  const snapB = b.name.length !== headB.length;
  if (snapA !== snapB) return snapA ? 1 : -1;
  if (a.createTxg !== b.createTxg) return a.createTxg - b.createTxg;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/**
 * The datasets a selection names, in zfs order. No names: every dataset (recursive). A named snapshot
 * is always listed; a named filesystem with -t snapshot (only) and no -r lists its own snapshots.
 * Depth counts levels below the named dataset; a snapshot is one level below its dataset.
 */
export function selectDatasets(all: readonly DatasetListEntry[], selection: DatasetSelection): DatasetListEntry[] {
  const types = parseTypes(selection.types);
  const depthMax = selection.depth;
  if (depthMax !== undefined && (!Number.isInteger(depthMax) || depthMax < 0)) {
    throw new CairnError('EINVAL', `invalid depth '${depthMax}'`);
  }
  const recursive = selection.recursive === true || depthMax !== undefined;
  const byName = new Map(all.map((entry) => [entry.name, entry]));
  const chosen = new Map<string, DatasetListEntry>();
  const names = selection.names ?? [];
  const bases = names.length > 0 ? names : all.filter((entry) => !/[/@]/.test(entry.name)).map((entry) => entry.name);
  for (const base of bases) {
    const self = byName.get(base);
    if (self === undefined) throw new CairnError('ENOENT', `dataset does not exist: '${base}'`);
    if (self.type === 'snapshot' && names.length > 0) {
      chosen.set(self.name, self);
      continue;
    }
    if (types.has(self.type)) chosen.set(self.name, self);
    const walk = recursive || names.length === 0;
    // `list -t snapshot tank/fs` lists tank/fs's snapshots, as zfs does.
    const ownSnapshots = !types.has(self.type) && types.has('snapshot');
    const baseDepth = slashes(base);
    for (const entry of all) {
      const head = headPart(entry.name);
      const isSnapshot = entry.type === 'snapshot';
      if (!types.has(entry.type)) continue;
      if (!walk) {
        if (ownSnapshots && isSnapshot && head === base) chosen.set(entry.name, entry);
        continue;
      }
      if (head !== base && !head.startsWith(`${base}/`)) continue;
      if (entry.name === base) continue;
      const depth = slashes(head) - baseDepth + (isSnapshot ? 1 : 0);
      if (depthMax !== undefined && depth > depthMax) continue;
      chosen.set(entry.name, entry);
    }
  }
  return [...chosen.values()].sort(compareZfsOrder);
}

/**
 * The resolved properties of one dataset, filtered to `names` when given. Properties that do not apply
 * (or user properties set nowhere) are simply absent; the CLI prints them as '-'.
 */
export async function datasetRow(
  datasets: DatasetManager,
  entry: DatasetListEntry,
  names: readonly string[] | undefined,
): Promise<DatasetRow> {
  let properties: WireProperty[] = (await datasets.getProperties(entry.name)).map((p) => ({
    name: p.name,
    value: p.value,
    source: p.source,
  }));
  if (names !== undefined && names.length > 0) {
    const wanted = new Set(names);
    properties = properties.filter((p) => wanted.has(p.name));
  }
  return { name: entry.name, type: entry.type, properties };
}

/** The snapshots of snapshot's dataset newer than it, newest first (what rollback -r destroys). */
export function newerSnapshots(all: readonly DatasetListEntry[], snapshot: string): string[] {
  const self = all.find((entry) => entry.name === snapshot);
  if (self === undefined) throw new CairnError('ENOENT', `dataset does not exist: '${snapshot}'`);
  if (self.type !== 'snapshot') throw new CairnError('EINVAL', `'${snapshot}' is not a snapshot`);
  const head = headPart(snapshot);
  return all
    .filter((entry) => entry.type === 'snapshot' && headPart(entry.name) === head && entry.createTxg > self.createTxg)
    .sort((a, b) => b.createTxg - a.createTxg)
    .map((entry) => entry.name);
}

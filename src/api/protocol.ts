/**
 * The daemon API on its Unix socket: POST /v1/<verb> with a JSON object body answers
 * { ok: true, result } or { ok: false, error: CairnError.toWire() }; file data streams as the body of
 * PUT / GET /v1/file?dataset=D&path=/x, and a volume's bytes as the body of
 * PUT /v1/volume?dataset=D&offset=N and GET /v1/volume?dataset=D&offset=N&length=L (never buffered
 * whole); `zfs diff` output streams from GET /v1/diff. A GET reports an error that happens after the first byte in the X-Cairn-Error trailer, so a
 * truncated download is never mistaken for a file.
 *
 * A dataset is named as zfs names it ("tank", "tank/home", "tank/home@monday"); its first component is
 * the pool. File verbs take a dataset, and a snapshot's files are read-only (EROFS).
 *
 * Every verb declares its argument schema here; the daemon checks each request against it before
 * touching a pool, so a malformed request is an EPROTO/EINVAL answer and never a daemon crash.
 */
import type { HistoryEntry, ImportablePool, IoStats, PoolSpace, PoolStatus } from '../pool/index.js';
import type { FileKind, Stat } from '../fs/types.js';
import type { DatasetType, PropertyValue } from '../dataset/properties.js';
import { CairnError } from '../util/errors.js';
import type { ErrorCode } from '../util/errors.js';

export const API_PREFIX = '/v1/';
export const FILE_ENDPOINT = '/v1/file';
export const VOLUME_ENDPOINT = '/v1/volume';
/** GET ?from=SNAP[&to=SNAP|FS][&classify=1][&scripted=1][&escape=0]: zfs diff lines, streamed. */
export const DIFF_ENDPOINT = '/v1/diff';
export const ERROR_TRAILER = 'x-cairn-error';
/** JSON request bodies are small; anything bigger is a protocol error, not a reason to buffer. */
export const JSON_BODY_BYTES_MAX = 1024 * 1024;
/** Directory pages: bounded so a huge directory never sits in one response. */
export const LIST_PAGE_ENTRIES_MAX = 1024;

export interface WireError {
  code: ErrorCode;
  message: string;
  data: Record<string, unknown>;
}

export type ApiResponse<T> = { ok: true; result: T } | { ok: false; error: WireError };

/** A Stat with nanosecond times as decimal strings (JSON has no bigint); birth time is not sent. */
export type WireStat = Omit<Stat, 'atimeNs' | 'mtimeNs' | 'ctimeNs' | 'birthtimeNs'> & {
  atimeNs: string;
  mtimeNs: string;
  ctimeNs: string;
};

export interface WireDirEntry {
  name: string;
  ino: number;
  kind: FileKind;
  /** Present when the listing asked for long format. */
  stat?: WireStat;
  /** Symlinks in long format. */
  target?: string;
}

export interface DaemonInfo {
  pid: number;
  socket: string;
  home: string;
  startedAtMs: number;
  pools: string[];
  /** Remembered pools that could not be imported when the daemon started. */
  unavailable: { name: string; error: string }[];
}

export interface PoolIostat {
  name: string;
  stats: IoStats;
  space: PoolSpace;
  /** Since the pool was imported by this daemon. */
  elapsedMs: number;
}

/** One property of one dataset as `zfs get` resolves it; the CLI formats value (human or -p). */
export interface WireProperty {
  name: string;
  value: PropertyValue;
  source: string;
}

/** A dataset with the properties asked for (all when none were named); a missing one prints '-'. */
export interface DatasetRow {
  name: string;
  type: DatasetType;
  properties: WireProperty[];
}

export interface DatasetSelection {
  /** Datasets named; none: every dataset of every pool (recursively). */
  names?: string[];
  recursive?: boolean;
  /** -d: descend at most this many levels (implies recursive). */
  depth?: number;
  /** filesystem | volume | snapshot; default filesystem and volume. */
  types?: string[];
  /** Property names; none: all. */
  properties?: string[];
}

export interface WireDestroyResult {
  destroyed: string[];
  reclaimBytes: number;
}

/** A FUSE mount served by cairnd (`cairn mount`). */
export interface MountRow {
  dataset: string;
  mountpoint: string;
  readonly: boolean;
}

/** An NBD export served by cairnd (`cairn nbd list`); listen is HOST:PORT or a socket path. */
export interface NbdExportRow {
  name: string;
  dataset: string;
  listen: string;
  readonly: boolean;
  sizeBytes: number;
}

export interface VerbTable {
  'daemon.status': { args: Record<string, never>; result: DaemonInfo };
  'daemon.stop': { args: Record<string, never>; result: { pid: number } };
  'pool.create': {
    args: {
      name: string;
      vdevSpec: string[];
      createSizeBytes?: number;
      force?: boolean;
      properties?: Record<string, string>;
      command?: string;
    };
    result: PoolStatus;
  };
  'pool.import': {
    args: { nameOrGuid: string; searchPaths?: string[]; force?: boolean; command?: string };
    result: PoolStatus;
  };
  'pool.importable': { args: { searchPaths?: string[] }; result: ImportablePool[] };
  'pool.export': { args: { name: string; command?: string }; result: null };
  'pool.destroy': { args: { name: string; command?: string }; result: null };
  'pool.status': { args: { names?: string[] }; result: PoolStatus[] };
  'pool.scrub': { args: { name: string; wait?: boolean; stop?: boolean; command?: string }; result: PoolStatus };
  'pool.offline': { args: { name: string; device: string; command?: string }; result: PoolStatus };
  'pool.online': { args: { name: string; device: string; command?: string }; result: PoolStatus };
  'pool.replace': {
    args: { name: string; oldDevice: string; newDevice?: string; createSizeBytes?: number; command?: string };
    result: PoolStatus;
  };
  'pool.attach': {
    args: { name: string; device: string; newDevice: string; createSizeBytes?: number; command?: string };
    result: PoolStatus;
  };
  'pool.detach': { args: { name: string; device: string; command?: string }; result: PoolStatus };
  'pool.add': {
    args: { name: string; vdevSpec: string[]; createSizeBytes?: number; force?: boolean; command?: string };
    result: PoolStatus;
  };
  'pool.sync': { args: { names?: string[] }; result: null };
  'pool.history': { args: { name: string }; result: HistoryEntry[] };
  'pool.iostat': { args: { names?: string[] }; result: PoolIostat[] };
  'fs.stat': { args: { dataset: string; path: string }; result: WireStat };
  'fs.list': {
    args: { dataset: string; path: string; cursor?: string; limit?: number; long?: boolean };
    result: { directory: boolean; entries: WireDirEntry[]; cursor: string | null };
  };
  'fs.mkdir': { args: { dataset: string; path: string; parents?: boolean; mode?: number }; result: WireStat };
  'fs.remove': { args: { dataset: string; path: string; recursive?: boolean; force?: boolean }; result: null };
  /** mv; EXDEV when toDataset is another dataset (a rename never copies). */
  'fs.rename': { args: { dataset: string; path: string; toDataset: string; toPath: string }; result: null };
  /** ln: a hard link toPath to the existing path, in the same dataset (EXDEV otherwise). */
  'fs.link': { args: { dataset: string; path: string; toDataset: string; toPath: string }; result: WireStat };
  /** ln -s: path becomes a symlink holding target (any text). */
  'fs.symlink': { args: { dataset: string; path: string; target: string }; result: WireStat };
  /** chmod: permission bits only; follows a symlink as chmod(2) does. */
  'fs.chmod': { args: { dataset: string; path: string; mode: number }; result: WireStat };
  'dataset.create': {
    args: {
      name: string;
      parents?: boolean;
      volsizeBytes?: number;
      sparse?: boolean;
      properties?: Record<string, string>;
      command?: string;
    };
    result: null;
  };
  'dataset.list': { args: DatasetSelection; result: DatasetRow[] };
  /** zfs get: as list, but every type by default and each property with its source. */
  'dataset.get': { args: DatasetSelection; result: DatasetRow[] };
  'dataset.set': { args: { names: string[]; properties: Record<string, string>; command?: string }; result: null };
  'dataset.inherit': {
    args: { names: string[]; property: string; recursive?: boolean; command?: string };
    result: null;
  };
  /** Returns the snapshots made (with -r, those of every descendant too). */
  'dataset.snapshot': { args: { names: string[]; recursive?: boolean; command?: string }; result: string[] };
  /** -r destroys the newer snapshots first; returns them. */
  'dataset.rollback': { args: { name: string; recursive?: boolean; command?: string }; result: string[] };
  'dataset.clone': {
    args: { snapshot: string; name: string; parents?: boolean; properties?: Record<string, string>; command?: string };
    result: null;
  };
  'dataset.promote': { args: { name: string; command?: string }; result: null };
  'dataset.rename': { args: { from: string; to: string; parents?: boolean; command?: string }; result: null };
  'dataset.hold': { args: { tag: string; names: string[]; recursive?: boolean; command?: string }; result: null };
  'dataset.release': { args: { tag: string; names: string[]; recursive?: boolean; command?: string }; result: null };
  'dataset.holds': {
    args: { names: string[]; recursive?: boolean };
    result: { name: string; tag: string; createdMs: number }[];
  };
  'dataset.destroy': {
    args: { name: string; recursive?: boolean; dependents?: boolean; dryRun?: boolean; command?: string };
    result: WireDestroyResult;
  };
  /** zfs mount: at mountpoint, or at the dataset's mountpoint property; a snapshot mounts read-only. */
  'mount.mount': { args: { dataset: string; mountpoint?: string; readonly?: boolean; command?: string }; result: MountRow };
  /** zfs mount -a: every filesystem with canmount=on and a path mountpoint, parents first. */
  'mount.all': { args: { command?: string }; result: { mounted: MountRow[]; errors: { dataset: string; message: string }[] } };
  /** zfs unmount: by dataset or mountpoint; all: every mount. force detaches a busy mount lazily. */
  'mount.unmount': {
    args: { dataset?: string; mountpoint?: string; all?: boolean; force?: boolean; command?: string };
    result: MountRow[];
  };
  'mount.list': { args: Record<string, never>; result: MountRow[] };
  /** listen: HOST:PORT or an absolute Unix socket path (default 127.0.0.1:10809); name: default the dataset. */
  'nbd.export': {
    args: { dataset: string; listen?: string; name?: string; readonly?: boolean; command?: string };
    result: NbdExportRow;
  };
  'nbd.unexport': { args: { name: string; listen?: string; command?: string }; result: NbdExportRow };
  'nbd.list': { args: Record<string, never>; result: NbdExportRow[] };
}

export type Verb = keyof VerbTable;
export type VerbArgs<V extends Verb> = VerbTable[V]['args'];
export type VerbResult<V extends Verb> = VerbTable[V]['result'];

type FieldType = 'string' | 'boolean' | 'number' | 'string[]' | 'record';
/** A field name ending in "?" is optional. */
type Schema = Readonly<Record<string, FieldType>>;

const COMMAND: Schema = { 'command?': 'string' };
const SELECTION: Schema = {
  'names?': 'string[]',
  'recursive?': 'boolean',
  'depth?': 'number',
  'types?': 'string[]',
  'properties?': 'string[]',
};

export const VERB_SCHEMAS: Readonly<Record<Verb, Schema>> = {
  'daemon.status': {},
  'daemon.stop': {},
  'pool.create': {
    name: 'string',
    vdevSpec: 'string[]',
    'createSizeBytes?': 'number',
    'force?': 'boolean',
    'properties?': 'record',
    ...COMMAND,
  },
  'pool.import': { nameOrGuid: 'string', 'searchPaths?': 'string[]', 'force?': 'boolean', ...COMMAND },
  'pool.importable': { 'searchPaths?': 'string[]' },
  'pool.export': { name: 'string', ...COMMAND },
  'pool.destroy': { name: 'string', ...COMMAND },
  'pool.status': { 'names?': 'string[]' },
  'pool.scrub': { name: 'string', 'wait?': 'boolean', 'stop?': 'boolean', ...COMMAND },
  'pool.offline': { name: 'string', device: 'string', ...COMMAND },
  'pool.online': { name: 'string', device: 'string', ...COMMAND },
  'pool.replace': {
    name: 'string',
    oldDevice: 'string',
    'newDevice?': 'string',
    'createSizeBytes?': 'number',
    ...COMMAND,
  },
  'pool.attach': { name: 'string', device: 'string', newDevice: 'string', 'createSizeBytes?': 'number', ...COMMAND },
  'pool.detach': { name: 'string', device: 'string', ...COMMAND },
  'pool.add': { name: 'string', vdevSpec: 'string[]', 'createSizeBytes?': 'number', 'force?': 'boolean', ...COMMAND },
  'pool.sync': { 'names?': 'string[]' },
  'pool.history': { name: 'string' },
  'pool.iostat': { 'names?': 'string[]' },
  'fs.stat': { dataset: 'string', path: 'string' },
  'fs.list': { dataset: 'string', path: 'string', 'cursor?': 'string', 'limit?': 'number', 'long?': 'boolean' },
  'fs.mkdir': { dataset: 'string', path: 'string', 'parents?': 'boolean', 'mode?': 'number' },
  'fs.remove': { dataset: 'string', path: 'string', 'recursive?': 'boolean', 'force?': 'boolean' },
  'fs.rename': { dataset: 'string', path: 'string', toDataset: 'string', toPath: 'string' },
  'fs.link': { dataset: 'string', path: 'string', toDataset: 'string', toPath: 'string' },
  'fs.symlink': { dataset: 'string', path: 'string', target: 'string' },
  'fs.chmod': { dataset: 'string', path: 'string', mode: 'number' },
  'dataset.create': {
    name: 'string',
    'parents?': 'boolean',
    'volsizeBytes?': 'number',
    'sparse?': 'boolean',
    'properties?': 'record',
    ...COMMAND,
  },
  'dataset.list': SELECTION,
  'dataset.get': SELECTION,
  'dataset.set': { names: 'string[]', properties: 'record', ...COMMAND },
  'dataset.inherit': { names: 'string[]', property: 'string', 'recursive?': 'boolean', ...COMMAND },
  'dataset.snapshot': { names: 'string[]', 'recursive?': 'boolean', ...COMMAND },
  'dataset.rollback': { name: 'string', 'recursive?': 'boolean', ...COMMAND },
  'dataset.clone': { snapshot: 'string', name: 'string', 'parents?': 'boolean', 'properties?': 'record', ...COMMAND },
  'dataset.promote': { name: 'string', ...COMMAND },
  'dataset.rename': { from: 'string', to: 'string', 'parents?': 'boolean', ...COMMAND },
  'dataset.hold': { tag: 'string', names: 'string[]', 'recursive?': 'boolean', ...COMMAND },
  'dataset.release': { tag: 'string', names: 'string[]', 'recursive?': 'boolean', ...COMMAND },
  'dataset.holds': { names: 'string[]', 'recursive?': 'boolean' },
  'dataset.destroy': {
    name: 'string',
    'recursive?': 'boolean',
    'dependents?': 'boolean',
    'dryRun?': 'boolean',
    ...COMMAND,
  },
  'mount.mount': { dataset: 'string', 'mountpoint?': 'string', 'readonly?': 'boolean', ...COMMAND },
  'mount.all': { ...COMMAND },
  'mount.unmount': { 'dataset?': 'string', 'mountpoint?': 'string', 'all?': 'boolean', 'force?': 'boolean', ...COMMAND },
  'mount.list': {},
  'nbd.export': { dataset: 'string', 'listen?': 'string', 'name?': 'string', 'readonly?': 'boolean', ...COMMAND },
  'nbd.unexport': { name: 'string', 'listen?': 'string', ...COMMAND },
  'nbd.list': {},
};

export function isVerb(name: string): name is Verb {
  return Object.prototype.hasOwnProperty.call(VERB_SCHEMAS, name);
}

function hasType(value: unknown, type: FieldType): boolean {
  switch (type) {
    case 'string':
      return typeof value === 'string';
    case 'boolean':
      return typeof value === 'boolean';
    case 'number':
      return typeof value === 'number' && Number.isFinite(value);
    case 'string[]':
      return Array.isArray(value) && value.every((item) => typeof item === 'string');
    case 'record':
      return (
        typeof value === 'object' &&
        value !== null &&
        !Array.isArray(value) &&
        Object.values(value).every((item) => typeof item === 'string')
      );
  }
}

/** Checks a decoded body against the verb's schema; unknown fields are ignored (newer clients). */
export function validateArgs<V extends Verb>(verb: V, body: unknown): VerbArgs<V> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new CairnError('EPROTO', `${verb}: request body must be a JSON object`);
  }
  const record = body as Record<string, unknown>;
  // Only schema fields are copied, and a null optional is dropped, so handlers see exact types.
  const args: Record<string, unknown> = {};
  for (const [key, type] of Object.entries(VERB_SCHEMAS[verb])) {
    const optional = key.endsWith('?');
    const field = optional ? key.slice(0, -1) : key;
    const value = record[field];
    if (value === undefined || value === null) {
      if (optional) continue;
      throw new CairnError('EINVAL', `${verb}: missing argument '${field}'`);
    }
    if (!hasType(value, type)) throw new CairnError('EINVAL', `${verb}: argument '${field}' must be ${type}`);
    args[field] = value;
  }
  return args as VerbArgs<V>;
}

/**
 * The daemon's HTTP API on its Unix socket: one owner for every imported pool (invariant 5), serving the
 * verbs of protocol.ts and the file streams. Requests against a pool are counted while they run, so an
 * export, destroy or daemon stop first takes the pool out of the table (new requests get ENOENT), then
 * waits for the running ones to finish before it closes the devices.
 */
import { createServer } from 'node:http';
import { isAbsolute, posix } from 'node:path';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { chmod } from 'node:fs/promises';
import { createPool, findImportablePools, importPool } from '../pool/index.js';
import type { PoolHandle, PoolStatus, VdevStatusNode } from '../pool/index.js';
import { CairnError, isCairnError } from '../util/errors.js';
import type { ErrorCode } from '../util/errors.js';
import { PoolCacheFile } from './cachefile.js';
import { escapeDiffPath, formatDiffEntry } from '../dataset/diff.js';
import type { DiffEntry } from '../dataset/diff.js';
import type { BlockVolume, DatasetManager } from '../dataset/index.js';
import { ChangeReportingFs, type FileSystemApi } from '../fs/index.js';
import { datasetRow, newerSnapshots, poolOfDataset, selectDatasets } from './dataset-ops.js';
import { MountTable, compareMountpoints, inPool, renamedDataset, withinDataset } from './mounts.js';
import { NbdExportTable } from './nbd-exports.js';
import {
  STREAM_CHUNK_BYTES,
  checkUploadTarget,
  chmodPath,
  fsError,
  linkPath,
  listPath,
  mkdirPath,
  readFileChunks,
  removePathTree,
  renamePath,
  symlinkPath,
  toWireStat,
  writeFileFrom,
} from './fs-ops.js';
import type { CairnHome } from './home.js';
import {
  API_PREFIX,
  DIFF_ENDPOINT,
  ERROR_TRAILER,
  FILE_ENDPOINT,
  JSON_BODY_BYTES_MAX,
  LIST_PAGE_ENTRIES_MAX,
  VOLUME_ENDPOINT,
  isVerb,
  validateArgs,
} from './protocol.js';
import type {
  ApiResponse,
  DatasetRow,
  DatasetSelection,
  MountRow,
  Verb,
  VerbArgs,
  VerbResult,
  WireDestroyResult,
} from './protocol.js';

const POOL_NAME_PATTERN = /^[A-Za-z][A-Za-z0-9_.-]{0,254}$/;
const RESERVED_POOL_NAMES = new Set(['mirror', 'raidz', 'raidz1', 'raidz2', 'raidz3', 'draid', 'spare', 'log', 'cache']);
const FILE_MODE_DEFAULT = 0o644;
const DIRECTORY_MODE_DEFAULT = 0o755;

interface PoolEntry {
  handle: PoolHandle;
  importedAtMs: number;
  inflight: number;
  onDrained: (() => void) | null;
}

export interface DaemonServerOptions {
  home: CairnHome;
  log: (line: string) => void;
  /** Called once the answer to daemon.stop has been sent. */
  onStopRequested: () => void;
}

type Handlers = { [V in Verb]: (args: VerbArgs<V>) => Promise<VerbResult<V>> };

const HTTP_STATUS: Partial<Record<ErrorCode, number>> = {
  ENOENT: 404,
  EEXIST: 409,
  EBUSY: 409,
  EPOOLINUSE: 409,
  EINVAL: 400,
  EPROTO: 400,
  EBADSPEC: 400,
  ENOTSUP: 501,
};

export class DaemonServer {
  readonly startedAtMs = Date.now();
  private readonly pools = new Map<string, PoolEntry>();
  /** Remembered pools the start-up import could not open, with why. */
  private readonly unavailable = new Map<string, string>();
  private readonly cache: PoolCacheFile;
  private server: Server | null = null;
  private readonly restored: Promise<void>;
  private resolveRestored: () => void = () => undefined;
  private readonly handlers: Handlers;
  private readonly mounts: MountTable;
  private readonly nbd: NbdExportTable;

  constructor(private readonly options: DaemonServerOptions) {
    this.cache = new PoolCacheFile(options.home.poolsPath, options.log);
    this.mounts = new MountTable(options.home.mountsPath, options.log);
    this.nbd = new NbdExportTable(options.log);
    this.restored = new Promise((resolve) => {
      this.resolveRestored = resolve;
    });
    this.handlers = this.makeHandlers();
  }

  /** Listens on the socket at once; requests wait until the remembered pools are back. */
  async listen(): Promise<void> {
    const server = createServer((request, response) => {
      this.handle(request, response).catch((error: unknown) => {
        this.options.log(`request failed outside its handler: ${describe(error)}`);
        response.destroy();
      });
    });
    // A scrub -w or a large upload may take hours; Node's default 5-minute request timeout would cut it.
    server.requestTimeout = 0;
    server.on('checkContinue', (request, response) => {
      this.handleContinue(request, response).catch((error: unknown) => {
        this.options.log(`request failed outside its handler: ${describe(error)}`);
        response.destroy();
      });
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.options.home.socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    await chmod(this.options.home.socketPath, 0o600);
  }

  /** Re-imports the pools remembered in pools.json (a failure leaves the pool remembered, unavailable). */
  async restorePools(): Promise<void> {
    try {
      // First, before anything is mounted again: a daemon that died left its mounts dead (ENOTCONN).
      await this.mounts.cleanupRecorded().catch((error: unknown) => this.options.log(`mount cleanup failed: ${describe(error)}`));
      await this.cache.load();
      for (const remembered of this.cache.pools()) {
        try {
          const handle = await importPool({ nameOrGuid: remembered.guid, searchPaths: remembered.devices });
          this.addPool(handle);
          this.options.log(`re-imported pool ${handle.name} (${handle.guid})`);
        } catch (error) {
          this.unavailable.set(remembered.name, errorMessage(error));
          this.options.log(`could not re-import pool ${remembered.name}: ${describe(error)}`);
        }
      }
    } finally {
      this.resolveRestored();
    }
  }

  /** Stops serving and closes every pool cleanly (they stay remembered for the next start). */
  async close(): Promise<void> {
    const server = this.server;
    if (server !== null) {
      server.close();
      server.closeIdleConnections();
    }
    // Mounts and exports go first: unmounting needs the pools to answer the kernel's last requests.
    await this.mounts.closeAll();
    await this.nbd.closeAll();
    for (const name of [...this.pools.keys()]) {
      const entry = await this.retirePool(name);
      try {
        await entry.handle.close();
        this.options.log(`closed pool ${name}`);
      } catch (error) {
        this.options.log(`closing pool ${name} failed: ${describe(error)}`);
      }
    }
    server?.closeAllConnections();
  }

  private addPool(handle: PoolHandle): PoolEntry {
    const entry: PoolEntry = { handle, importedAtMs: Date.now(), inflight: 0, onDrained: null };
    this.pools.set(handle.name, entry);
    this.unavailable.delete(handle.name);
    return entry;
  }

  private lookupPool(name: string): PoolEntry {
    const entry = this.pools.get(name);
    if (entry !== undefined) return entry;
    const why = this.unavailable.get(name);
    if (why !== undefined) throw new CairnError('EFAULTED', `pool '${name}' is unavailable: ${why}`);
    throw new CairnError('ENOENT', `no such pool '${name}'`);
  }

  /** Runs fn with the pool counted as in use, so export waits for it. */
  private async usePool<T>(name: string, fn: (entry: PoolEntry) => Promise<T>): Promise<T> {
    const entry = this.lookupPool(name);
    entry.inflight++;
    try {
      return await fn(entry);
    } finally {
      entry.inflight--;
      if (entry.inflight === 0 && entry.onDrained !== null) entry.onDrained();
    }
  }

  /** Takes the pool out of the table and waits until no request uses it. */
  private async retirePool(name: string): Promise<PoolEntry> {
    const entry = this.lookupPool(name);
    this.pools.delete(name);
    if (entry.inflight > 0) {
      await new Promise<void>((resolve) => {
        entry.onDrained = resolve;
      });
      entry.onDrained = null;
    }
    return entry;
  }

  private async remember(handle: PoolHandle): Promise<void> {
    await this.cache.remember({ name: handle.name, guid: handle.guid, devices: leafDevices(handle.status().config) });
  }

  private async logHistory(entry: PoolEntry, command: string | undefined, fallback: string): Promise<void> {
    this.options.log(`${entry.handle.name}: ${command ?? fallback}`);
    try {
      await entry.handle.logHistory(command ?? fallback);
    } catch (error) {
      this.options.log(`pool ${entry.handle.name}: could not log history: ${describe(error)}`);
    }
  }

  private selectedPools(names: string[] | undefined): PoolEntry[] {
    if (names === undefined || names.length === 0) {
      return [...this.pools.keys()].sort().map((name) => this.lookupPool(name));
    }
    return names.map((name) => this.lookupPool(name));
  }

  private searchPaths(given: string[] | undefined): string[] {
    if (given !== undefined && given.length > 0) return given;
    return [...this.cache.knownDevices()];
  }

  /** A pool command that changes the pool, logged to its history as the user typed it. */
  private async poolCommand(
    name: string,
    command: string | undefined,
    fallback: string,
    fn: (handle: PoolHandle) => Promise<void>,
    configChanges = false,
  ): Promise<PoolStatus> {
    return this.usePool(name, async (entry) => {
      await fn(entry.handle);
      await this.logHistory(entry, command, fallback);
      if (configChanges) await this.remember(entry.handle);
      return entry.handle.status();
    });
  }

  private makeHandlers(): Handlers {
    return {
      'daemon.status': async () => ({
        pid: process.pid,
        socket: this.options.home.socketPath,
        home: this.options.home.dir,
        startedAtMs: this.startedAtMs,
        pools: [...this.pools.keys()].sort(),
        unavailable: [...this.unavailable].map(([name, error]) => ({ name, error })),
      }),
      'daemon.stop': async () => {
        setTimeout(this.options.onStopRequested, 10);
        return { pid: process.pid };
      },
      'pool.create': async (args) => {
        validatePoolName(args.name);
        if (this.pools.has(args.name)) throw new CairnError('EEXIST', `pool '${args.name}' already exists`);
        const handle = await createPool({
          name: args.name,
          vdevSpec: args.vdevSpec,
          ...(args.createSizeBytes !== undefined ? { createSizeBytes: args.createSizeBytes } : {}),
          ...(args.force !== undefined ? { force: args.force } : {}),
          ...(args.properties !== undefined ? { properties: args.properties } : {}),
        });
        const entry = this.addPool(handle);
        await this.logHistory(entry, args.command, `cairn pool create ${args.name} ${args.vdevSpec.join(' ')}`);
        await this.remember(handle);
        return handle.status();
      },
      'pool.import': async (args) => {
        if (this.pools.has(args.nameOrGuid)) {
          throw new CairnError('EEXIST', `a pool named '${args.nameOrGuid}' is already imported`);
        }
        const remembered = this.cache.pools().find((item) => item.name === args.nameOrGuid);
        const searchPaths = this.searchPaths(args.searchPaths);
        if (args.searchPaths === undefined && remembered !== undefined) searchPaths.push(...remembered.devices);
        if (searchPaths.length === 0) {
          throw new CairnError('ENOENT', `cannot import '${args.nameOrGuid}': no devices known; give -d DIR`);
        }
        const handle = await importPool({
          nameOrGuid: args.nameOrGuid,
          searchPaths,
          ...(args.force !== undefined ? { force: args.force } : {}),
        });
        if (this.pools.has(handle.name)) {
          await handle.export().catch(() => undefined);
          throw new CairnError('EEXIST', `a pool named '${handle.name}' is already imported`);
        }
        const entry = this.addPool(handle);
        await this.logHistory(entry, args.command, `cairn pool import ${args.nameOrGuid}`);
        await this.remember(handle);
        return handle.status();
      },
      'pool.importable': async (args) => {
        const searchPaths = this.searchPaths(args.searchPaths);
        if (searchPaths.length === 0) return [];
        const guids = new Set([...this.pools.values()].map((entry) => entry.handle.guid));
        const found = await findImportablePools(searchPaths);
        return found.filter((pool) => !guids.has(pool.guid));
      },
      'pool.export': async (args) => {
        if (!this.pools.has(args.name) && this.unavailable.has(args.name)) {
          this.unavailable.delete(args.name);
          await this.cache.forget(args.name);
          return null;
        }
        const entry = this.lookupPool(args.name);
        await this.logHistory(entry, args.command, `cairn pool export ${args.name}`);
        await this.retirePool(args.name);
        try {
          await this.releasePool(args.name);
          await entry.handle.export();
        } catch (error) {
          this.pools.set(args.name, entry);
          throw error;
        }
        await this.cache.forget(args.name);
        return null;
      },
      'pool.destroy': async (args) => {
        if (!this.pools.has(args.name) && this.unavailable.has(args.name)) {
          throw new CairnError('EFAULTED', `cannot destroy '${args.name}': pool is unavailable; export it instead`);
        }
        const entry = await this.retirePool(args.name);
        try {
          await this.releasePool(args.name);
          await entry.handle.destroy();
        } catch (error) {
          this.pools.set(args.name, entry);
          throw error;
        }
        await this.cache.forget(args.name);
        return null;
      },
      'pool.status': async (args) => this.selectedPools(args.names).map((entry) => entry.handle.status()),
      'pool.scrub': async (args) => {
        // Not counted as in use: a scrub -w may run for hours and must not hold up an export.
        const entry = this.lookupPool(args.name);
        const scrubOptions = {
          ...(args.wait !== undefined ? { wait: args.wait } : {}),
          ...(args.stop !== undefined ? { stop: args.stop } : {}),
        };
        await entry.handle.scrub(scrubOptions);
        // Logged once it has started (with -w: finished), so a refused scrub leaves no history line.
        await this.logHistory(entry, args.command, `cairn pool scrub ${args.stop === true ? '-s ' : ''}${args.name}`);
        return entry.handle.status();
      },
      'pool.offline': async (args) =>
        this.poolCommand(args.name, args.command, `cairn pool offline ${args.name} ${args.device}`, (handle) =>
          handle.offline(args.device),
        ),
      'pool.online': async (args) =>
        this.poolCommand(args.name, args.command, `cairn pool online ${args.name} ${args.device}`, (handle) =>
          handle.online(args.device),
        ),
      'pool.replace': async (args) =>
        this.poolCommand(
          args.name,
          args.command,
          `cairn pool replace ${args.name} ${args.oldDevice} ${args.newDevice ?? ''}`.trimEnd(),
          (handle) =>
            handle.replace(
              args.oldDevice,
              args.newDevice,
              args.createSizeBytes !== undefined ? { createSizeBytes: args.createSizeBytes } : {},
            ),
          true,
        ),
      'pool.attach': async (args) =>
        this.poolCommand(
          args.name,
          args.command,
          `cairn pool attach ${args.name} ${args.device} ${args.newDevice}`,
          (handle) =>
            handle.attach(
              args.device,
              args.newDevice,
              args.createSizeBytes !== undefined ? { createSizeBytes: args.createSizeBytes } : {},
            ),
          true,
        ),
      'pool.detach': async (args) =>
        this.poolCommand(
          args.name,
          args.command,
          `cairn pool detach ${args.name} ${args.device}`,
          (handle) => handle.detach(args.device),
          true,
        ),
      'pool.add': async (args) =>
        this.poolCommand(
          args.name,
          args.command,
          `cairn pool add ${args.name} ${args.vdevSpec.join(' ')}`,
          (handle) =>
            handle.add(args.vdevSpec, {
              ...(args.createSizeBytes !== undefined ? { createSizeBytes: args.createSizeBytes } : {}),
              ...(args.force !== undefined ? { force: args.force } : {}),
            }),
          true,
        ),
      'pool.sync': async (args) => {
        for (const entry of this.selectedPools(args.names)) {
          await this.usePool(entry.handle.name, (used) => used.handle.sync());
        }
        return null;
      },
      'pool.history': async (args) => this.usePool(args.name, (entry) => entry.handle.history()),
      'pool.iostat': async (args) =>
        this.selectedPools(args.names).map((entry) => ({
          name: entry.handle.name,
          stats: entry.handle.iostat(),
          space: entry.handle.status().space,
          elapsedMs: Date.now() - entry.importedAtMs,
        })),
      'fs.stat': async (args) =>
        this.fsCall(args.dataset, args.path, async (fs) => toWireStat(await fs.resolvePath(args.path))),
      'fs.list': async (args) =>
        this.fsCall(args.dataset, args.path, (fs) =>
          listPath(fs, args.path, args.cursor, args.limit ?? LIST_PAGE_ENTRIES_MAX, args.long === true),
        ),
      'fs.mkdir': async (args) =>
        this.fsCall(args.dataset, args.path, async (fs) =>
          toWireStat(await mkdirPath(fs, args.path, args.parents === true, args.mode ?? DIRECTORY_MODE_DEFAULT)),
        ),
      'fs.remove': async (args) =>
        this.fsCall(args.dataset, args.path, async (fs) => {
          await removePathTree(fs, args.path, args.recursive === true, args.force === true);
          return null;
        }),
      'fs.rename': async (args) => {
        sameDataset('rename', args.dataset, args.path, args.toDataset, args.toPath);
        return this.fsCall(args.dataset, args.path, async (fs) => {
          await renamePath(fs, args.path, args.toPath);
          return null;
        });
      },
      'fs.link': async (args) => {
        sameDataset('link', args.dataset, args.path, args.toDataset, args.toPath);
        return this.fsCall(args.dataset, args.toPath, async (fs) => toWireStat(await linkPath(fs, args.path, args.toPath)));
      },
      'fs.symlink': async (args) =>
        this.fsCall(args.dataset, args.path, async (fs) => toWireStat(await symlinkPath(fs, args.path, args.target))),
      'fs.chmod': async (args) =>
        this.fsCall(args.dataset, args.path, async (fs) => toWireStat(await chmodPath(fs, args.path, args.mode))),
      ...this.datasetHandlers(),
      ...this.servingHandlers(),
    };
  }

  /** Before a pool is exported or destroyed: its mounts (EBUSY if one will not go) and NBD exports end. */
  private async releasePool(pool: string): Promise<void> {
    await this.mounts.unmountWhere((dataset) => inPool(dataset, pool));
    await this.nbd.removeWhere((dataset) => inPool(dataset, pool));
  }

  /** Before datasets are destroyed: their mounts and exports end (zfs destroy unmounts first). */
  private async releaseDatasets(names: readonly string[]): Promise<void> {
    const doomed = new Set(names);
    await this.mounts.unmountWhere((dataset) => doomed.has(dataset));
    await this.nbd.removeWhere((dataset) => doomed.has(dataset));
  }

  /** The verbs that serve datasets through the operating system: FUSE mounts and NBD exports. */
  private servingHandlers(): Pick<Handlers, Extract<Verb, `mount.${string}` | `nbd.${string}`>> {
    return {
      'mount.mount': async (args) =>
        this.usePool(poolOfDataset(args.dataset), (entry) =>
          this.mountDataset(entry, args.dataset, args.mountpoint, args.readonly === true),
        ),
      'mount.all': async () => {
        const candidates: { pool: string; dataset: string; mountpoint: string }[] = [];
        for (const pool of [...this.pools.keys()].sort()) {
          await this.usePool(pool, async (entry) => {
            const datasets = entry.handle.datasets;
            for (const item of datasets.list()) {
              if (item.type !== 'filesystem' || this.mounts.byDataset(item.name) !== undefined) continue;
              const props = await propertyTexts(datasets, item.name, ['mountpoint', 'canmount']);
              const mountpoint = props.get('mountpoint') ?? '';
              if (props.get('canmount') === 'on' && mountpoint.startsWith('/')) candidates.push({ pool, dataset: item.name, mountpoint });
            }
          });
        }
        // Parents before children, so a child's directory is made inside its parent's mount.
        candidates.sort((a, b) => compareMountpoints(a.mountpoint, b.mountpoint));
        const mounted: MountRow[] = [];
        const errors: { dataset: string; message: string }[] = [];
        for (const candidate of candidates) {
          try {
            mounted.push(await this.usePool(candidate.pool, (entry) => this.mountDataset(entry, candidate.dataset, undefined, false)));
          } catch (error) {
            errors.push({ dataset: candidate.dataset, message: errorMessage(error) });
          }
        }
        return { mounted, errors };
      },
      'mount.unmount': async (args) => {
        const force = args.force === true;
        if (args.all === true) return this.mounts.unmountWhere(() => true, force);
        if (args.dataset !== undefined) {
          const row = this.mounts.byDataset(args.dataset);
          if (row === undefined) throw new CairnError('EINVAL', `cannot unmount '${args.dataset}': not currently mounted`);
          return [await this.mounts.unmount(row.mountpoint, force)];
        }
        if (args.mountpoint !== undefined) {
          const path = normalizeMountpoint(args.mountpoint);
          if (this.mounts.byMountpoint(path) === undefined) throw new CairnError('EINVAL', `cannot unmount '${path}': not a cairn mount`);
          return [await this.mounts.unmount(path, force)];
        }
        throw new CairnError('EINVAL', 'unmount: give a dataset, a mountpoint or all');
      },
      'mount.list': async () => this.mounts.list(),
      'nbd.export': async (args) =>
        this.usePool(poolOfDataset(args.dataset), async (entry) => {
          const volume = await entry.handle.datasets.openVolume(args.dataset).catch((error: unknown) => {
            if (isCairnError(error, 'EINVAL')) {
              throw new CairnError('EINVAL', `cannot export '${args.dataset}' over NBD: not a volume (mount a filesystem with cairn mount)`);
            }
            throw error;
          });
          const row = await this.nbd.add(args.dataset, volume, {
            ...(args.listen !== undefined ? { listen: args.listen } : {}),
            ...(args.name !== undefined ? { name: args.name } : {}),
            ...(args.readonly !== undefined ? { readonly: args.readonly } : {}),
          });
          await this.logHistory(entry, args.command, `cairn nbd export ${args.dataset}`);
          return row;
        }),
      'nbd.unexport': async (args) => {
        const found = this.nbd.find(args.name, args.listen);
        const row = await this.nbd.remove(found.name, found.listen);
        const entry = this.pools.get(poolOfDataset(row.dataset));
        if (entry !== undefined) await this.logHistory(entry, args.command, `cairn nbd unexport ${args.name}`);
        return row;
      },
      'nbd.list': async () => this.nbd.list(),
    };
  }

  /** zfs mount: at the given path or the mountpoint property; read-only for a snapshot or readonly=on. */
  private async mountDataset(entry: PoolEntry, dataset: string, given: string | undefined, readonlyAsked: boolean): Promise<MountRow> {
    const datasets = entry.handle.datasets;
    const snapshot = dataset.includes('@');
    const props = await propertyTexts(datasets, dataset, ['mountpoint', 'readonly']);
    let mountpoint: string;
    if (given !== undefined) mountpoint = normalizeMountpoint(given);
    else {
      const value = props.get('mountpoint') ?? '-';
      if (snapshot || !value.startsWith('/')) {
        throw new CairnError(
          'EINVAL',
          `cannot mount '${dataset}': ${snapshot ? 'a snapshot has no mountpoint' : `mountpoint is '${value}'`}; give a path: cairn mount ${dataset} PATH`,
        );
      }
      mountpoint = normalizeMountpoint(value);
    }
    const fs = await datasets.open(dataset);
    const handle = entry.handle;
    return this.mounts.mount({
      dataset,
      mountpoint,
      readonly: readonlyAsked || snapshot || props.get('readonly') === 'on',
      followsProperty: given === undefined,
      fs,
      onSync: () => handle.sync(),
      datasets: handle.datasets,
    });
  }

  /** After a property change: mounts that follow the mountpoint property move (zfs remounts them). */
  private async moveMounts(entry: PoolEntry, name: string): Promise<void> {
    const datasets = entry.handle.datasets;
    const moving: { dataset: string; from: string; to: string | null; readonly: boolean }[] = [];
    for (const row of this.mounts.select((dataset) => withinDataset(dataset, name) && !dataset.includes('@'))) {
      if (!this.mounts.followsProperty(row.mountpoint)) continue;
      const value = (await propertyTexts(datasets, row.dataset, ['mountpoint'])).get('mountpoint') ?? '';
      const to = value.startsWith('/') ? normalizeMountpoint(value) : null;
      if (to !== row.mountpoint) moving.push({ dataset: row.dataset, from: row.mountpoint, to, readonly: row.readonly });
    }
    for (const move of moving) await this.mounts.unmount(move.from);
    moving.sort((a, b) => compareMountpoints(a.to ?? '', b.to ?? ''));
    for (const move of moving) {
      if (move.to === null) continue;
      await this.mountDataset(entry, move.dataset, undefined, move.readonly);
    }
  }

  /** The zfs verbs. Each one that changes something is logged to its pool's history as typed. */
  private datasetHandlers(): Pick<Handlers, Extract<Verb, `dataset.${string}`>> {
    return {
      'dataset.create': async (args) =>
        this.datasetCommand(args.name, args.command, `cairn create ${args.name}`, async (datasets) => {
          await datasets.create(args.name, {
            ...(args.parents !== undefined ? { parents: args.parents } : {}),
            ...(args.volsizeBytes !== undefined ? { volsizeBytes: args.volsizeBytes } : {}),
            ...(args.sparse !== undefined ? { sparse: args.sparse } : {}),
            ...(args.properties !== undefined ? { properties: args.properties } : {}),
          });
          return null;
        }),
      'dataset.list': async (args) => this.datasetRows(args),
      'dataset.get': async (args) => this.datasetRows({ ...args, types: args.types ?? ['all'] }),
      'dataset.set': async (args) => {
        const assignments = Object.entries(args.properties);
        if (assignments.length === 0) throw new CairnError('EINVAL', 'set: no property=value given');
        const text = assignments.map(([name, value]) => `${name}=${value}`).join(' ');
        for (const name of args.names) {
          await this.datasetCommand(name, args.command, `cairn set ${text} ${name}`, async (datasets, entry) => {
            for (const [property, value] of assignments) await datasets.setProperty(name, property, value);
            if (assignments.some(([property]) => property === 'mountpoint')) await this.moveMounts(entry, name);
          });
        }
        return null;
      },
      'dataset.inherit': async (args) => {
        for (const name of args.names) {
          const flags = args.recursive === true ? '-r ' : '';
          await this.datasetCommand(name, args.command, `cairn inherit ${flags}${args.property} ${name}`, async (datasets, entry) => {
            await datasets.inheritProperty(name, args.property, { recursive: args.recursive === true });
            if (args.property === 'mountpoint') await this.moveMounts(entry, name);
          });
        }
        return null;
      },
      'dataset.snapshot': async (args) => {
        const first = args.names[0];
        if (first === undefined) throw new CairnError('EINVAL', 'snapshot: no snapshot name given');
        const pool = poolOfDataset(first);
        const stray = args.names.find((name) => poolOfDataset(name) !== pool);
        if (stray !== undefined) throw new CairnError('EINVAL', `cannot create snapshots in more than one pool ('${first}', '${stray}')`);
        return this.datasetCommand(first, args.command, `cairn snapshot ${args.names.join(' ')}`, (datasets) =>
          datasets.snapshotMany(args.names, { recursive: args.recursive === true }),
        );
      },
      'dataset.rollback': async (args) =>
        this.datasetCommand(args.name, args.command, `cairn rollback ${args.name}`, async (datasets, entry) => {
          const newer = newerSnapshots(datasets.list(), args.name);
          if (newer.length > 0 && args.recursive !== true) {
            throw new CairnError(
              'EEXIST',
              `cannot rollback to '${args.name}': more recent snapshots exist; use '-r' to destroy ${newer.join(', ')}`,
              { newer },
            );
          }
          // The head gets new file system and volume objects: a mount is remounted, exports switch over.
          const head = args.name.slice(0, Math.max(0, args.name.indexOf('@')));
          const mounted = this.mounts.byDataset(head);
          const follows = mounted !== undefined && this.mounts.followsProperty(mounted.mountpoint);
          if (mounted !== undefined) await this.mounts.unmount(mounted.mountpoint);
          try {
            await this.releaseDatasets(newer);
            for (const name of newer) await datasets.destroyWith(name);
            await datasets.rollback(args.name);
          } finally {
            if (mounted !== undefined) {
              await this.mountDataset(entry, head, follows ? undefined : mounted.mountpoint, mounted.readonly);
            }
          }
          if (datasets.list().some((item) => item.name === head && item.type === 'volume')) {
            await this.nbd.reopen(head, () => datasets.openVolume(head));
          }
          return newer;
        }),
      'dataset.clone': async (args) => {
        if (poolOfDataset(args.snapshot) !== poolOfDataset(args.name)) {
          throw new CairnError('EXDEV', `cannot clone '${args.snapshot}' into another pool ('${args.name}')`);
        }
        return this.datasetCommand(args.name, args.command, `cairn clone ${args.snapshot} ${args.name}`, async (datasets) => {
          await datasets.clone(args.snapshot, args.name, {
            ...(args.parents !== undefined ? { parents: args.parents } : {}),
            ...(args.properties !== undefined ? { properties: args.properties } : {}),
          });
          return null;
        });
      },
      'dataset.promote': async (args) =>
        this.datasetCommand(args.name, args.command, `cairn promote ${args.name}`, async (datasets) => {
          await datasets.promote(args.name);
          return null;
        }),
      'dataset.rename': async (args) => {
        if (poolOfDataset(args.from) !== poolOfDataset(args.to)) {
          throw new CairnError('EXDEV', `cannot rename '${args.from}' to '${args.to}': datasets must stay in their pool`);
        }
        return this.datasetCommand(args.from, args.command, `cairn rename ${args.from} ${args.to}`, async (datasets) => {
          await datasets.rename(args.from, args.to, { parents: args.parents === true });
          // Mounts stay where they are and exports keep their names; both follow the new dataset name.
          await this.mounts.renameDataset(args.from, args.to);
          this.nbd.renameDataset((dataset) => renamedDataset(dataset, args.from, args.to));
          return null;
        });
      },
      'dataset.hold': async (args) => {
        for (const name of args.names) {
          await this.datasetCommand(name, args.command, `cairn hold ${args.tag} ${name}`, (datasets) =>
            datasets.hold(args.tag, name, { recursive: args.recursive === true }),
          );
        }
        return null;
      },
      'dataset.release': async (args) => {
        for (const name of args.names) {
          await this.datasetCommand(name, args.command, `cairn release ${args.tag} ${name}`, (datasets) =>
            datasets.release(args.tag, name, { recursive: args.recursive === true }),
          );
        }
        return null;
      },
      'dataset.holds': async (args) => {
        const rows: { name: string; tag: string; createdMs: number }[] = [];
        for (const base of args.names) {
          await this.usePool(poolOfDataset(base), async (entry) => {
            const datasets = entry.handle.datasets;
            const at = base.indexOf('@');
            if (at < 0) throw new CairnError('EINVAL', `'${base}' is not a snapshot`);
            const snapshots =
              args.recursive === true
                ? selectDatasets(datasets.list(), { names: [base.slice(0, at)], recursive: true, types: ['snapshot'] })
                    .map((item) => item.name)
                    .filter((name) => name.slice(name.indexOf('@')) === base.slice(at))
                : [base];
            for (const name of snapshots) {
              for (const hold of await datasets.holds(name)) rows.push({ name, tag: hold.tag, createdMs: hold.createdMs });
            }
          });
        }
        return rows;
      },
      'dataset.destroy': async (args) => {
        const flags = `${args.recursive === true ? '-r ' : ''}${args.dependents === true ? '-R ' : ''}`;
        const run = async (datasets: DatasetManager): Promise<WireDestroyResult> =>
          datasets.destroyWith(args.name, {
            recursive: args.recursive === true,
            dependents: args.dependents === true,
            dryRun: args.dryRun === true,
          });
        // A dry run changes nothing and is not history.
        if (args.dryRun === true) return this.usePool(poolOfDataset(args.name), (entry) => run(entry.handle.datasets));
        return this.datasetCommand(args.name, args.command, `cairn destroy ${flags}${args.name}`, async (datasets) => {
          // zfs destroy unmounts first; the dry run names exactly what would go (and refuses as the real one would).
          const plan = await datasets.destroyWith(args.name, {
            recursive: args.recursive === true,
            dependents: args.dependents === true,
            dryRun: true,
          });
          await this.releaseDatasets(plan.destroyed);
          return run(datasets);
        });
      },
    };
  }

  /** A dataset verb against the pool the name starts with; logged to history once it has worked. */
  private async datasetCommand<T>(
    name: string,
    command: string | undefined,
    fallback: string,
    fn: (datasets: DatasetManager, entry: PoolEntry) => Promise<T>,
  ): Promise<T> {
    return this.usePool(poolOfDataset(name), async (entry) => {
      const result = await fn(entry.handle.datasets, entry);
      await this.logHistory(entry, command, fallback);
      return result;
    });
  }

  /** list and get: the selected datasets of each pool concerned, with their properties. */
  private async datasetRows(selection: DatasetSelection): Promise<DatasetRow[]> {
    const names = selection.names ?? [];
    const poolNames = names.length > 0 ? [...new Set(names.map(poolOfDataset))] : [...this.pools.keys()].sort();
    const rows: DatasetRow[] = [];
    for (const poolName of poolNames) {
      await this.usePool(poolName, async (entry) => {
        const datasets = entry.handle.datasets;
        const ofPool = names.filter((name) => poolOfDataset(name) === poolName);
        const chosen = selectDatasets(datasets.list(), { ...selection, ...(names.length > 0 ? { names: ofPool } : {}) });
        for (const item of chosen) rows.push(await datasetRow(datasets, item, selection.properties));
      });
    }
    return rows;
  }

  /** A file verb on a dataset's files (a snapshot's are read-only); file errors name dataset:path. */
  private async fsCall<T>(dataset: string, path: string, fn: (fs: FileSystemApi, entry: PoolEntry) => Promise<T>): Promise<T> {
    return this.usePool(poolOfDataset(dataset), async (entry) => {
      const opened = await entry.handle.datasets.open(dataset);
      // Behind a mount of the dataset, every change is reported to it, so the kernel's caches follow.
      const report = this.mounts.changeReporter(dataset);
      const fs = report ? new ChangeReportingFs(opened, report) : opened;
      try {
        return await fn(fs, entry);
      } catch (error) {
        throw fsError(error, dataset, path);
      }
    });
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    try {
      await this.restored;
      const url = new URL(request.url ?? '/', 'http://cairnd');
      if (url.pathname === FILE_ENDPOINT) {
        await this.handleFile(request, response, url);
        return;
      }
      if (url.pathname === VOLUME_ENDPOINT) {
        await this.handleVolume(request, response, url);
        return;
      }
      if (url.pathname === DIFF_ENDPOINT && request.method === 'GET') {
        await this.handleDiff(response, url);
        return;
      }
      if (request.method !== 'POST' || !url.pathname.startsWith(API_PREFIX)) {
        throw new CairnError('EPROTO', `unsupported request ${request.method ?? '?'} ${url.pathname}`);
      }
      const verb = url.pathname.slice(API_PREFIX.length);
      if (!isVerb(verb)) {
        request.resume();
        throw new CairnError('EPROTO', `unknown verb '${verb}'`);
      }
      const body = await readJsonBody(request);
      const result = await this.dispatch(verb, body);
      sendJson(response, 200, { ok: true, result });
    } catch (error) {
      this.sendError(response, error);
    }
  }

  /** An upload that asked before sending its body: answer the error now, or let the body come. */
  private async handleContinue(request: IncomingMessage, response: ServerResponse): Promise<void> {
    try {
      await this.restored;
      const url = new URL(request.url ?? '/', 'http://cairnd');
      const dataset = url.searchParams.get('dataset');
      const path = url.searchParams.get('path');
      if (url.pathname === FILE_ENDPOINT && request.method === 'PUT' && dataset !== null && path !== null) {
        await this.fsCall(dataset, path, (fs) => checkUploadTarget(fs, path));
      }
      if (url.pathname === VOLUME_ENDPOINT && request.method === 'PUT' && dataset !== null) {
        const offset = byteParameter(url, 'offset') ?? 0;
        await this.usePool(poolOfDataset(dataset), async (entry) => {
          checkVolumeWrite(dataset, await entry.handle.datasets.openVolume(dataset), offset);
        });
      }
    } catch (error) {
      this.sendError(response, error);
      return;
    }
    response.writeContinue();
    await this.handle(request, response);
  }

  private dispatch<V extends Verb>(verb: V, body: unknown): Promise<VerbResult<V>> {
    const args = validateArgs(verb, body);
    const handler = this.handlers[verb] as (args: VerbArgs<V>) => Promise<VerbResult<V>>;
    return handler(args);
  }

  private async handleFile(request: IncomingMessage, response: ServerResponse, url: URL): Promise<void> {
    const dataset = url.searchParams.get('dataset');
    const path = url.searchParams.get('path');
    if (dataset === null || path === null) {
      request.resume();
      throw new CairnError('EPROTO', 'file request needs dataset and path');
    }
    if (request.method === 'PUT') {
      const modeText = url.searchParams.get('mode');
      const modeBits = modeText === null ? FILE_MODE_DEFAULT : Number.parseInt(modeText, 8);
      if (!Number.isInteger(modeBits) || modeBits < 0 || modeBits > 0o7777) {
        request.resume();
        throw new CairnError('EINVAL', `bad file mode '${modeText ?? ''}'`);
      }
      try {
        const sizeBytes = await this.fsCall(dataset, path, (fs) => writeFileFrom(fs, path, request, modeBits));
        sendJson(response, 200, { ok: true, result: { sizeBytes } });
      } catch (error) {
        // Read the rest of the upload (discarding it) before answering: closing early would make the
        // client's next write fail with EPIPE and hide our error behind "connection failed".
        await drain(request);
        throw error;
      }
      return;
    }
    if (request.method === 'GET') {
      await this.fsCall(dataset, path, (fs) => streamChunks(readFileChunks(fs, path), response));
      return;
    }
    request.resume();
    throw new CairnError('EPROTO', `unsupported method ${request.method ?? '?'} on ${FILE_ENDPOINT}`);
  }

  /** zfs diff: lines formatted here (paths under the dataset's mountpoint, as zfs prints them). */
  private async handleDiff(response: ServerResponse, url: URL): Promise<void> {
    const from = url.searchParams.get('from');
    if (from === null) throw new CairnError('EPROTO', 'diff request needs from');
    const to = url.searchParams.get('to') ?? undefined;
    if (to !== undefined && poolOfDataset(to) !== poolOfDataset(from)) {
      throw new CairnError('EINVAL', `cannot diff '${from}' to '${to}': not in the same pool`);
    }
    const options = {
      classify: url.searchParams.get('classify') === '1',
      scripted: url.searchParams.get('scripted') === '1',
      escape: url.searchParams.get('escape') !== '0',
    };
    await this.usePool(poolOfDataset(from), async (entry) => {
      const datasets = entry.handle.datasets;
      const head = from.includes('@') ? from.slice(0, from.indexOf('@')) : from;
      const mountpoint = await mountpointOf(datasets, head);
      await streamChunks(diffLines(datasets.diff(from, to), mountpoint, options), response);
    });
  }

  /** cairn vol write / read: a volume's bytes from OFFSET, streamed in bounded chunks either way. */
  private async handleVolume(request: IncomingMessage, response: ServerResponse, url: URL): Promise<void> {
    const dataset = url.searchParams.get('dataset');
    if (dataset === null) {
      request.resume();
      throw new CairnError('EPROTO', 'volume request needs a dataset');
    }
    const offset = byteParameter(url, 'offset') ?? 0;
    if (request.method === 'PUT') {
      try {
        const sizeBytes = await this.usePool(poolOfDataset(dataset), async (entry) => {
          const volume = await entry.handle.datasets.openVolume(dataset);
          checkVolumeWrite(dataset, volume, offset);
          return writeVolumeFrom(dataset, volume, offset, request);
        });
        sendJson(response, 200, { ok: true, result: { sizeBytes } });
      } catch (error) {
        await drain(request);
        throw error;
      }
      return;
    }
    if (request.method === 'GET') {
      const length = byteParameter(url, 'length');
      await this.usePool(poolOfDataset(dataset), async (entry) => {
        const volume = await entry.handle.datasets.openVolume(dataset);
        await streamChunks(readVolumeChunks(dataset, volume, offset, length), response);
      });
      return;
    }
    request.resume();
    throw new CairnError('EPROTO', `unsupported method ${request.method ?? '?'} on ${VOLUME_ENDPOINT}`);
  }

  private sendError(response: ServerResponse, error: unknown): void {
    const cairnError = isCairnError(error) ? error : new CairnError('EIO', `internal error: ${errorMessage(error)}`);
    if (!isCairnError(error)) this.options.log(`internal error: ${describe(error)}`);
    if (response.headersSent) {
      response.destroy();
      return;
    }
    const body: ApiResponse<never> = { ok: false, error: cairnError.toWire() };
    sendJson(response, HTTP_STATUS[cairnError.code] ?? 500, body);
  }
}

/**
 * Streams chunks as the response body. The first chunk is read before the headers go out, so a missing
 * file or a directory is an ordinary error answer; a failure later is reported in the trailer.
 */
async function streamChunks(chunks: AsyncGenerator<Buffer>, response: ServerResponse): Promise<void> {
  const first = await chunks.next();
  response.writeHead(200, { 'content-type': 'application/octet-stream', trailer: ERROR_TRAILER });
  let trailer = '';
  try {
    if (first.done !== true) {
      if (!(await writeChunk(response, first.value))) return;
      for await (const chunk of chunks) {
        if (!(await writeChunk(response, chunk))) return;
      }
    }
  } catch (error) {
    const wire = isCairnError(error) ? error.toWire() : { code: 'EIO', message: errorMessage(error), data: {} };
    trailer = encodeURIComponent(JSON.stringify(wire));
  }
  response.addTrailers({ [ERROR_TRAILER]: trailer === '' ? 'none' : trailer });
  response.end();
}

const DIFF_CHUNK_BYTES = 64 * 1024;

/** The mountpoint diff paths go under; a dataset not mounted anywhere ('none', 'legacy') uses /NAME. */
async function mountpointOf(datasets: DatasetManager, name: string): Promise<string> {
  const found = (await datasets.getProperties(name, ['mountpoint'])).find((p) => p.name === 'mountpoint');
  const value = found === undefined ? '' : String(found.value);
  return value.startsWith('/') ? value : `/${name}`;
}

/** Diff entries as zfs diff lines, gathered into chunks of about DIFF_CHUNK_BYTES. */
async function* diffLines(
  entries: AsyncIterable<DiffEntry>,
  mountpoint: string,
  options: { classify: boolean; scripted: boolean; escape: boolean },
): AsyncGenerator<Buffer> {
  const under = (path: string): string => (path === '/' ? mountpoint : `${mountpoint === '/' ? '' : mountpoint}${path}`);
  let text = '';
  for await (const entry of entries) {
    const placed: DiffEntry = { ...entry, path: under(entry.path), ...(entry.newPath !== undefined ? { newPath: under(entry.newPath) } : {}) };
    let line = formatDiffEntry(placed, { classify: options.classify, escape: options.escape });
    if (options.scripted && placed.change === 'R' && placed.newPath !== undefined) {
      // zfs diff -H: the new path in its own field instead of " -> ".
      const escapeOne = (path: string): string => (options.escape ? escapeDiffPath(path) : path);
      line = `${line.slice(0, line.length - ` -> ${escapeOne(placed.newPath)}`.length)}\t${escapeOne(placed.newPath)}`;
    }
    text += `${line}\n`;
    if (text.length >= DIFF_CHUNK_BYTES) {
      yield Buffer.from(text);
      text = '';
    }
  }
  if (text !== '') yield Buffer.from(text);
}

/** Properties of one dataset as text ('-' where the dataset has none, as for a snapshot's mountpoint). */
async function propertyTexts(datasets: DatasetManager, name: string, names: string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const property of await datasets.getProperties(name, names)) out.set(property.name, String(property.value));
  return out;
}

/** An absolute, normalized path without a trailing slash. */
function normalizeMountpoint(path: string): string {
  if (!isAbsolute(path)) throw new CairnError('EINVAL', `mountpoint '${path}' must be an absolute path`);
  const normalized = posix.normalize(path);
  return normalized.length > 1 && normalized.endsWith('/') ? normalized.slice(0, -1) : normalized;
}

/** A byte count from the query ("offset", "length"): a non-negative safe integer, or absent. */
function byteParameter(url: URL, name: string): number | undefined {
  const text = url.searchParams.get(name);
  if (text === null) return undefined;
  const value = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(value)) throw new CairnError('EINVAL', `bad ${name} '${text}'`);
  return value;
}

function checkVolumeWrite(dataset: string, volume: BlockVolume, offset: number): void {
  if (volume.readonly) throw new CairnError('EROFS', `${dataset}: volume is read-only`);
  if (offset > volume.sizeBytes) {
    throw new CairnError('EINVAL', `${dataset}: offset ${offset} is past the end of the volume (${volume.sizeBytes} bytes)`);
  }
}

/**
 * Gathers the upload into STREAM_CHUNK_BYTES pieces and writes each at its offset, then flushes (the
 * command returns once the data is durable, like dd conv=fsync). A fresh buffer per piece, not a reused
 * one: the volume may keep a written buffer as dirty data until the txg syncs.
 */
async function writeVolumeFrom(dataset: string, volume: BlockVolume, offset: number, source: AsyncIterable<Buffer>): Promise<number> {
  let position = offset;
  let piece = Buffer.allocUnsafe(STREAM_CHUNK_BYTES);
  let filled = 0;
  const writePiece = async (data: Buffer): Promise<void> => {
    if (position + data.length > volume.sizeBytes) {
      throw new CairnError('ENOSPC', `${dataset}: write past the end of the volume (${volume.sizeBytes} bytes)`);
    }
    await volume.write(position, data);
    position += data.length;
  };
  for await (const chunk of source) {
    let used = 0;
    while (used < chunk.length) {
      const count = Math.min(STREAM_CHUNK_BYTES - filled, chunk.length - used);
      chunk.copy(piece, filled, used, used + count);
      filled += count;
      used += count;
      if (filled === STREAM_CHUNK_BYTES) {
        await writePiece(piece);
        piece = Buffer.allocUnsafe(STREAM_CHUNK_BYTES);
        filled = 0;
      }
    }
  }
  if (filled > 0) await writePiece(piece.subarray(0, filled));
  await volume.flush();
  return position - offset;
}

/** [offset, offset + length) clamped to the volume's end, in chunks of at most STREAM_CHUNK_BYTES. */
async function* readVolumeChunks(
  dataset: string,
  volume: BlockVolume,
  offset: number,
  length: number | undefined,
): AsyncGenerator<Buffer> {
  if (offset > volume.sizeBytes) {
    throw new CairnError('EINVAL', `${dataset}: offset ${offset} is past the end of the volume (${volume.sizeBytes} bytes)`);
  }
  const end = Math.min(volume.sizeBytes, length === undefined ? volume.sizeBytes : offset + length);
  for (let position = offset; position < end; ) {
    const count = Math.min(STREAM_CHUNK_BYTES, end - position);
    const chunk = await volume.read(position, count);
    position += count;
    yield chunk;
  }
}

/** A link or rename never crosses datasets (each has its own object set): EXDEV, as rename(2). */
function sameDataset(verb: string, dataset: string, path: string, toDataset: string, toPath: string): void {
  if (dataset !== toDataset) {
    throw new CairnError('EXDEV', `cannot ${verb} ${dataset}:${path} to ${toDataset}:${toPath}: not the same dataset`);
  }
}

/** Writes with backpressure; false when the client went away. */
async function writeChunk(response: ServerResponse, chunk: Buffer): Promise<boolean> {
  if (response.destroyed) return false;
  if (response.write(chunk)) return true;
  return new Promise((resolve) => {
    const onDrain = (): void => {
      response.off('close', onClose);
      resolve(true);
    };
    const onClose = (): void => {
      response.off('drain', onDrain);
      resolve(false);
    };
    response.once('drain', onDrain);
    response.once('close', onClose);
  });
}

function drain(request: IncomingMessage): Promise<void> {
  if (request.readableEnded || request.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    request.once('end', resolve);
    request.once('close', resolve);
    request.resume();
  });
}

async function readJsonBody(request: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let sizeBytes = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    sizeBytes += chunk.length;
    if (sizeBytes > JSON_BODY_BYTES_MAX) {
      request.resume();
      throw new CairnError('EPROTO', `request body larger than ${JSON_BODY_BYTES_MAX} bytes`);
    }
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return {};
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new CairnError('EPROTO', 'request body is not valid JSON');
  }
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  response.end(text);
}

function validatePoolName(name: string): void {
  if (!POOL_NAME_PATTERN.test(name)) {
    throw new CairnError(
      'EINVAL',
      `invalid pool name '${name}': must begin with a letter and contain only letters, digits, '_', '-' and '.'`,
    );
  }
  if (RESERVED_POOL_NAMES.has(name)) throw new CairnError('EINVAL', `invalid pool name '${name}': name is reserved`);
}

/** Device paths of the leaves of a status config tree. */
export function leafDevices(node: VdevStatusNode): string[] {
  const devices: string[] = [];
  const visit = (current: VdevStatusNode, depth: number): void => {
    if (depth > 0 && current.children.length === 0) devices.push(current.name);
    for (const child of current.children) visit(child, depth + 1);
  };
  visit(node, 0);
  return devices;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function describe(error: unknown): string {
  if (isCairnError(error)) return `${error.code}: ${error.message}`;
  return error instanceof Error ? (error.stack ?? error.message) : String(error);
}

/**
 * The daemon's FUSE mounts: which dataset is served at which path, recorded in CAIRN_HOME/mounts.json so
 * a daemon that was killed leaves no dead mount behind (the next start lazily unmounts every recorded
 * path that answers ENOTCONN, then clears the record).
 *
 * Two rules keep the daemon from waiting on itself (docs/fuse.md): nothing here touches a mount with a
 * synchronous fs call (creating a mountpoint inside another of our mounts goes through the thread pool
 * while the event loop serves the request), and unmounting is always an asynchronous child process.
 * Each mount has its own reader thread (a Worker blocked in read(2) on /dev/fuse, src/fuse), so mounts
 * cost no libuv thread; MOUNTS_MAX bounds the threads and memory they take.
 */
import { execFile } from 'node:child_process';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { cleanupStaleMount, mountFilesystem } from '../fuse/index.js';
import type { FuseMount, SnapdirVisibility, SnapshotProvider } from '../fuse/index.js';
import type { FileSystemApi, FsChange } from '../fs/index.js';
import { CairnError } from '../util/errors.js';
import { poolOfDataset } from './dataset-ops.js';
import type { MountRow } from './protocol.js';

interface MountEntry extends MountRow {
  handle: FuseMount;
  /** Mounted at the dataset's mountpoint property (so `set mountpoint=` moves it), not at a given path. */
  followsProperty: boolean;
}

export interface MountRequest {
  dataset: string;
  mountpoint: string;
  readonly: boolean;
  followsProperty: boolean;
  fs: FileSystemApi;
  onSync: () => Promise<void>;
  /**
   * The pool's datasets (DatasetManager), to serve the dataset's snapshots under `.cairn/snapshot` with
   * its snapdir property. Absent, or for a mounted snapshot: no `.cairn` directory.
   */
  datasets?: SnapshotDatasets;
}

/** What a mount needs of the pool's datasets to serve `.cairn/snapshot` (DatasetManager has all of it). */
export interface SnapshotDatasets {
  list(): ReadonlyArray<{ name: string }>;
  open(name: string): Promise<FileSystemApi>;
  getProperties(name: string, names?: string[]): Promise<ReadonlyArray<{ name: string; value: number | string }>>;
}

/**
 * The snapshots of `dataset()` as the FUSE mount asks for them: short names (after `@`) and their file
 * systems. The name is asked each time, so a mount that follows `cairn rename` lists the renamed ones.
 */
export function snapshotSource(datasets: SnapshotDatasets, dataset: () => string): SnapshotProvider {
  return {
    list: () => {
      const prefix = `${dataset()}@`;
      const names: string[] = [];
      for (const entry of datasets.list()) if (entry.name.startsWith(prefix)) names.push(entry.name.slice(prefix.length));
      return names;
    },
    open: (shortName) => datasets.open(`${dataset()}@${shortName}`),
  };
}

/** The snapdir property of a dataset ('hidden' unless set to 'visible'), read when it is mounted. */
export async function snapdirOf(datasets: SnapshotDatasets, dataset: string): Promise<SnapdirVisibility> {
  const properties = await datasets.getProperties(dataset, ['snapdir']);
  return properties.find((p) => p.name === 'snapdir')?.value === 'visible' ? 'visible' : 'hidden';
}

/** Mounts one cairnd serves: each is a reader thread with its request buffers (about 10 MiB). */
export const MOUNTS_MAX = 256;
const FORCE_SETTLE_ATTEMPTS = 20;
const FORCE_SETTLE_MS = 100;
const TOOL_TIMEOUT_MS = 10_000;

export class MountTable {
  private readonly mounts = new Map<string, MountEntry>();
  /** Serializes changes, so the record file and the table move together. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly recordPath: string,
    private readonly log: (line: string) => void,
    private readonly limit: number = MOUNTS_MAX,
  ) {}

  /**
   * At daemon start: every path a previous daemon recorded that is now a dead mount (ENOTCONN) is lazily
   * unmounted; a live mount or a plain directory is left alone. Then the record is cleared.
   */
  async cleanupRecorded(): Promise<void> {
    let recorded: MountRow[] = [];
    try {
      recorded = parseRecord(await readFile(this.recordPath, 'utf8'));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') this.log(`ignoring unreadable ${this.recordPath}: ${message(error)}`);
    }
    for (const row of recorded) {
      try {
        if (await cleanupStaleMount(row.mountpoint)) this.log(`cleaned up dead mount of ${row.dataset} at ${row.mountpoint}`);
      } catch (error) {
        this.log(`could not clean up ${row.mountpoint}: ${message(error)}`);
      }
    }
    await this.writeRecord();
  }

  list(): MountRow[] {
    return [...this.mounts.values()].map(toRow).sort((a, b) => compareMountpoints(a.mountpoint, b.mountpoint));
  }

  /**
   * How to tell the mount of `dataset` (if it is mounted) about a change the daemon made behind it, so
   * the kernel forgets what it cached (FuseMount.invalidate).
   */
  changeReporter(dataset: string): ((change: FsChange) => Promise<void>) | undefined {
    for (const entry of this.mounts.values()) if (entry.dataset === dataset) return (change) => entry.handle.invalidate(change);
    return undefined;
  }

  byDataset(dataset: string): MountRow | undefined {
    for (const entry of this.mounts.values()) if (entry.dataset === dataset) return toRow(entry);
    return undefined;
  }

  byMountpoint(mountpoint: string): MountRow | undefined {
    const entry = this.mounts.get(mountpoint);
    return entry === undefined ? undefined : toRow(entry);
  }

  /** Mounts of the datasets matching, deepest mountpoint first (children before parents). */
  select(match: (dataset: string) => boolean): MountRow[] {
    return this.list().filter((row) => match(row.dataset)).reverse();
  }

  followsProperty(mountpoint: string): boolean {
    return this.mounts.get(mountpoint)?.followsProperty ?? false;
  }

  mount(request: MountRequest): Promise<MountRow> {
    return this.serial(async () => {
      if (this.byDataset(request.dataset) !== undefined) {
        throw new CairnError('EBUSY', `cannot mount '${request.dataset}': filesystem already mounted at ${this.byDataset(request.dataset)?.mountpoint ?? '?'}`);
      }
      const holder = this.mounts.get(request.mountpoint);
      if (holder !== undefined) {
        throw new CairnError('EBUSY', `cannot mount '${request.dataset}': ${request.mountpoint} already has '${holder.dataset}' mounted`);
      }
      if (this.mounts.size >= this.limit) {
        throw new CairnError(
          'EBUSY',
          `cannot mount '${request.dataset}': this cairnd serves at most ${this.limit} mounts`,
        );
      }
      // Asynchronous on purpose: the directory may lie inside another of our mounts.
      await mkdir(request.mountpoint, { recursive: true, mode: 0o755 });
      // The entry's name, not the request's: `cairn rename` renames the entry, and its snapshots with it.
      let entry: MountEntry | null = null;
      const snapshots =
        request.datasets !== undefined && !request.dataset.includes('@')
          ? { snapshots: snapshotSource(request.datasets, () => entry?.dataset ?? request.dataset), snapdir: await snapdirOf(request.datasets, request.dataset) }
          : {};
      const handle = await mountFilesystem(request.fs, request.mountpoint, {
        readonly: request.readonly,
        name: request.dataset,
        onSync: request.onSync,
        onError: (error, opcode) => this.log(`mount ${request.mountpoint} (${request.dataset}): opcode ${opcode}: ${message(error)}`),
        ...snapshots,
      });
      entry = {
        dataset: request.dataset,
        mountpoint: request.mountpoint,
        readonly: request.readonly,
        handle,
        followsProperty: request.followsProperty,
      };
      this.mounts.set(request.mountpoint, entry);
      await this.writeRecord();
      this.log(`mounted ${request.dataset} at ${request.mountpoint}${request.readonly ? ' (read-only)' : ''}`);
      return toRow(entry);
    });
  }

  /**
   * Unmounts; EBUSY when files are in use. With force, a busy mount is detached lazily (umount -l): it
   * disappears from the namespace at once and the session ends when its last open file closes.
   */
  unmount(mountpoint: string, force = false): Promise<MountRow> {
    return this.serial(async () => {
      const entry = this.mounts.get(mountpoint);
      if (entry === undefined) throw new CairnError('ENOENT', `${mountpoint} is not a cairn mount`);
      try {
        await entry.handle.unmount();
      } catch (error) {
        if (!force) {
          throw new CairnError('EBUSY', `cannot unmount '${mountpoint}': ${message(error)} (files in use? use -f)`);
        }
        await this.forceUnmount(entry);
      }
      this.mounts.delete(mountpoint);
      await this.writeRecord();
      this.log(`unmounted ${entry.dataset} from ${mountpoint}`);
      return toRow(entry);
    });
  }

  /** After `cairn rename`: the mount stays where it is, under the dataset's new name. */
  renameDataset(from: string, to: string): Promise<void> {
    return this.serial(async () => {
      let changed = false;
      for (const entry of this.mounts.values()) {
        const renamed = renamedDataset(entry.dataset, from, to);
        if (renamed !== entry.dataset) {
          entry.dataset = renamed;
          changed = true;
        }
      }
      if (changed) await this.writeRecord();
    });
  }

  /** Unmounts every mount of the datasets matching (children first); stops at the first that will not go. */
  async unmountWhere(match: (dataset: string) => boolean, force = false): Promise<MountRow[]> {
    const done: MountRow[] = [];
    for (const row of this.select(match)) done.push(await this.unmount(row.mountpoint, force));
    return done;
  }

  /** Daemon stop: every mount goes, busy ones lazily; failures are logged, never thrown. */
  async closeAll(): Promise<void> {
    for (const row of this.select(() => true)) {
      try {
        await this.unmount(row.mountpoint, true);
      } catch (error) {
        this.log(`unmount ${row.mountpoint} failed: ${message(error)}`);
      }
    }
  }

  private async forceUnmount(entry: MountEntry): Promise<void> {
    await runTool('umount', ['-l', entry.mountpoint]).catch((error: unknown) => {
      throw new CairnError('EBUSY', `cannot unmount '${entry.mountpoint}': ${message(error)}`);
    });
    // The session ends once the detached mount's last user is gone; retrying unmount() then only waits
    // for it to drain. Retry only while nothing else is mounted at the path (unmount() would target it).
    for (let attempt = 0; attempt < FORCE_SETTLE_ATTEMPTS; attempt++) {
      if (await isMountpoint(entry.mountpoint)) break;
      try {
        await entry.handle.unmount();
        return;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, FORCE_SETTLE_MS));
      }
    }
    this.log(`mount of ${entry.dataset} at ${entry.mountpoint} detached; its session ends when its open files close`);
  }

  private async writeRecord(): Promise<void> {
    const rows = this.list();
    const tmpPath = `${this.recordPath}.tmp`;
    await writeFile(tmpPath, `${JSON.stringify({ version: 1, mounts: rows }, null, 2)}\n`, { mode: 0o600 });
    await rename(tmpPath, this.recordPath);
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

function toRow(entry: MountEntry): MountRow {
  return { dataset: entry.dataset, mountpoint: entry.mountpoint, readonly: entry.readonly };
}

function parseRecord(text: string): MountRow[] {
  const parsed = JSON.parse(text) as { mounts?: unknown };
  if (!Array.isArray(parsed.mounts)) return [];
  return parsed.mounts.filter(
    (row): row is MountRow =>
      typeof row === 'object' && row !== null && typeof (row as MountRow).dataset === 'string' && typeof (row as MountRow).mountpoint === 'string',
  );
}

/** "tank/a/b" renamed from "tank/a" to "tank/x" → "tank/x/b"; snapshots follow their head. */
export function renamedDataset(name: string, from: string, to: string): string {
  if (name === from) return to;
  if (name.startsWith(`${from}/`) || name.startsWith(`${from}@`)) return to + name.slice(from.length);
  return name;
}

/** Whether name is dataset or below it (a descendant or one of their snapshots). */
export function withinDataset(name: string, dataset: string): boolean {
  return name === dataset || name.startsWith(`${dataset}/`) || name.startsWith(`${dataset}@`);
}

export function inPool(name: string, pool: string): boolean {
  return poolOfDataset(name) === pool;
}

/** Path order where a parent sorts before everything under it ("/a" < "/a/b" < "/a-b"). */
export function compareMountpoints(a: string, b: string): number {
  const partsA = a.split('/');
  const partsB = b.split('/');
  for (let i = 0; i < Math.min(partsA.length, partsB.length); i++) {
    const x = partsA[i] ?? '';
    const y = partsB[i] ?? '';
    if (x !== y) return x < y ? -1 : 1;
  }
  return partsA.length - partsB.length;
}

/** Reads /proc/self/mountinfo (never the mount itself, which may hang). */
async function isMountpoint(path: string): Promise<boolean> {
  const text = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const field = line.split(' ')[4];
    if (field !== undefined && unescapeMountinfo(field) === path) return true;
  }
  return false;
}

function unescapeMountinfo(text: string): string {
  return text.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
}

function runTool(tool: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(tool, args, { timeout: TOOL_TIMEOUT_MS }, (error, _stdout, stderr) => {
      if (error === null) resolve();
      else reject(new Error(`${tool} ${args.join(' ')}: ${String(stderr).trim() || error.message}`));
    });
  });
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

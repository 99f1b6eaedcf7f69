/**
 * The library API of a pool (what `import { createPool, importPool } from 'cairn'` gives and what the
 * daemon serves). Implemented by pool/pool.ts.
 */
import type { HistoryEntry, IoStats, PoolStatus } from './types.js';
import type { FileSystemApi } from '../fs/types.js';
import type { DatasetManager } from '../dataset/dsl.js';
import type { BlockDevice } from '../vdev/types.js';

/** Opens a device by path; injected by the simulation (faulty in-memory disks), default: files. */
export type DeviceOpenFn = (path: string, options: { create?: number; exclusive?: boolean; readOnly?: boolean }) => Promise<BlockDevice>;

export interface CreatePoolOptions {
  name: string;
  /** zpool-style vdev spec tokens: ["mirror", "a.img", "b.img", "raidz2", "c", "d", "e", "f"]. */
  vdevSpec: string[];
  /** Create missing files sparse with this size (cairn pool create -s). */
  createSizeBytes?: number;
  /** Use devices that carry another pool's labels (zpool create -f). */
  force?: boolean;
  /** ARC size limit; default 256 MiB. */
  cacheSizeBytes?: number;
  /** Pool properties at creation, e.g. { checksum: "xxh128", compression: "lz4" }. */
  properties?: Record<string, string>;
  /** Default: files and block devices (openFileDevice). */
  openDevice?: DeviceOpenFn;
}

export interface ImportPoolOptions {
  /** Name or GUID of the pool to import; omitted: the only importable pool found. */
  nameOrGuid?: string;
  /** Device paths to scan (files, or directories whose files are scanned). */
  searchPaths: string[];
  cacheSizeBytes?: number;
  /** Import even if the labels say another live process has it (zpool import -f). */
  force?: boolean;
  /** Default: files and block devices; with it, searchPaths name devices directly. */
  openDevice?: DeviceOpenFn;
}

export interface ImportablePool {
  name: string;
  guid: string;
  health: string;
  devices: string[];
}

export interface PoolHandle {
  readonly name: string;
  readonly guid: string;
  /** The pool's root filesystem. */
  readonly fs: FileSystemApi;
  /** The pool's datasets (filesystems, volumes, snapshots, clones). */
  readonly datasets: DatasetManager;
  status(): PoolStatus;
  /** Commits the open txg and waits until it is durable. */
  sync(): Promise<void>;
  /** Starts a scrub; with wait, resolves when it has finished. */
  scrub(options?: { wait?: boolean; stop?: boolean }): Promise<void>;
  offline(device: string): Promise<void>;
  online(device: string): Promise<void>;
  /** replace OLD with NEW (NEW omitted: the same path, a new device there); resilvers. */
  replace(oldDevice: string, newDevice?: string, options?: { createSizeBytes?: number }): Promise<void>;
  attach(device: string, newDevice: string, options?: { createSizeBytes?: number }): Promise<void>;
  detach(device: string): Promise<void>;
  add(vdevSpec: string[], options?: { createSizeBytes?: number; force?: boolean }): Promise<void>;
  history(): Promise<HistoryEntry[]>;
  /** Appends a line to the pool history (the daemon logs each command). */
  logHistory(command: string): Promise<void>;
  iostat(): IoStats;
  /** Syncs, marks the labels exported and closes the devices. */
  export(): Promise<void>;
  /** Syncs and closes the devices but leaves the pool marked active (daemon shutdown: re-imported at next start). */
  close(): Promise<void>;
  /** Marks the labels destroyed and closes the devices. */
  destroy(): Promise<void>;
}

/**
 * Pool: one imported pool (OpenZFS spa). Theory, in short:
 *
 * - State moves from one committed txg to the next. Clients change the open txg in memory (holds, see
 *   txg-gate.ts); sync() writes every change copy-on-write to new blocks — datasets first, then the
 *   MOS, repeating MOS passes until the space maps stop changing — flushes every device, and only then
 *   writes the uberblock naming the new MOS root into every label's ring, and flushes again. A crash
 *   before the uberblock is durable leaves the previous txg intact: nothing it references was
 *   overwritten (frees wait DEFER_TXGS txgs before reuse).
 * - Labels carry the config (vdev tree, pool GUID, owner pid and host). Config changes are written to
 *   labels 0 and 2 before the uberblock and 1 and 3 after it, so two valid labels always exist.
 * - One owner: labels say "active" with our host and pid while imported; an importer that finds a live
 *   owner on this host is refused, a dead one (kill -9) is taken over.
 * - Reads go through the ARC; every block is verified by its parent's checksum in the io pipeline,
 *   which heals bad copies from good ones. A failure to write a txg suspends the pool (EIO) rather
 *   than guess.
 */
import { hostname } from 'node:os';
import { dvaKey, holeBlockPointer, isHole, type BlockPointer } from '../io/blkptr.js';
import { IoPipeline } from '../io/index.js';
import { ChecksumType, CompressionType, type BlockWriteProps } from '../io/types.js';
import { Arc } from '../cache/index.js';
import { ObjectSet, ObjsetType, type ObjsetEnvironment, type WritePolicy } from '../objects/objset.js';
import { DatasetManager, type DatasetHost } from '../dataset/index.js';
import type { FileSystemApi } from '../fs/types.js';
import { assert } from '../util/assert.js';
import { CairnError, isCairnError } from '../util/errors.js';
import { LeafVdev, MirrorVdev, RaidzVdev, buildVdevConfig, openFileDevice, openVdev, parseVdevSpec, randomGuid } from '../vdev/index.js';
import type { BlockDevice, Vdev } from '../vdev/types.js';
import type { HistoryEntry, IoStats, PoolHealth, PoolStatus, ScanStatus, VdevStatusNode } from './types.js';
import type { DeviceOpenFn, PoolHandle } from './api.js';
import { initializeLabels, ON_DISK_VERSION, readDeviceLabels, newestConfig, writeLabelConfigs, writeUberblock, type LabelConfig, type Uberblock } from './label.js';
import { MetaslabAllocator, type MetaslabVdevConfig } from './metaslab.js';
import { Mos, type PoolConfigPhys } from './mos.js';
import { TxgGate } from './txg-gate.js';
import { Scanner } from './scan.js';

export const ARC_SIZE_DEFAULT_BYTES = 256 * 1024 * 1024;
export const DIRTY_DATA_MAX_BYTES = 256 * 1024 * 1024;
/** A txg is synced at least this often when anything is dirty (OpenZFS zfs_txg_timeout). */
export const TXG_TIMEOUT_MS = 5000;
/**
 * A txg is synced early once this many objects were made dirty in it. Syncing costs 60-80 µs of CPU per
 * small file here (2026-12-07: 10,000 new 4 KiB files, 820-940 ms; a txg's own cost about 20 ms), and
 * writers wait for the whole of it: this keeps that pause near 150 ms, where a txg of small files
 * would otherwise grow until the timer, 0.7 s of pause for 10,000. OpenZFS bounds a txg by dirty
 * bytes only; its sync runs beside the next open txg, which Cairn's does not (yet).
 */
export const DIRTY_OBJECTS_SYNC = 2048;
const ROOT_DATASET_KEY = 'root_dataset';
/** Sync passes after which the MOS must have converged; more is a bug. */
const SYNC_PASSES_MAX = 30;

export const POOL_PROPERTY_DEFAULTS: Record<string, string> = {
  checksum: 'fletcher4',
  compression: 'lz4',
  copies: '1',
};

/** Each block pointer's ARC key, made once per pointer object (the object set decodes each once, objset.ts pointerIn). */
const arcKeys = new WeakMap<BlockPointer, string>();

/** Pools open in this process, by GUID: a second import here is refused like one from another process. */
const openPools = new Map<string, Pool>();

export interface PoolOpenParts {
  name: string;
  guid: string;
  vdevs: Vdev[];
  /** Leaf devices by path for closing. */
  arcSizeBytes: number;
  txg: number;
  createdNew: boolean;
}

export function checksumOf(name: string): (typeof ChecksumType)[keyof typeof ChecksumType] {
  const v = (ChecksumType as Record<string, number>)[name];
  if (v === undefined || v === ChecksumType.off) throw new CairnError('EINVAL', `unknown checksum '${name}' (fletcher4, sha256, xxh128)`);
  return v as (typeof ChecksumType)[keyof typeof ChecksumType];
}

export function compressionOf(name: string): (typeof CompressionType)[keyof typeof CompressionType] {
  const v = (CompressionType as Record<string, number>)[name === 'on' ? 'lz4' : name];
  if (v === undefined) throw new CairnError('EINVAL', `unknown compression '${name}' (off, lz4, zstd)`);
  return v as (typeof CompressionType)[keyof typeof CompressionType];
}

function copiesOf(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 3) throw new CairnError('EINVAL', `copies must be 1, 2 or 3, not '${value}'`);
  return n;
}

export function leavesOf(vdev: Vdev): LeafVdev[] {
  if (vdev instanceof LeafVdev) return [vdev];
  return vdev.children.flatMap((c) => leavesOf(c));
}

export class Pool implements PoolHandle {
  readonly name: string;
  readonly guid: string;
  vdevs: Vdev[];
  readonly io: IoPipeline;
  readonly arc: Arc;
  readonly gate: TxgGate;
  allocator!: MetaslabAllocator;
  mos!: Mos;
  /** Every dataset, snapshot and clone; the root dataset's file system is `fs`. */
  datasets!: DatasetManager;
  private rootDatasetId = 0;
  private properties: Record<string, string> = { ...POOL_PROPERTY_DEFAULTS };
  /** Last committed txg. */
  txg: number;
  private syncingTxg = 0;
  private configDirty = false;
  private suspended: Error | null = null;
  private closed = false;
  private syncTimer: NodeJS.Timeout | null = null;
  private syncInFlight: Promise<void> | null = null;
  /**
   * The commit of the last written txg (its device flushes and uberblock), which runs after the txg gate
   * reopened: the next txg takes writes meanwhile. Null when none runs.
   */
  private committing: { txg: number; done: Promise<void> } | null = null;
  /**
   * The allocator's space figures as open context sees them. Space is allocated and freed only while a
   * txg syncs (in an exclusive section) and when its commit ends, so the figures are computed once
   * between those instead of walking every metaslab on each write's space check.
   */
  private spaceSeen: ReturnType<MetaslabAllocator['space']> | null = null;
  readonly scanner: Scanner;
  readonly env: ObjsetEnvironment;
  /** Leaves offline since this txg: `online` resilvers what was born after it. */
  private readonly offlineSince = new Map<string, number>();
  private openDevice: DeviceOpenFn = openFileDevice;
  private readonly readsInFlight = new Map<string, Promise<Buffer>>();
  /** Top-level vdevs whose space map tables the next sync creates. */
  private readonly spaceMapsMissing = new Set<number>();

  private constructor(name: string, guid: string, vdevs: Vdev[], arcSizeBytes: number, txg: number) {
    this.name = name;
    this.guid = guid;
    this.vdevs = vdevs;
    this.txg = txg;
    this.arc = new Arc({ maxSizeBytes: arcSizeBytes });
    // A sync already on its way answers the gate: every hold that ends past a trigger asks, and a
    // second txg queued behind the first would be a needless drain, uberblock and flushes.
    this.gate = new TxgGate(Math.min(DIRTY_DATA_MAX_BYTES, Math.max(8 << 20, arcSizeBytes)), () => this.syncInFlight ?? this.sync(), DIRTY_OBJECTS_SYNC);
    this.io = new IoPipeline({ vdevs: (id) => this.vdevs[id], allocator: { allocate: (p, c) => this.allocator.allocate(p, c), free: (d) => this.allocator.free(d) } });
    this.scanner = new Scanner(this);
    this.env = {
      readBlock: (bp) => this.readBlock(bp),
      readBlockInto: (bp, target) => this.readBlockInto(bp, target),
      writeBlock: (data, props, old) => this.writeBlock(data, props, old),
      freeBlock: (bp) => this.freeBlock(bp),
      hold: (fn) => this.hold(fn),
      dirtyBytesChanged: (delta) => this.gate.dirtyBytesChanged(delta),
      objectDirtied: () => this.gate.dirtyObjects++,
      reserveSpace: (bytes, copies) => this.reserveSpace(bytes, copies, 0),
    };
  }

  get fs(): FileSystemApi {
    return this.datasets.root.fs;
  }

  private get rootObjset(): ObjectSet {
    return this.datasets.root.objset;
  }

  private datasetHost(): DatasetHost {
    return {
      poolName: this.name,
      mos: () => this.mos.os,
      env: this.env,
      policy: () => this.datasetPolicy(),
      statfs: () => this.statfs(),
      availableBytes: () => Math.max(0, this.space().freeBytes - this.slopBytes()),
      reserveSpace: (bytes, copies, heldBytes) => this.reserveSpace(bytes, copies, heldBytes),
      sync: () => this.sync(),
      openTxg: () => (this.committing?.txg ?? this.txg) + 1,
      hold: (fn) => this.hold(fn),
      syncTask: (check, fn) => this.syncTask(check, fn),
      takeBlock: (bp) => this.takeBlock(bp),
    };
  }

  // ---- creation and import ------------------------------------------------------------------------

  static async create(name: string, vdevs: Vdev[], options: { arcSizeBytes: number; properties: Record<string, string>; openDevice: DeviceOpenFn }): Promise<Pool> {
    const guid = randomGuid();
    const pool = new Pool(name, guid, vdevs, options.arcSizeBytes, 0);
    pool.openDevice = options.openDevice;
    pool.properties = { ...POOL_PROPERTY_DEFAULTS, ...options.properties };
    pool.validateProperties();
    await pool.claim(guid);
    pool.allocator = new MetaslabAllocator(vdevs);
    pool.mos = await pool.withoutGate(async () => {
      const mosOs = ObjectSet.create(pool.env, ObjsetType.meta, pool.mosPolicy());
      return Mos.create(mosOs, pool.poolConfigPhys());
    });
    for (const v of vdevs) await pool.mos.createSpaceMaps(v.id, pool.allocator.metaslabCount(v.id));
    pool.rootDatasetId = await pool.mos.createDataset({ createTxg: 1, rootBp: holeBlockPointer() }, ROOT_DATASET_KEY);
    pool.datasets = await DatasetManager.createRoot(pool.datasetHost(), pool.rootDatasetId, { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 });
    for (const leaf of pool.leaves()) {
      const device = leaf.device;
      if (device) await initializeLabels(device, pool.labelConfig(leaf, 'active'));
    }
    await pool.syncNow();
    pool.startTimer();
    return pool;
  }

  static async open(config: LabelConfig, vdevs: Vdev[], uberblocks: Uberblock[], options: { arcSizeBytes: number; openDevice: DeviceOpenFn }): Promise<Pool> {
    const ordered = [...uberblocks].sort((a, b) => b.txg - a.txg);
    let lastError: unknown = new CairnError('EBADLABEL', `pool '${config.name}' has no valid uberblock`);
    for (const ub of ordered) {
      const pool = new Pool(config.name, config.poolGuid, vdevs, options.arcSizeBytes, ub.txg);
      pool.openDevice = options.openDevice;
      try {
        await pool.load(ub);
      } catch (e) {
        // Rewind to the previous txg (zpool import -F) only when this one's tree is proven damaged
        // (no copy verifies): an I/O error may pass, and rewinding on it would discard newer txgs.
        if (!isCairnError(e, 'ECKSUM')) throw e;
        lastError = e;
        continue;
      }
      await pool.claim(config.poolGuid);
      try {
        pool.configDirty = true;
        await pool.writeLabelsNow();
      } catch (e) {
        openPools.delete(config.poolGuid);
        throw e;
      }
      pool.startTimer();
      return pool;
    }
    throw lastError;
  }

  private async load(ub: Uberblock): Promise<void> {
    const mosOs = await ObjectSet.open(this.env, ub.rootBp, this.mosPolicy());
    this.mos = Mos.open(mosOs);
    const config = await this.mos.readConfig();
    this.properties = { ...POOL_PROPERTY_DEFAULTS, ...config.properties };
    // A top-level vdev the labels name but the committed MOS does not know was being added when the
    // pool stopped: nothing committed points into it, so it joins empty and gets its space maps at
    // the next sync.
    const persisted: MetaslabVdevConfig[] = [];
    const committed: Vdev[] = [];
    for (const v of this.vdevs) {
      const shift = config.metaslabShift[String(v.id)];
      if (shift === undefined || !(await this.mos.hasSpaceMaps(v.id))) {
        this.spaceMapsMissing.add(v.id);
        this.configDirty = true;
        continue;
      }
      committed.push(v);
      persisted.push({ vdevId: v.id, metaslabShift: shift, metaslabCount: Math.ceil(v.asize / 2 ** shift) });
    }
    this.allocator = new MetaslabAllocator(committed, { persisted });
    for (const v of this.vdevs) if (this.spaceMapsMissing.has(v.id)) this.allocator.addVdev(v, undefined);
    for (const v of committed) {
      const count = this.allocator.metaslabCount(v.id);
      const ids = await this.mos.spaceMapIds(v.id, count);
      for (let ms = 0; ms < count; ms++) this.allocator.loadMetaslab(v.id, ms, await this.mos.readSpaceMap(ids[ms] as number));
    }
    this.rootDatasetId = await this.mos.datasetObject(ROOT_DATASET_KEY);
    this.datasets = await DatasetManager.load(this.datasetHost(), this.rootDatasetId);
  }

  /** Registers this process as the pool's one owner. */
  private async claim(guid: string): Promise<void> {
    if (openPools.has(guid)) throw new CairnError('EPOOLINUSE', `pool '${this.name}' is already imported by this process`);
    openPools.set(guid, this);
  }

  // ---- properties and policies --------------------------------------------------------------------

  private validateProperties(): void {
    for (const key of Object.keys(this.properties)) {
      if (!(key in POOL_PROPERTY_DEFAULTS)) throw new CairnError('EINVAL', `unknown property '${key}'`);
    }
    checksumOf(this.properties['checksum'] as string);
    compressionOf(this.properties['compression'] as string);
    copiesOf(this.properties['copies'] as string);
  }

  private mosPolicy(): WritePolicy {
    return { checksum: checksumOf(this.properties['checksum'] ?? 'fletcher4'), compression: CompressionType.lz4, copies: 3, metadataCopies: 3 };
  }

  private datasetPolicy(): WritePolicy {
    const copies = copiesOf(this.properties['copies'] ?? '1');
    return {
      checksum: checksumOf(this.properties['checksum'] ?? 'fletcher4'),
      compression: compressionOf(this.properties['compression'] ?? 'lz4'),
      copies,
      metadataCopies: Math.min(3, copies + 1),
    };
  }

  private poolConfigPhys(): PoolConfigPhys {
    const metaslabShift: Record<string, number> = {};
    for (const v of this.vdevs) metaslabShift[String(v.id)] = this.allocator ? this.allocator.metaslabShift(v.id) : 0;
    return { version: ON_DISK_VERSION, properties: this.properties, metaslabShift };
  }

  // ---- the block environment of every object set -------------------------------------------------

  private arcKey(bp: BlockPointer): string {
    let key = arcKeys.get(bp);
    if (key !== undefined) return key;
    const dva = bp.dvas[0];
    assert(dva !== undefined, 'cache key of a hole');
    // The checksum is part of the key: a block born in the syncing txg is rewritten in place (same
    // DVA, same birth) by later sync passes, and must not be confused with its earlier contents.
    key = `${dvaKey(dva)}:${bp.birthTxg}:${bp.cksum.toString('hex', 0, 16)}`;
    arcKeys.set(bp, key);
    return key;
  }

  private async readBlock(bp: BlockPointer): Promise<Buffer> {
    this.checkUsable();
    const key = this.arcKey(bp);
    const cached = this.arc.get(key);
    if (cached) return cached;
    // One device read per block however many readers (and the prefetcher) want it at once.
    let pending = this.readsInFlight.get(key);
    if (!pending) {
      pending = this.io.read(bp).then((data) => {
        this.arc.put(key, data);
        return data;
      }).finally(() => this.readsInFlight.delete(key));
      this.readsInFlight.set(key, pending);
    }
    return pending;
  }

  private async readBlockInto(bp: BlockPointer, target: Buffer): Promise<void> {
    this.checkUsable();
    const key = this.arcKey(bp);
    const cached = this.arc.get(key) ?? (await this.readsInFlight.get(key));
    if (cached) {
      cached.copy(target);
      return;
    }
    // Not cached, and not cached now: a buffer per block, the ARC's insert and eviction, the copy out
    // and the GC of released buffers cost a cold sequential read through the mount well over half its
    // speed (576 → 1,425-1,501 MiB/s in a probe).
    await this.io.readInto(bp, target);
  }

  /**
   * readBlock, but the buffer leaves the ARC: the caller modifies it as the next version of the block
   * (a small write into a record) instead of copying it. A reader that already holds it sees the write,
   * as a read racing a write may; the dataset layer takes only blocks no snapshot can read.
   */
  private async takeBlock(bp: BlockPointer): Promise<Buffer> {
    const data = await this.readBlock(bp);
    this.arc.remove(this.arcKey(bp));
    return data;
  }

  private async writeBlock(data: Buffer, props: BlockWriteProps, old: BlockPointer | null): Promise<BlockPointer> {
    assert(this.syncingTxg !== 0 && props.birthTxg === this.syncingTxg, 'block write outside the syncing txg');
    let bp: BlockPointer;
    if (old && !isHole(old) && old.birthTxg === this.syncingTxg) {
      this.arc.remove(this.arcKey(old));
      bp = await this.io.rewrite(old, data, props);
    } else {
      bp = await this.io.write(data, props);
    }
    // Metadata is read again soon (the next txg's indirect updates). Data stays cached when part of
    // the block was written this txg (props.keepCached): the next small write into that record would
    // otherwise read it back and verify it (4 KiB random writes went 1,500 → 12,000 a second
    // in-process). Whole records written by a stream are not kept: caching them cost a sequential
    // write a third of its speed, as OpenZFS's dbuf cache does not pay in C.
    if (props.level > 0 || props.type !== 10 || props.keepCached === true) this.arc.put(this.arcKey(bp), data);
    return bp;
  }

  private freeBlock(bp: BlockPointer): void {
    if (isHole(bp)) return;
    this.arc.remove(this.arcKey(bp));
    for (const dva of bp.dvas) this.allocator.free(dva);
  }

  /**
   * Write-time space check (OpenZFS dsl_dir_tempreserve, much simplified): the dirty data plus this
   * write, at its worst-case allocated size (copies × raidz parity overhead, plus metadata), must fit
   * in the free space minus the slop (1/32 of the pool, at least 4 MiB). The slop is left for metadata,
   * so deleting files still works on a full pool.
   */
  private space(): ReturnType<MetaslabAllocator['space']> {
    return (this.spaceSeen ??= this.allocator.space());
  }

  private reserveSpace(bytes: number, copies: number, heldBytes: number): void {
    const space = this.space();
    const slopBytes = this.slopBytes() + heldBytes;
    let inflation = 1;
    for (const v of this.vdevs) inflation = Math.max(inflation, v.allocatedSize(128 * 1024) / (128 * 1024));
    const neededBytes = (this.gate.dirtyBytes + bytes) * copies * inflation * 1.02;
    if (space.freeBytes - slopBytes < neededBytes) {
      throw new CairnError('ENOSPC', `pool '${this.name}' is out of space`, { freeBytes: space.freeBytes });
    }
  }

  /** Kept free for metadata, so deleting files still works on a full pool. */
  private slopBytes(): number {
    return Math.max(this.space().sizeBytes / 32, 4 * 1024 * 1024);
  }

  hold<T>(fn: () => Promise<T>): Promise<T> {
    this.checkUsable();
    return this.gate.hold(() => {
      this.checkUsable(); // the pool may have closed while this hold waited
      return fn();
    });
  }

  /** For work done before the pool is open to clients (creation): no txg discipline needed yet. */
  private async withoutGate<T>(fn: () => Promise<T>): Promise<T> {
    return fn();
  }

  private checkUsable(): void {
    if (this.closed) throw new CairnError('EFAULTED', `pool '${this.name}' is not imported`);
    if (this.suspended) throw new CairnError('EIO', `pool '${this.name}' is suspended after a failed txg write: ${this.suspended.message}`);
  }

  // ---- txg sync -----------------------------------------------------------------------------------

  private startTimer(): void {
    this.syncTimer = setInterval(() => {
      if (this.gate.dirtyBytes > 0 || this.datasets.isDirty || this.mos.os.isDirty || this.allocator.freesWaiting) {
        void this.sync().catch(() => undefined);
      }
    }, TXG_TIMEOUT_MS);
    this.syncTimer.unref();
  }

  /** Commits the open txg and waits until it is durable (coalescing concurrent callers). */
  async sync(): Promise<void> {
    this.checkUsable();
    if (this.syncInFlight) {
      await this.syncInFlight.catch(() => undefined);
    }
    if (!this.syncInFlight) {
      this.syncInFlight = this.syncNow().finally(() => {
        this.syncInFlight = null;
      });
    }
    return this.syncInFlight;
  }

  private async syncNow(): Promise<void> {
    const commit = await this.exclusive(async () => {
      // The txg a caller waited for may have failed to commit just now: nothing is dirty then, but
      // nothing it wrote is durable either, so the pool's suspension is the answer.
      this.checkUsable();
      // A txg with nothing dirty still runs while deferred frees wait for txgs to pass, so deleted
      // space comes back without new writes.
      if (!this.datasets.isDirty && !this.mos.os.isDirty && !this.configDirty && !this.allocator.freesWaiting && this.txg > 0) {
        this.gate.dirtyObjects = 0; // counted in an object set dropped unwritten (a destroyed dataset)
        return null;
      }
      return this.writeTxg(this.txg + 1);
    });
    await commit?.done;
  }

  /**
   * Every exclusive section starts after the last txg's commit finished, so none sees a txg half
   * committed (devices, labels, the allocator's txg and `txg` move together in the commit).
   */
  private async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    // Waited for outside the gate first, so holds of the next txg go on while the last commit flushes.
    await this.committing?.done.catch(() => undefined);
    return this.gate.exclusive(async () => {
      await this.committing?.done.catch(() => undefined);
      this.spaceSeen = null;
      try {
        return await fn();
      } finally {
        this.spaceSeen = null;
      }
    });
  }

  /**
   * A dataset sync task (OpenZFS dsl_sync_task): after a sync, with every hold drained, `check` may
   * refuse (nothing changed); then `fn` runs inside the next txg's sync, after the datasets were
   * written and before the MOS passes, so everything it changes commits in that one txg.
   */
  private async syncTask<T>(check: () => Promise<void>, fn: (txg: number) => Promise<T>): Promise<T> {
    await this.sync();
    let out: T | undefined;
    const commit = await this.exclusive(async () => {
      this.checkUsable();
      await check();
      return this.writeTxg(this.txg + 1, async (txg) => {
        out = await fn(txg);
      });
    });
    await commit.done;
    return out as T;
  }

  /**
   * Writes txg (inside an exclusive section) and starts its commit, which it returns without waiting
   * for it: OpenZFS's quiesce-then-sync, cut where the in-memory state of the txg is final. What the
   * commit does touches only the devices, so holds of the next txg may run meanwhile; a failure in
   * either half suspends the pool.
   */
  private async writeTxg(txg: number, task?: (txg: number) => Promise<void>): Promise<{ done: Promise<void> }> {
    this.checkUsable();
    let mosRoot: BlockPointer;
    try {
      mosRoot = await this.syncTxg(txg, task);
    } catch (e) {
      this.syncingTxg = 0;
      this.suspended = e instanceof Error ? e : new Error(String(e));
      throw e;
    }
    const done = this.commitTxg(txg, mosRoot).catch((e: unknown) => {
      this.suspended = e instanceof Error ? e : new Error(String(e));
      throw e;
    }).finally(() => {
      this.committing = null;
    });
    this.committing = { txg, done };
    done.catch(() => undefined); // awaited by the caller; never an unhandled rejection meanwhile
    return { done };
  }

  /** The first half of a txg: every dirty dataset, the sync task and the MOS written, passes converged; returns the MOS root. */
  private async syncTxg(txg: number, task?: (txg: number) => Promise<void>): Promise<BlockPointer> {
    this.syncingTxg = txg;
    this.allocator.beginSync(txg);
    {
      this.scanner.beforeSync(txg);
      await this.datasets.syncDirty(txg);
      this.gate.dirtyObjects = 0; // all written; what a sync task dirties after this is the next txg's
      if (task) await task(txg);
      // Space maps of vdevs added since the last txg, in the same txg as the config naming them.
      for (const id of [...this.spaceMapsMissing].sort((a, b) => a - b)) {
        await this.mos.createSpaceMaps(id, this.allocator.metaslabCount(id));
        this.spaceMapsMissing.delete(id);
      }
      if (this.configDirty) await this.mos.writeConfig(this.poolConfigPhys());
      let mosRoot = this.mos.os.root;
      for (let pass = 1; ; pass++) {
        assert(pass <= SYNC_PASSES_MAX, `txg ${txg} did not converge in ${SYNC_PASSES_MAX} passes`);
        const ids = new Map<number, number[]>();
        for (const update of this.allocator.pendingRecords()) {
          let table = ids.get(update.vdevId);
          if (!table) {
            const v = this.vdevs[update.vdevId];
            assert(v !== undefined, `space map update for unknown vdev ${update.vdevId}`);
            table = await this.mos.spaceMapIds(v.id, this.allocator.metaslabCount(v.id));
            ids.set(update.vdevId, table);
          }
          const id = table[update.metaslabIndex];
          assert(id !== undefined, 'space map object id');
          if (update.mode === 'append') await this.mos.appendSpaceMap(id, update.bytes);
          else await this.mos.rewriteSpaceMap(id, update.bytes);
        }
        if (!this.mos.os.isDirty && pass > 1) break;
        mosRoot = await this.mos.os.sync(txg);
      }
      return mosRoot;
    }
  }

  /** The second half: the txg's writes made durable, then the uberblock that points at them (and the labels if the config changed). */
  private async commitTxg(txg: number, mosRoot: BlockPointer): Promise<void> {
    // Taken now: a config change made while this commit runs (offline) is the next txg's to write.
    const config = this.configDirty;
    this.configDirty = false;
    try {
      await this.flushAll();
      const ub: Uberblock = { txg, poolGuid: this.guid, timestampMs: Date.now(), rootBp: mosRoot };
      if (config) await this.writeLabels([0, 2]);
      await this.forEachLeaf((device) => writeUberblock(device, ub));
      await this.flushAll();
      if (config) {
        await this.writeLabels([1, 3]);
        await this.flushAll();
      }
      this.allocator.endSync(txg);
      this.spaceSeen = null;
      this.txg = txg;
    } catch (e) {
      if (config) this.configDirty = true;
      throw e;
    } finally {
      this.syncingTxg = 0;
    }
  }

  /** Runs fn on every usable leaf device; fails only if no leaf took it. */
  private async forEachLeaf(fn: (device: BlockDevice, leaf: LeafVdev) => Promise<void>): Promise<void> {
    let ok = 0;
    let lastError: unknown = null;
    await Promise.all(this.leaves().map(async (leaf) => {
      const device = leaf.device;
      if (!device || leaf.state === 'OFFLINE' || leaf.state === 'FAULTED') return;
      try {
        await fn(device, leaf);
        ok++;
      } catch (e) {
        leaf.errors.write++;
        lastError = e;
      }
    }));
    if (ok === 0) throw new CairnError('EIO', `no device of pool '${this.name}' could be written${lastError instanceof Error ? `: ${lastError.message}` : ''}`);
  }

  private async flushAll(): Promise<void> {
    await this.forEachLeaf((device) => device.flush());
  }

  private labelConfig(leaf: LeafVdev, state: LabelConfig['state']): LabelConfig {
    return {
      version: ON_DISK_VERSION, name: this.name, poolGuid: this.guid, state, txg: this.txg + 1,
      hostname: hostname(), pid: process.pid, guid: leaf.guid, vdevTree: this.vdevs.map((v) => v.config()),
    };
  }

  private async writeLabels(indexes: number[], state: LabelConfig['state'] = 'active'): Promise<void> {
    await this.forEachLeaf((device, leaf) => writeLabelConfigs(device, this.labelConfig(leaf, state), indexes));
  }

  private async writeLabelsNow(state: LabelConfig['state'] = 'active'): Promise<void> {
    await this.writeLabels([0, 2], state);
    await this.flushAll();
    await this.writeLabels([1, 3], state);
    await this.flushAll();
  }

  leaves(): LeafVdev[] {
    return this.vdevs.flatMap((v) => leavesOf(v));
  }

  // ---- status -------------------------------------------------------------------------------------

  health(): PoolHealth {
    if (this.suspended) return 'SUSPENDED';
    let degraded = false;
    for (const v of this.vdevs) {
      if (v.state === 'FAULTED' || v.state === 'UNAVAIL') return 'UNAVAIL';
      if (v.state !== 'ONLINE') degraded = true;
    }
    return degraded ? 'DEGRADED' : 'ONLINE';
  }

  status(): PoolStatus {
    const space = this.allocator.space();
    const node = (v: Vdev, index: number): VdevStatusNode => {
      const name = v instanceof LeafVdev ? v.path : `${v.kind === 'raidz' ? `raidz${(v as RaidzVdev).nparity}` : v.kind}-${index}`;
      const out: VdevStatusNode = { name, state: v.state, errors: { ...v.errors }, children: v.children.map((c, i) => node(c, i)) };
      const resilvering = this.scanner.resilveringLeaves.has(v.guid);
      if (resilvering) out.note = '(resilvering)';
      else if (v instanceof LeafVdev && v.state === 'UNAVAIL') out.note = 'cannot open';
      return out;
    };
    const health = this.health();
    return {
      name: this.name,
      guid: this.guid,
      health,
      txg: this.txg,
      space: {
        sizeBytes: space.sizeBytes,
        allocatedBytes: space.allocatedBytes,
        freeBytes: space.freeBytes,
        fragmentationPercent: space.fragmentationPercent,
        capacityPercent: space.sizeBytes === 0 ? 0 : Math.floor((100 * space.allocatedBytes) / space.sizeBytes),
      },
      scan: this.scanner.status(),
      config: {
        name: this.name, state: health, errors: { read: 0, write: 0, checksum: 0 },
        children: this.vdevs.map((v, i) => node(v, i)),
      },
      dataErrors: this.io.dataErrors.map((e) => `<block ${e.bp.dvas.map((d) => dvaKey(d)).join(',')} birth ${e.bp.birthTxg}> (${e.code})`),
    };
  }

  private statfs(): { totalBytes: number; freeBytes: number; availableBytes: number; files: number } {
    const s = this.space();
    return { totalBytes: s.sizeBytes, freeBytes: s.freeBytes, availableBytes: s.freeBytes, files: this.rootObjset.objectIdLimit };
  }

  iostat(): IoStats {
    const s = this.io.stats;
    return { readOps: s.readOps, writeOps: s.writeOps, readBytes: s.readBytes, writeBytes: s.writeBytes };
  }

  async history(): Promise<HistoryEntry[]> {
    // Under a hold: MOS blocks are rewritten in place during a sync's later passes.
    return this.hold(async () => {
      const out: HistoryEntry[] = [];
      for await (const line of this.mos.historyLines()) {
        try {
          out.push(JSON.parse(line) as HistoryEntry);
        } catch {
          out.push({ timeMs: 0, command: line });
        }
      }
      return out;
    });
  }

  async logHistory(command: string): Promise<void> {
    await this.hold(() => this.mos.appendHistory(JSON.stringify({ timeMs: Date.now(), command })));
  }

  /**
   * Leak check (zdb -b): with the txg quiet, the bytes the allocator counts as allocated must equal the
   * bytes of every block copy reachable from the uberblock plus the frees still deferred. Returns both
   * sides; they differ only through a bug.
   */
  async spaceCheck(): Promise<{ allocatedBytes: number; reachableBytes: number; deferredBytes: number }> {
    await this.sync();
    return this.exclusive(async () => {
      let reachableBytes = 0;
      const visit = async (bp: BlockPointer): Promise<void> => {
        for (const dva of bp.dvas) reachableBytes += dva.asize;
      };
      await this.mos.os.traverse(visit);
      // Heads and snapshots, each pruned where an older snapshot (or a clone's origin) takes over:
      // every block once. Dead-listed blocks are reached through the snapshots that hold them.
      await this.datasets.traverseAll(visit);
      return { allocatedBytes: this.allocator.space().allocatedBytes, reachableBytes, deferredBytes: this.allocator.deferredBytes() };
    });
  }

  // ---- scrub, device management -------------------------------------------------------------------

  async scrub(options: { wait?: boolean; stop?: boolean } = {}): Promise<void> {
    this.checkUsable();
    if (options.stop) {
      this.scanner.cancel();
      return;
    }
    await this.sync();
    const run = this.scanner.start('scrub', { fromTxg: 0, vdevGuids: null });
    if (options.wait) await run;
    else void run.catch(() => undefined);
  }

  findLeaf(device: string): LeafVdev {
    const leaf = this.leaves().find((l) => l.path === device || l.guid === device);
    if (!leaf) throw new CairnError('ENOENT', `no such device in pool '${this.name}': ${device}`);
    return leaf;
  }

  private topOf(leaf: LeafVdev): Vdev {
    const top = this.vdevs.find((v) => leavesOf(v).includes(leaf));
    assert(top !== undefined, 'leaf without a top-level vdev');
    return top;
  }

  private hasRedundancyWithout(leaf: LeafVdev): boolean {
    const top = this.topOf(leaf);
    if (top === leaf) return false;
    const healthy = top.children.filter((c) => c !== leaf && c.state === 'ONLINE').length;
    if (top instanceof MirrorVdev) return healthy >= 1;
    if (top instanceof RaidzVdev) return top.children.length - healthy - 1 < top.nparity;
    return false;
  }

  async offline(device: string): Promise<void> {
    const leaf = this.findLeaf(device);
    if (leaf.state === 'OFFLINE') return;
    if (!this.hasRedundancyWithout(leaf)) throw new CairnError('EBUSY', `cannot offline ${device}: no valid replicas`);
    await this.sync();
    leaf.setOffline(true);
    this.offlineSince.set(leaf.guid, this.txg);
    this.configDirty = true;
    await this.sync();
  }

  async online(device: string): Promise<void> {
    const leaf = this.findLeaf(device);
    if (leaf.state !== 'OFFLINE') {
      // A device that failed (FAULTED, or errors counted) may have missed writes; with no record of
      // which txgs it missed, resilver its whole top-level vdev (zpool clear + resilver).
      const failed = leaf.state !== 'ONLINE' || leaf.errors.read + leaf.errors.write + leaf.errors.checksum > 0;
      leaf.clearErrors();
      if (failed) await this.resilver([leaf], 0);
      return;
    }
    leaf.setOffline(false);
    this.configDirty = true;
    await this.sync();
    const since = this.offlineSince.get(leaf.guid) ?? 0;
    this.offlineSince.delete(leaf.guid);
    await this.resilver([leaf], since);
  }

  private async openNewDevice(path: string, createSizeBytes: number | undefined, force: boolean): Promise<BlockDevice> {
    const device = await this.openDevice(path, createSizeBytes === undefined ? { exclusive: true } : { exclusive: true, create: createSizeBytes });
    const existing = newestConfig(await readDeviceLabels(device));
    if (existing && existing.state !== 'destroyed' && !force) {
      await device.close();
      throw new CairnError('EFOREIGN', `${path} is part of pool '${existing.name}' (use -f to override)`);
    }
    return device;
  }

  async attach(device: string, newDevice: string, options: { createSizeBytes?: number; force?: boolean } = {}): Promise<void> {
    const leaf = this.findLeaf(device);
    const top = this.topOf(leaf);
    if (top instanceof RaidzVdev) throw new CairnError('ENOTSUP', 'cannot attach to a raidz device; use replace');
    const dev = await this.openNewDevice(newDevice, options.createSizeBytes, options.force ?? false);
    try {
      const [cfg] = buildVdevConfig([{ type: 'file', paths: [newDevice] }], new Map([[newDevice, dev]]), { ashift: leaf.ashift });
      assert(cfg !== undefined, 'leaf config');
      if (cfg.asize < leaf.asize) throw new CairnError('EINVAL', `${newDevice} is smaller than ${device}`);
      await this.sync();
      const newLeaf = new LeafVdev({ guid: cfg.guid, id: 0, ashift: leaf.ashift, asize: leaf.asize, device: dev, path: newDevice });
      await this.exclusive(async () => {
        if (top instanceof MirrorVdev) top.attachChild(newLeaf);
        else {
          const index = this.vdevs.indexOf(top);
          this.vdevs[index] = MirrorVdev.fromLeaf(top, newLeaf);
        }
        this.configDirty = true;
      });
      await initializeLabels(dev, this.labelConfig(newLeaf, 'active'));
      await this.sync();
      await this.resilver([newLeaf], 0);
    } catch (e) {
      if (!this.leaves().some((l) => l.device === dev)) await dev.close();
      throw e;
    }
  }

  async detach(device: string): Promise<void> {
    const leaf = this.findLeaf(device);
    const top = this.topOf(leaf);
    if (!(top instanceof MirrorVdev)) throw new CairnError('ENOTSUP', `cannot detach ${device}: only mirror members can be detached`);
    if (!top.children.some((c) => c !== leaf && c.state === 'ONLINE')) throw new CairnError('EBUSY', `cannot detach ${device}: no valid replicas`);
    await this.sync();
    await this.exclusive(async () => {
      top.detachChild(leaf.guid);
      if (top.children.length === 1) {
        const only = top.children[0] as LeafVdev;
        only.id = top.id;
        this.vdevs[this.vdevs.indexOf(top)] = only;
      }
      this.configDirty = true;
    });
    await this.sync();
    const dev = leaf.device;
    if (dev) {
      await writeLabelConfigs(dev, { ...this.labelConfig(leaf, 'destroyed') }, [0, 1, 2, 3]).catch(() => undefined);
      await leaf.close();
    }
  }

  async replace(oldDevice: string, newDevice?: string, options: { createSizeBytes?: number; force?: boolean } = {}): Promise<void> {
    const leaf = this.findLeaf(oldDevice);
    const top = this.topOf(leaf);
    const target = newDevice ?? leaf.path;
    if (top instanceof RaidzVdev || target === leaf.path) {
      // Swap the device under the leaf and rebuild it from the others.
      if (target !== leaf.path && !this.hasRedundancyWithout(leaf) && leaf.state !== 'ONLINE') {
        throw new CairnError('EBUSY', `cannot replace ${oldDevice}: no valid replicas`);
      }
      const old = leaf.device;
      if (old && target === leaf.path) await old.close();
      const dev = await this.openNewDevice(target, options.createSizeBytes, options.force ?? target === leaf.path);
      await this.sync();
      await this.exclusive(async () => {
        const prev = leaf.replaceDevice(dev);
        if (prev && prev !== old) await prev.close();
        if (old && target !== leaf.path) {
          // The old disk must never be taken for this leaf again at import.
          await writeLabelConfigs(old, this.labelConfig(leaf, 'destroyed'), [0, 1, 2, 3]).catch(() => undefined);
          await old.flush().catch(() => undefined);
          await old.close();
        }
        leaf.setOffline(false);
        leaf.clearErrors();
        this.configDirty = true;
      });
      await initializeLabels(dev, this.labelConfig(leaf, 'active'));
      await this.sync();
      await this.resilver([leaf], 0);
      return;
    }
    await this.attach(oldDevice, target, options);
    // The old device goes only when the new one holds everything (OpenZFS keeps a "replacing" vdev).
    const scan = this.scanner.status();
    if (scan?.state !== 'finished' || scan.errors > 0) {
      throw new CairnError('EIO', `resilver onto ${target} did not complete cleanly; ${oldDevice} stays attached`);
    }
    await this.detach(oldDevice);
  }

  async add(vdevSpec: string[], options: { createSizeBytes?: number; force?: boolean } = {}): Promise<void> {
    const spec = parseVdevSpec(vdevSpec);
    const devices = new Map<string, BlockDevice>();
    try {
      for (const path of spec.flatMap((g) => g.paths)) {
        if (this.leaves().some((l) => l.path === path)) throw new CairnError('EBUSY', `${path} is already in pool '${this.name}'`);
        devices.set(path, await this.openNewDevice(path, options.createSizeBytes, options.force ?? false));
      }
      const configs = buildVdevConfig(spec, devices, { firstId: this.vdevs.length });
      const added: Vdev[] = [];
      for (const cfg of configs) added.push(await openVdev(cfg, async (p) => devices.get(p) ?? null));
      await this.sync();
      await this.exclusive(async () => {
        // Labels of the new devices name the new tree; they become part of the pool with the txg
        // that commits the config and the space maps (load() completes an add a crash interrupted).
        for (const v of added) for (const leaf of leavesOf(v)) {
          if (leaf.device) await initializeLabels(leaf.device, { ...this.labelConfig(leaf, 'active'), vdevTree: [...this.vdevs, ...added].map((x) => x.config()) });
        }
        for (const v of added) {
          this.vdevs.push(v);
          this.allocator.addVdev(v);
          this.spaceMapsMissing.add(v.id);
        }
        this.configDirty = true;
      });
      await this.sync();
    } catch (e) {
      for (const d of devices.values()) if (!this.leaves().some((l) => l.device === d)) await d.close().catch(() => undefined);
      throw e;
    }
  }

  private async resilver(leaves: LeafVdev[], fromTxg: number): Promise<ScanStatus> {
    return this.scanner.start('resilver', { fromTxg, vdevGuids: new Set(leaves.map((l) => this.topOf(l).guid)), leaves: leaves.map((l) => l.guid) });
  }

  // ---- closing ------------------------------------------------------------------------------------

  private async closeAs(state: LabelConfig['state']): Promise<void> {
    if (this.closed) return;
    if (this.syncTimer) clearInterval(this.syncTimer);
    this.scanner.cancel({ resilverToo: true });
    await this.scanner.idle();
    if (!this.suspended) await this.sync();
    // The last txg and the labels are written with no hold running; holds that were waiting find the
    // pool closed and fail instead of being acknowledged and lost.
    await this.exclusive(async () => {
      if (!this.suspended) {
        if (this.datasets.isDirty || this.mos.os.isDirty || this.configDirty) await (await this.writeTxg(this.txg + 1)).done;
        await this.writeLabelsNow(state);
      }
      this.closed = true;
    });
    openPools.delete(this.guid);
    await Promise.allSettled(this.vdevs.map((v) => v.close()));
  }

  async export(): Promise<void> {
    await this.closeAs('exported');
  }

  async destroy(): Promise<void> {
    await this.closeAs('destroyed');
  }

  /** Closes the devices without syncing or touching labels: what a crash leaves (tests, daemon kill). */
  async abandon(): Promise<void> {
    if (this.syncTimer) clearInterval(this.syncTimer);
    this.closed = true;
    openPools.delete(this.guid);
    await Promise.allSettled(this.vdevs.map((v) => v.close()));
  }

  /** Syncs and closes without marking the pool exported: the daemon re-imports it at its next start. */
  async close(): Promise<void> {
    await this.closeAs('active');
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  get syncing(): number {
    return this.syncingTxg;
  }
}

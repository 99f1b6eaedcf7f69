/**
 * The metaslab allocator: where every block of the pool goes (OpenZFS metaslab.c).
 *
 * Each top-level vdev's address space [0, asize) is cut into metaslabs of 2^metaslabShift bytes (the
 * last one may be shorter). A metaslab keeps its free space in a RangeTree, its history in a space map
 * log (space-map.ts) that the pool stores as one object per metaslab, and per-txg trees:
 *
 *   allocatable    free now
 *   allocThisTxg   allocated in the syncing txg (so a free of such a block can return it at once)
 *   unflushedAlloc / unflushedFree   changes not yet handed out by pendingRecords()
 *   freedThisTxg   deferred frees of the syncing txg
 *   deferred       frees of earlier txgs, each released when its txg + DEFER_TXGS has synced
 *
 * Txg discipline (crash safety depends on it):
 *   beginSync(txg) → allocate()/free() → pendingRecords() until it returns nothing → endSync(txg).
 *   A block freed in txg T stays allocated in memory until endSync(T + DEFER_TXGS): the uberblocks of
 *   the last txgs may still point at it, and a rewind to them must find it intact. The space map says
 *   "free" from txg T on, which is what OpenZFS accepts too: on import such space is simply free.
 *   A block allocated and freed in the same syncing txg is referenced by nothing committed, so free()
 *   returns it at once (the allocator knows from allocThisTxg; freeImmediate() says so explicitly).
 *
 * Choosing space:
 *   - vdevs: a rotor; each vdev takes about ALIQUOT_BYTES × (its free bytes / mean free bytes) before the
 *     rotor moves on, so writes are shared in proportion to free space (OpenZFS's metaslab groups and
 *     mg_bias). Copies go to distinct vdevs when there are enough, else to the same vdev in metaslabs at
 *     least asize/8 apart when possible (ditto blocks survive a damaged region).
 *   - metaslabs: each vdev keeps an active metaslab per copy slot, chosen as the one with the most free
 *     bytes and kept while it can satisfy requests (so one txg touches few space maps).
 *   - inside a metaslab: first fit from a cursor kept per power-of-two request size (OpenZFS's dynamic
 *     fit with its per-alignment cursors), wrapping to the metaslab start once. A metaslab that failed a
 *     request of n bytes is skipped for requests >= n until space is returned to it.
 *
 * Memory: trees are proportional to fragmentation; per-txg state is bounded by the txg's changes.
 */
import type { Allocator } from '../io/types.js';
import type { Dva } from '../io/blkptr.js';
import { assert } from '../util/assert.js';
import { CairnError } from '../util/errors.js';
import { RangeTree, RANGE_HISTOGRAM_BUCKETS, highBit } from './range-tree.js';
import {
  condense as condenseLog,
  condensedEntryCount,
  replay,
  SPACE_MAP_ENTRY_SIZE_BYTES,
  SpaceMapEntryType,
  SpaceMapWriter,
  type SpaceMapGeometry,
} from './space-map.js';

/** Txgs a freed block stays unallocatable after the txg that freed it has synced. */
export const DEFER_TXGS = 2;
export const METASLAB_SHIFT_MIN = 24;
/** A vdev gets between 100 and 200 metaslabs (fewer only when 16 MiB each would be fewer). */
export const METASLAB_COUNT_TARGET = 100;
/** Bytes a vdev takes before the rotor moves on, scaled by its share of free space. */
export const ALIQUOT_BYTES = 1024 * 1024;
/** Condense when the log is this many times larger than a fresh one… */
export const CONDENSE_RATIO = 2;
/** …and at least this large (small logs are cheap to replay; rewriting them is churn). */
export const CONDENSE_MIN_BYTES = 64 * 1024;
export const COPIES_MAX = 3;

/** Fragmentation of free space by segment size bucket (2^9 .. 2^24+), as zpool's FRAG column. */
const FRAGMENTATION_BY_BUCKET = [100, 100, 98, 95, 90, 80, 70, 60, 50, 40, 30, 20, 15, 10, 5, 0];
const FRAGMENTATION_FIRST_BUCKET = 9;

/** What the allocator needs of a top-level vdev (a subset of src/vdev/types.ts Vdev). */
export interface AllocatorVdev {
  readonly id: number;
  readonly asize: number;
  readonly ashift: number;
  allocatedSize(psize: number): number;
}

export interface AllocatorSpace {
  sizeBytes: number;
  /** Includes frees still deferred and metaslabs not loaded. */
  allocatedBytes: number;
  freeBytes: number;
  /** 0..100, weighted by free bytes, as zpool's FRAG. */
  fragmentationPercent: number;
}

/** Per top-level vdev, what the pool persists in its config to reopen the allocator. */
export interface MetaslabVdevConfig {
  vdevId: number;
  metaslabShift: number;
  metaslabCount: number;
}

export interface MetaslabAllocatorOptions {
  /** Persisted shifts of vdevs being reopened: their metaslabs start unloaded until loadMetaslab(). */
  persisted?: readonly MetaslabVdevConfig[];
  condenseMinBytes?: number;
  condenseRatio?: number;
}

/** One space map update for the pool to write in the syncing txg. */
export interface SpaceMapUpdate {
  vdevId: number;
  metaslabIndex: number;
  /** append: add bytes at the end of the object; replace: the object's contents become bytes (condensed). */
  mode: 'append' | 'replace';
  bytes: Buffer;
}

/** Chooses the metaslab shift for a new vdev: 100..200 metaslabs, at least 16 MiB each. */
export function chooseMetaslabShift(asizeBytes: number): number {
  const ideal = Math.floor(Math.log2(Math.max(1, asizeBytes / METASLAB_COUNT_TARGET)));
  return Math.max(METASLAB_SHIFT_MIN, ideal);
}

export class Metaslab {
  readonly geometry: SpaceMapGeometry;
  loaded = false;
  readonly allocatable = new RangeTree();
  readonly allocThisTxg = new RangeTree();
  readonly unflushedAlloc = new RangeTree();
  readonly unflushedFree = new RangeTree();
  readonly freedThisTxg = new RangeTree();
  /** Oldest first; at most DEFER_TXGS + 1 entries when txgs are consecutive. */
  readonly deferred: { txg: number; tree: RangeTree }[] = [];
  /** Bytes of the log as the pool has it (0: no header written yet). */
  logSizeBytes = 0;
  /** Requests of at least this many bytes failed here; reset when space comes back. */
  noFitBytes = Infinity;
  /** First-fit cursors per highBit(request size); 0 means the metaslab start. */
  readonly cursors = new Float64Array(RANGE_HISTOGRAM_BUCKETS);

  constructor(
    readonly vdevId: number,
    readonly index: number,
    startBytes: number,
    sizeBytes: number,
    ashift: number,
  ) {
    this.geometry = { startBytes, sizeBytes, ashift };
  }

  get startBytes(): number {
    return this.geometry.startBytes;
  }

  get endBytes(): number {
    return this.geometry.startBytes + this.geometry.sizeBytes;
  }

  get label(): string {
    return `vdev ${this.vdevId} metaslab ${this.index}`;
  }

  /** Free space as the log describes it once this txg's records are written: allocatable + all deferred. */
  logFreeTree(): RangeTree {
    const tree = this.allocatable.clone();
    const addAll = (t: RangeTree): void => t.forEachSegment((s, e) => tree.add(s, e));
    addAll(this.freedThisTxg);
    for (const d of this.deferred) addAll(d.tree);
    return tree;
  }

  deferredBytes(): number {
    let bytes = this.freedThisTxg.totalBytes;
    for (const d of this.deferred) bytes += d.tree.totalBytes;
    return bytes;
  }

  hasUnflushed(): boolean {
    return !this.unflushedAlloc.isEmpty() || !this.unflushedFree.isEmpty();
  }

  /** First fit from the size class cursor, wrapping once; returns the offset or -1. */
  tryAllocate(asize: number): number {
    if (asize >= this.noFitBytes || asize > this.allocatable.totalBytes) return -1;
    const bucket = highBit(asize);
    const cursor = (this.cursors[bucket] as number) || this.startBytes;
    let offset = this.allocatable.findFit(cursor, asize);
    if (offset < 0 && cursor > this.startBytes) offset = this.allocatable.findFit(this.startBytes, asize);
    if (offset < 0) {
      this.noFitBytes = asize;
      return -1;
    }
    this.allocatable.remove(offset, offset + asize);
    this.cursors[bucket] = offset + asize;
    this.allocThisTxg.add(offset, offset + asize);
    this.unflushedAlloc.add(offset, offset + asize);
    return offset;
  }

  returnSpace(start: number, end: number): void {
    this.allocatable.add(start, end);
    this.noFitBytes = Infinity;
  }
}

interface VdevState {
  vdev: AllocatorVdev;
  shift: number;
  metaslabs: Metaslab[];
  allocatable: boolean;
  /** Active metaslab index per copy slot, -1 when none. */
  active: number[];
}

export class MetaslabAllocator implements Allocator {
  private readonly vdevs: VdevState[] = [];
  private readonly byId = new Map<number, VdevState>();
  private syncingTxg = 0;
  private lastSyncedTxg = 0;
  /** While a scrub or resilver walks an older tree, no freed block may be reused (see pool/scan.ts). */
  private freesHeld = 0;
  private rotor = 0;
  private rotorBytes = 0;
  /** What the rotor's current vdev may take before moving on; 0 = not yet computed. */
  private rotorAliquotBytes = 0;
  /** Metaslabs with records not yet returned by pendingRecords(). */
  private readonly dirty = new Set<Metaslab>();
  /** Metaslabs whose per-txg trees need attention in endSync(). */
  private readonly touched = new Set<Metaslab>();
  private readonly deferring = new Set<Metaslab>();
  private readonly condenseMinBytes: number;
  private readonly condenseRatio: number;
  private readonly persisted: Map<number, MetaslabVdevConfig>;

  constructor(vdevs: readonly AllocatorVdev[], options: MetaslabAllocatorOptions = {}) {
    this.condenseMinBytes = options.condenseMinBytes ?? CONDENSE_MIN_BYTES;
    this.condenseRatio = options.condenseRatio ?? CONDENSE_RATIO;
    this.persisted = new Map((options.persisted ?? []).map((c) => [c.vdevId, c]));
    for (const vdev of vdevs) this.addVdev(vdev);
  }

  /**
   * Adds a top-level vdev. With a persisted config (reopen) its metaslabs start unloaded: neither
   * allocated from nor counted free until loadMetaslab(). A new vdev's metaslabs are all free.
   */
  addVdev(vdev: AllocatorVdev, persisted: MetaslabVdevConfig | undefined = this.persisted.get(vdev.id)): void {
    assert(!this.byId.has(vdev.id), `vdev ${vdev.id} added twice`);
    const sectorBytes = 2 ** vdev.ashift;
    assert(vdev.asize > 0 && vdev.asize % sectorBytes === 0, `vdev ${vdev.id} asize ${vdev.asize} not a sector multiple`);
    const shift = persisted?.metaslabShift ?? chooseMetaslabShift(vdev.asize);
    const msBytes = 2 ** shift;
    const count = Math.ceil(vdev.asize / msBytes);
    if (persisted && persisted.metaslabCount !== count) {
      throw new CairnError('EINVAL', `vdev ${vdev.id}: config says ${persisted.metaslabCount} metaslabs, its size gives ${count}`);
    }
    const metaslabs: Metaslab[] = [];
    for (let i = 0; i < count; i++) {
      const start = i * msBytes;
      const ms = new Metaslab(vdev.id, i, start, Math.min(msBytes, vdev.asize - start), vdev.ashift);
      if (!persisted) {
        ms.allocatable.add(ms.startBytes, ms.endBytes);
        ms.loaded = true;
      }
      metaslabs.push(ms);
    }
    const state: VdevState = { vdev, shift, metaslabs, allocatable: true, active: [-1, -1, -1] };
    this.vdevs.push(state);
    this.vdevs.sort((a, b) => a.vdev.id - b.vdev.id);
    this.byId.set(vdev.id, state);
  }

  /** Faulted or removing vdevs take no new allocations; frees to them still work. */
  setAllocatable(vdevId: number, allocatable: boolean): void {
    this.vdevState(vdevId).allocatable = allocatable;
  }

  metaslabShift(vdevId: number): number {
    return this.vdevState(vdevId).shift;
  }

  metaslabCount(vdevId: number): number {
    return this.vdevState(vdevId).metaslabs.length;
  }

  /** What the pool persists to reopen: one entry per top-level vdev. */
  config(): MetaslabVdevConfig[] {
    return this.vdevs.map((v) => ({ vdevId: v.vdev.id, metaslabShift: v.shift, metaslabCount: v.metaslabs.length }));
  }

  /**
   * Replays a metaslab's persisted log (empty: never written, all free). Throws CairnError EIO on a
   * malformed log and leaves the metaslab as it was.
   */
  loadMetaslab(vdevId: number, index: number, logBytes: Buffer): void {
    const ms = this.metaslab(vdevId, index);
    assert(
      !ms.hasUnflushed() && ms.allocThisTxg.isEmpty() && ms.deferredBytes() === 0,
      `${ms.label}: load with pending changes`,
    );
    const tree = replay(logBytes, ms.geometry, ms.label);
    ms.allocatable.clear();
    tree.forEachSegment((s, e) => ms.allocatable.add(s, e));
    ms.logSizeBytes = logBytes.length;
    ms.noFitBytes = Infinity;
    ms.cursors.fill(0);
    ms.loaded = true;
  }

  unloadedMetaslabCount(): number {
    let n = 0;
    for (const v of this.vdevs) for (const ms of v.metaslabs) if (!ms.loaded) n++;
    return n;
  }

  beginSync(txg: number): void {
    assert(this.syncingTxg === 0, `beginSync(${txg}) while txg ${this.syncingTxg} is syncing`);
    assert(Number.isSafeInteger(txg) && txg > this.lastSyncedTxg, `beginSync(${txg}) after txg ${this.lastSyncedTxg}`);
    this.syncingTxg = txg;
  }

  /**
   * Finishes the syncing txg: this txg's deferred frees start their wait, and frees whose txg +
   * DEFER_TXGS has now synced become allocatable. pendingRecords() must have been drained.
   */
  endSync(txg: number): void {
    assert(this.syncingTxg === txg, `endSync(${txg}) but txg ${this.syncingTxg} is syncing`);
    assert(this.dirty.size === 0, `endSync(${txg}) with space map records not taken: call pendingRecords() until empty`);
    for (const ms of this.touched) {
      ms.allocThisTxg.clear();
      if (!ms.freedThisTxg.isEmpty()) {
        const tree = ms.freedThisTxg.clone();
        ms.freedThisTxg.clear();
        ms.deferred.push({ txg, tree });
        this.deferring.add(ms);
      }
    }
    this.touched.clear();
    for (const ms of this.freesHeld > 0 ? [] : this.deferring) {
      while (ms.deferred.length > 0 && (ms.deferred[0] as { txg: number }).txg + DEFER_TXGS <= txg) {
        const d = ms.deferred.shift() as { txg: number; tree: RangeTree };
        d.tree.forEachSegment((s, e) => ms.returnSpace(s, e));
      }
      if (ms.deferred.length === 0) this.deferring.delete(ms);
    }
    this.lastSyncedTxg = txg;
    this.syncingTxg = 0;
  }

  /**
   * Holds every deferred free out of reuse (true) until released (false). Frees are still logged in
   * their txg, so a crash while held leaks nothing; they only wait longer to be reused.
   */
  holdFrees(held: boolean): void {
    this.freesHeld += held ? 1 : -1;
    assert(this.freesHeld >= 0, 'holdFrees released more often than taken');
  }

  /** True when deferred frees wait only for txgs to pass (not for a held scan). */
  get freesWaiting(): boolean {
    return this.freesHeld === 0 && this.deferring.size > 0;
  }

  get txg(): number {
    return this.syncingTxg;
  }

  allocate(psize: number, copies: number): Dva[] {
    assert(this.syncingTxg !== 0, 'allocate outside a syncing txg');
    assert(Number.isSafeInteger(psize) && psize > 0, `allocate of ${psize} bytes`);
    assert(Number.isInteger(copies) && copies >= 1 && copies <= COPIES_MAX, `allocate of ${copies} copies`);
    const dvas: Dva[] = [];
    for (let copy = 0; copy < copies; copy++) {
      const dva = this.allocateCopy(psize, copy, dvas);
      if (!dva) {
        for (const placed of dvas) this.freeImmediate(placed);
        throw new CairnError('ENOSPC', `no space for ${copies} cop${copies === 1 ? 'y' : 'ies'} of ${psize} bytes`, {
          psize,
          copies,
        });
      }
      dvas.push(dva);
    }
    return dvas;
  }

  /**
   * Frees a block's copy in the syncing txg. A block allocated in this same txg (nothing committed can
   * point at it) is returned at once; any other block is written to the space map as freed now and
   * becomes allocatable after endSync(txg + DEFER_TXGS). `bornInSyncingTxg`, when given, is checked.
   */
  free(dva: Dva, bornInSyncingTxg?: boolean): void {
    const ms = this.metaslabOf(dva);
    const end = dva.offset + dva.asize;
    const born = ms.allocThisTxg.overlaps(dva.offset, end);
    if (bornInSyncingTxg !== undefined) {
      assert(born === bornInSyncingTxg, `free of ${dvaText(dva)}: caller says born in syncing txg ${bornInSyncingTxg}, allocator knows ${born}`);
    }
    if (born) {
      this.freeImmediate(dva);
      return;
    }
    assert(
      !ms.allocatable.overlaps(dva.offset, end) && !ms.freedThisTxg.overlaps(dva.offset, end) && !isDeferred(ms, dva.offset, end),
      `double free of ${dvaText(dva)}`,
    );
    ms.freedThisTxg.add(dva.offset, end);
    ms.unflushedFree.add(dva.offset, end);
    this.dirty.add(ms);
    this.touched.add(ms);
  }

  /** Frees a block allocated in the syncing txg: the space is allocatable again at once. */
  freeImmediate(dva: Dva): void {
    const ms = this.metaslabOf(dva);
    const start = dva.offset;
    const end = start + dva.asize;
    assert(ms.allocThisTxg.contains(start, end), `freeImmediate of ${dvaText(dva)}, not allocated in txg ${this.syncingTxg}`);
    ms.allocThisTxg.remove(start, end);
    if (ms.unflushedAlloc.contains(start, end)) {
      // Never reached the log: as if it had not happened.
      ms.unflushedAlloc.remove(start, end);
    } else {
      assert(!ms.unflushedAlloc.overlaps(start, end), `${dvaText(dva)} partly flushed`);
      ms.unflushedFree.add(start, end);
    }
    ms.returnSpace(start, end);
    this.dirty.add(ms);
    this.touched.add(ms);
    if (!ms.hasUnflushed()) this.dirty.delete(ms);
  }

  /**
   * Space map changes since the last call, one update per changed metaslab: frees first (a range freed
   * at once and allocated again in this txg must replay as free-then-alloc), then allocs, then a txg
   * marker. A log grown CONDENSE_RATIO times past its fresh size is condensed instead (mode replace).
   * Writing these allocates, so the pool calls again until this returns nothing.
   */
  pendingRecords(): SpaceMapUpdate[] {
    assert(this.syncingTxg !== 0, 'pendingRecords outside a syncing txg');
    const updates: SpaceMapUpdate[] = [];
    for (const ms of this.dirty) {
      if (!ms.hasUnflushed()) continue;
      const needsHeader = ms.logSizeBytes === 0;
      const entries = (needsHeader ? 1 : 0) + ms.unflushedFree.segmentCount + ms.unflushedAlloc.segmentCount + 1;
      const sizeAfter = ms.logSizeBytes + entries * SPACE_MAP_ENTRY_SIZE_BYTES;
      if (sizeAfter >= this.condenseMinBytes && sizeAfter > this.condenseRatio * this.condensedSizeEstimate(ms)) {
        updates.push({ vdevId: ms.vdevId, metaslabIndex: ms.index, mode: 'replace', bytes: this.condenseMetaslab(ms) });
        continue;
      }
      const writer = new SpaceMapWriter(entries, ms.geometry);
      if (needsHeader) writer.header();
      ms.unflushedFree.forEachSegment((s, e) => writer.range(SpaceMapEntryType.free, s, e));
      ms.unflushedAlloc.forEachSegment((s, e) => writer.range(SpaceMapEntryType.alloc, s, e));
      writer.txg(this.syncingTxg);
      ms.unflushedFree.clear();
      ms.unflushedAlloc.clear();
      ms.logSizeBytes = sizeAfter;
      updates.push({ vdevId: ms.vdevId, metaslabIndex: ms.index, mode: 'append', bytes: writer.finish() });
    }
    this.dirty.clear();
    return updates;
  }

  /**
   * A fresh log for one metaslab describing its state at the end of the syncing txg (deferred frees
   * count as free, as in the log); the pool writes it over the metaslab's object in this txg.
   */
  condense(vdevId: number, index: number): Buffer {
    assert(this.syncingTxg !== 0, 'condense outside a syncing txg');
    const ms = this.metaslab(vdevId, index);
    assert(ms.loaded, `${ms.label}: condense of an unloaded metaslab`);
    const bytes = this.condenseMetaslab(ms);
    this.dirty.delete(ms);
    return bytes;
  }

  space(): AllocatorSpace {
    return this.spaceOf(this.vdevs);
  }

  vdevSpace(vdevId: number): AllocatorSpace {
    return this.spaceOf([this.vdevState(vdevId)]);
  }

  /** The metaslab's current trees (tests and diagnostics; do not modify). */
  /** Bytes freed but not yet reusable (deferred or held), over all metaslabs. */
  deferredBytes(): number {
    let bytes = 0;
    for (const v of this.vdevs) for (const ms of v.metaslabs) bytes += ms.deferredBytes();
    return bytes;
  }

  metaslab(vdevId: number, index: number): Metaslab {
    const ms = this.vdevState(vdevId).metaslabs[index];
    assert(ms !== undefined, `vdev ${vdevId} has no metaslab ${index}`);
    return ms;
  }

  private condenseMetaslab(ms: Metaslab): Buffer {
    const bytes = condenseLog(ms.logFreeTree(), ms.geometry, this.syncingTxg);
    ms.unflushedAlloc.clear();
    ms.unflushedFree.clear();
    ms.logSizeBytes = bytes.length;
    return bytes;
  }

  /** Upper bound of a fresh log's size without building the merged tree. */
  private condensedSizeEstimate(ms: Metaslab): number {
    let extra = ms.freedThisTxg.segmentCount;
    for (const d of ms.deferred) extra += d.tree.segmentCount;
    return (condensedEntryCount(ms.allocatable, ms.geometry) + extra) * SPACE_MAP_ENTRY_SIZE_BYTES;
  }

  private spaceOf(vdevs: readonly VdevState[]): AllocatorSpace {
    let sizeBytes = 0;
    let freeBytes = 0;
    let weighted = 0;
    for (const v of vdevs) {
      sizeBytes += v.vdev.asize;
      for (const ms of v.metaslabs) {
        if (!ms.loaded) continue;
        freeBytes += ms.allocatable.totalBytes;
        const hist = ms.allocatable.histogramBytes;
        for (let b = 0; b < RANGE_HISTOGRAM_BUCKETS; b++) {
          const bytes = hist[b] as number;
          if (bytes === 0) continue;
          const i = Math.min(Math.max(b - FRAGMENTATION_FIRST_BUCKET, 0), FRAGMENTATION_BY_BUCKET.length - 1);
          weighted += bytes * (FRAGMENTATION_BY_BUCKET[i] as number);
        }
      }
    }
    return {
      sizeBytes,
      allocatedBytes: sizeBytes - freeBytes,
      freeBytes,
      fragmentationPercent: freeBytes === 0 ? 0 : Math.round(weighted / freeBytes),
    };
  }

  private allocateCopy(psize: number, copy: number, placed: readonly Dva[]): Dva | undefined {
    const n = this.vdevs.length;
    if (n === 0) return undefined;
    const first = copy === 0 ? this.rotor % n : (this.indexOfVdev((placed[copy - 1] as Dva).vdev) + 1) % n;
    // Pass 1: a vdev holding no copy of this block yet.
    for (let k = 0; k < n; k++) {
      const i = (first + k) % n;
      const v = this.vdevs[i] as VdevState;
      if (!v.allocatable || holdsCopy(placed, v.vdev.id)) continue;
      const asize = v.vdev.allocatedSize(psize);
      const offset = this.allocateInVdev(v, asize, copy, placed);
      if (offset < 0) continue;
      if (copy === 0) this.advanceRotor(i, asize);
      return { vdev: v.vdev.id, offset, asize };
    }
    // Pass 2: more copies than vdevs with space — a vdev already used, far from its other copies.
    for (let k = 0; k < n; k++) {
      const v = this.vdevs[(first + k) % n] as VdevState;
      if (!v.allocatable || !holdsCopy(placed, v.vdev.id)) continue;
      const asize = v.vdev.allocatedSize(psize);
      const offset = this.allocateInVdev(v, asize, copy, placed);
      if (offset >= 0) return { vdev: v.vdev.id, offset, asize };
    }
    return undefined;
  }

  /** Tries the active metaslab of the slot, then others by most free, far from this block's copies if possible. */
  private allocateInVdev(v: VdevState, asize: number, slot: number, placed: readonly Dva[]): number {
    assert(asize > 0 && asize % 2 ** v.vdev.ashift === 0, `vdev ${v.vdev.id}: asize ${asize} not a sector multiple`);
    const id = v.vdev.id;
    const distanceBytes = holdsCopy(placed, id) ? Math.floor(v.vdev.asize / 8) : 0;
    const active = v.metaslabs[v.active[slot] as number];
    if (active && active.loaded && farEnough(active, placed, id, distanceBytes)) {
      const offset = active.tryAllocate(asize);
      if (offset >= 0) return this.allocated(active, offset);
    }
    // The slow path (the active metaslab is full or too close): rank the others by free bytes.
    for (let pass = distanceBytes > 0 ? 0 : 1; pass < 2; pass++) {
      const minDistance = pass === 0 ? distanceBytes : 0;
      const candidates = v.metaslabs.filter(
        (ms) => ms.loaded && ms.allocatable.totalBytes >= asize && asize < ms.noFitBytes && farEnough(ms, placed, id, minDistance),
      );
      candidates.sort((a, b) => b.allocatable.totalBytes - a.allocatable.totalBytes || a.index - b.index);
      for (const ms of candidates) {
        const offset = ms.tryAllocate(asize);
        if (offset >= 0) {
          v.active[slot] = ms.index;
          return this.allocated(ms, offset);
        }
      }
    }
    return -1;
  }

  private allocated(ms: Metaslab, offset: number): number {
    this.dirty.add(ms);
    this.touched.add(ms);
    return offset;
  }

  private advanceRotor(index: number, asize: number): void {
    if (index !== this.rotor % this.vdevs.length || this.rotorAliquotBytes === 0) {
      this.rotor = index;
      this.rotorBytes = 0;
      this.rotorAliquotBytes = this.aliquotBytes(this.vdevs[index] as VdevState);
    }
    this.rotorBytes += asize;
    if (this.rotorBytes >= this.rotorAliquotBytes) {
      this.rotor = (index + 1) % this.vdevs.length;
      this.rotorBytes = 0;
      this.rotorAliquotBytes = 0;
    }
  }

  /**
   * ALIQUOT_BYTES scaled by the vdev's free bytes over the mean of allocatable vdevs; computed once per
   * turn of the rotor, not per allocation.
   */
  private aliquotBytes(v: VdevState): number {
    let total = 0;
    let count = 0;
    for (const u of this.vdevs) {
      if (!u.allocatable) continue;
      total += freeBytesOf(u);
      count++;
    }
    const mean = count === 0 ? 0 : total / count;
    if (mean === 0) return ALIQUOT_BYTES;
    const ratio = freeBytesOf(v) / mean;
    return ALIQUOT_BYTES * Math.min(Math.max(ratio, 1 / 16), 16);
  }

  private indexOfVdev(vdevId: number): number {
    const i = this.vdevs.findIndex((v) => v.vdev.id === vdevId);
    assert(i >= 0, `unknown vdev ${vdevId}`);
    return i;
  }

  private vdevState(vdevId: number): VdevState {
    const v = this.byId.get(vdevId);
    assert(v !== undefined, `unknown vdev ${vdevId}`);
    return v;
  }

  private metaslabOf(dva: Dva): Metaslab {
    assert(this.syncingTxg !== 0, `free of ${dvaText(dva)} outside a syncing txg`);
    const v = this.vdevState(dva.vdev);
    const ms = v.metaslabs[Math.floor(dva.offset / 2 ** v.shift)];
    assert(ms !== undefined && dva.asize > 0 && dva.offset + dva.asize <= ms.endBytes, `${dvaText(dva)} does not lie in one metaslab`);
    assert(ms.loaded, `free of ${dvaText(dva)} in unloaded ${ms.label}`);
    return ms;
  }
}

function freeBytesOf(v: VdevState): number {
  let bytes = 0;
  for (const ms of v.metaslabs) bytes += ms.allocatable.totalBytes;
  return bytes;
}

function isDeferred(ms: Metaslab, start: number, end: number): boolean {
  for (const d of ms.deferred) if (d.tree.overlaps(start, end)) return true;
  return false;
}

function holdsCopy(placed: readonly Dva[], vdevId: number): boolean {
  for (const d of placed) if (d.vdev === vdevId) return true;
  return false;
}

/** Every byte of the metaslab is at least minDistance from the offset of each copy on the same vdev. */
function farEnough(ms: Metaslab, placed: readonly Dva[], vdevId: number, minDistance: number): boolean {
  if (minDistance === 0) return true;
  for (const d of placed) {
    if (d.vdev !== vdevId) continue;
    const o = d.offset;
    if (!(ms.startBytes >= o + minDistance || o >= ms.endBytes - 1 + minDistance)) return false;
  }
  return true;
}

function dvaText(dva: Dva): string {
  return `DVA ${dva.vdev}:${dva.offset}+${dva.asize}`;
}

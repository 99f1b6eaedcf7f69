/**
 * ObjectSet: a numbered collection of objects, each a sparse byte array in a tree of blocks (OpenZFS
 * objset + dnode + dbuf, much simplified).
 *
 * Shape on disk: an ObjsetPhys block holds the meta-dnode; the meta-dnode's object (id 0) is the array
 * of DnodePhys records, 512 bytes each; every other object's dnode points at its tree: level-0 data
 * blocks of dataBlockSizeBytes, indirect blocks of 1024 block pointers above them, one root pointer.
 *
 * Changes: writes land in per-object dirty maps (level-0 blocks only; a null entry is a hole) and touch
 * nothing on disk. sync(txg), called by the pool with every hold drained, writes dirty level-0 blocks,
 * then rebuilds the indirect blocks above them bottom-up (copy-on-write: every changed block gets a new
 * location and the old one is handed to freeBlock), then the dnode records, then the meta-dnode's tree,
 * and finally the ObjsetPhys, returning its new block pointer. Nothing a reader can reach changes until
 * an object's new root pointer is set, in one synchronous step, together with dropping its dirty map, so
 * reads running during a sync always see one consistent version. A block born in the txg being synced
 * is rewritten in place when it changes again in a later pass (the pool's convergence passes need this).
 */
import { BLKPTR_SIZE_BYTES, decodeBlockPointer, encodeBlockPointer, holeBlockPointer, isHole, type BlockPointer } from '../io/blkptr.js';
import { CompressionType, type BlockWriteProps, type ChecksumType } from '../io/types.js';
import { assert } from '../util/assert.js';
import { CairnError } from '../util/errors.js';
import {
  DNODE_SHIFT, DNODE_SIZE_BYTES, INDIRECT_BLOCK_SIZE_BYTES, POINTERS_PER_INDIRECT,
  decodeDnode, emptyDnode, encodeDnode, type Dnode,
} from './dnode.js';
import {
  BONUS_SIZE_MAX_BYTES, ObjectType, type AllocateObjectOptions, type ObjectInfo, type ObjectStore,
} from './types.js';

export const OBJSET_PHYS_SIZE_BYTES = 1024;
const OBJSET_MAGIC = 0x3153_4f4e_5249_4143n; // "CAIRNOS1"
const OBJSET_VERSION = 1;
const META_DNODE_BLOCK_SIZE_BYTES = 16 * 1024;
const DEFAULT_RECORD_SIZE_BYTES = 128 * 1024;
const RECORD_SIZE_MAX_BYTES = 1024 * 1024;
/**
 * Clean dnodes kept decoded in memory (about 1 KiB each); dirty ones are pinned until synced. A working
 * set larger than this (`ls -l` of a big directory, a tar of a tree) re-reads and decodes every dnode
 * through the ARC, so it is sized for directories of tens of thousands of files.
 */
const CLEAN_DNODE_CACHE_MAX = 32768;
/** Block reads in flight for one read request. */
const READ_CONCURRENCY_MAX = 16;
/** Level-0 block writes in flight while an object syncs. */
const WRITE_CONCURRENCY_MAX = 32;
/** Objects whose blocks a sync writes at once (each up to WRITE_CONCURRENCY_MAX blocks in flight). */
const OBJECTS_SYNCING_MAX = 16;
/** Blocks read ahead of a sequential reader (OpenZFS zfetch, simplified to one stream per object). */
const PREFETCH_BLOCKS = 32;

export const ObjsetType = { meta: 1, filesystem: 2, volume: 3 } as const;
export type ObjsetType = (typeof ObjsetType)[keyof typeof ObjsetType];

/** Per-objset write policy (dataset properties later). */
export interface WritePolicy {
  checksum: ChecksumType;
  compression: CompressionType;
  /** Copies of user data blocks. */
  copies: number;
  /** Copies of metadata blocks (indirects, dnodes, directories, the objset block). */
  metadataCopies: number;
}

/** What an object set needs from the pool below it. */
export interface ObjsetEnvironment {
  /** Verified, decompressed contents; the caller must not modify the returned buffer. */
  readBlock(bp: BlockPointer): Promise<Buffer>;
  /**
   * readBlock into a buffer of exactly bp.lsize bytes. A block the cache does not hold is read straight
   * into it and not cached: for callers that keep what they read (FUSE: the kernel's page cache).
   * Optional: without it, readBlock and a copy.
   */
  readBlockInto?(bp: BlockPointer, target: Buffer): Promise<void>;
  /**
   * A data block's contents for the caller to modify and keep as its dirty copy: the cached buffer
   * itself, which leaves the cache, when nothing but this head can reference the block (born after its
   * newest snapshot); null when the caller must copy (readBlock). Optional: without it, always copy.
   */
  takeBlock?(bp: BlockPointer): Promise<Buffer | null>;
  /** Writes a block in the syncing txg; `old` is the version it replaces (rewritten in place if it was born in this txg). */
  writeBlock(data: Buffer, props: BlockWriteProps, old: BlockPointer | null): Promise<BlockPointer>;
  /** Called at sync for every block no longer referenced by the new version. */
  freeBlock(bp: BlockPointer): void;
  /** Runs fn inside a txg hold (see ObjectStore.hold). */
  hold<T>(fn: () => Promise<T>): Promise<T>;
  /** Dirty-data accounting for the write throttle. */
  dirtyBytesChanged(deltaBytes: number): void;
  /** An object joined the open txg's dirty set (it may ask for an early sync). */
  objectDirtied?(): void;
  /**
   * Refuses (CairnError ENOSPC) a data write of this many bytes that the pool could not commit: checked
   * before anything changes, so a full pool fails the write instead of failing the txg.
   */
  reserveSpace(bytes: number, copies: number): void;
}

interface ObjectState {
  id: number;
  dn: Dnode;
  /** level-0 block id → new contents (null: hole). */
  dirtyBlocks: Map<number, Buffer | null>;
  dnodeDirty: boolean;
  /** Freed: the whole tree goes at sync, the slot becomes empty. */
  freed: boolean;
  /** Block after the last one read: a read starting there is sequential and triggers prefetch. */
  readCursor?: number;
  /** Blocks below this were already prefetched. */
  prefetchedTo?: number;
  /** The clean cache's access count when this was last moved to its recent end. */
  touchedAt?: number;
  /** Dirty blocks written in part this txg (their writes read the old contents): kept cached at sync. */
  partlyWritten?: Set<number>;
}

/** What changedObjects read: blocks of this set's meta-dnode tree, and blocks of the older set's. */
export interface ChangedObjectsCounters {
  blocksVisited: number;
  olderBlocksRead: number;
}

const DATA_TYPES: ReadonlySet<number> = new Set([ObjectType.plainFile, ObjectType.volume]);

export class ObjectSet implements ObjectStore {
  readonly type: ObjsetType;
  policy: WritePolicy;
  private readonly env: ObjsetEnvironment;
  private rootBp: BlockPointer;
  private nextObjectId: number;
  private readonly meta: ObjectState;
  /** Dirty or freed objects: pinned until sync. */
  private readonly dirty = new Map<number, ObjectState>();
  /** Clean decoded dnodes in LRU order (Map insertion order). */
  private readonly clean = new Map<number, ObjectState>();
  private syncing = false;
  /** Hits on the clean cache, counted to move an entry to the recent end at most once per half cache of them. */
  private cleanAccesses = 0;
  /** Counts finished syncs (see objectState). */
  private syncGeneration = 0;
  /** ObjectStore.setBeforeSync. */
  private beforeSync: ((store: ObjectStore) => Promise<void>) | null = null;

  private constructor(env: ObjsetEnvironment, type: ObjsetType, policy: WritePolicy, rootBp: BlockPointer, metaDnode: Dnode, nextObjectId: number) {
    this.env = env;
    this.type = type;
    this.policy = policy;
    this.rootBp = rootBp;
    this.nextObjectId = nextObjectId;
    this.meta = { id: 0, dn: metaDnode, dirtyBlocks: new Map(), dnodeDirty: false, freed: false };
  }

  setBeforeSync(hook: ((store: ObjectStore) => Promise<void>) | null): void {
    this.beforeSync = hook;
  }

  /** A new, empty object set; it reaches disk at the next sync. */
  static create(env: ObjsetEnvironment, type: ObjsetType, policy: WritePolicy): ObjectSet {
    const meta = emptyDnode();
    meta.type = ObjectType.dnode;
    meta.dataBlockSizeBytes = META_DNODE_BLOCK_SIZE_BYTES;
    meta.recordSizeBytes = META_DNODE_BLOCK_SIZE_BYTES;
    const os = new ObjectSet(env, type, policy, holeBlockPointer(), meta, 1);
    os.meta.dnodeDirty = true;
    return os;
  }

  static async open(env: ObjsetEnvironment, rootBp: BlockPointer, policy: WritePolicy): Promise<ObjectSet> {
    const buf = await env.readBlock(rootBp);
    if (buf.length < OBJSET_PHYS_SIZE_BYTES || buf.readBigUInt64LE(0) !== OBJSET_MAGIC) {
      throw new CairnError('EIO', 'object set block has a bad magic number');
    }
    const version = buf.readUInt32LE(8);
    if (version > OBJSET_VERSION) throw new CairnError('EVERSION', `object set version ${version} is newer than this Cairn`);
    const type = buf.readUInt32LE(12) as ObjsetType;
    const nextObjectId = Number(buf.readBigUInt64LE(16));
    return new ObjectSet(env, type, policy, rootBp, decodeDnode(buf, 64), nextObjectId);
  }

  /** Block pointer of the last synced version. */
  get root(): BlockPointer {
    return this.rootBp;
  }

  get isDirty(): boolean {
    return this.dirty.size > 0 || this.meta.dnodeDirty || this.meta.dirtyBlocks.size > 0;
  }

  /** Upper bound (exclusive) of object ids ever allocated. */
  get objectIdLimit(): number {
    return this.nextObjectId;
  }

  hold<T>(fn: () => Promise<T>): Promise<T> {
    return this.env.hold(fn);
  }

  // ---- objects -------------------------------------------------------------------------------------

  async allocateObject(type: ObjectType, options: AllocateObjectOptions = {}): Promise<number> {
    const recordSize = options.blockSizeBytes ?? DEFAULT_RECORD_SIZE_BYTES;
    if (!isPowerOfTwo(recordSize) || recordSize < 512 || recordSize > RECORD_SIZE_MAX_BYTES) {
      throw new CairnError('EINVAL', `block size ${recordSize} is not a power of two from 512 to 1M`);
    }
    assert(type !== ObjectType.none, 'allocating an object of type none');
    this.assertMutable();
    const id = this.nextObjectId++;
    this.meta.dnodeDirty = true; // nextObjectId lives in the objset block
    const dn = emptyDnode();
    dn.type = type;
    dn.bonusType = options.bonusType ?? 0;
    dn.recordSizeBytes = recordSize;
    dn.dataBlockSizeBytes = Math.min(recordSize, 512);
    const state: ObjectState = { id, dn, dirtyBlocks: new Map(), dnodeDirty: true, freed: false };
    this.dirty.set(id, state);
    this.env.objectDirtied?.();
    return id;
  }

  async freeObject(id: number): Promise<void> {
    this.assertMutable();
    const state = await this.objectState(id);
    this.dropDirtyBlocks(state);
    state.freed = true;
    state.dnodeDirty = true;
    this.pin(state);
  }

  async objectInfo(id: number): Promise<ObjectInfo> {
    const { dn } = await this.objectState(id);
    return {
      type: dn.type,
      blockSizeBytes: dn.dataBlockSizeBytes,
      maxOffsetBytes: dn.maxBlockId * dn.dataBlockSizeBytes,
      usedBytes: dn.usedBytes,
      bonusType: dn.bonusType,
      bonusLengthBytes: dn.bonus.length,
    };
  }

  async getBonus(id: number): Promise<Buffer> {
    return Buffer.from((await this.objectState(id)).dn.bonus);
  }

  async setBonus(id: number, bonus: Buffer): Promise<void> {
    if (bonus.length > BONUS_SIZE_MAX_BYTES) throw new CairnError('EINVAL', `bonus of ${bonus.length} bytes exceeds ${BONUS_SIZE_MAX_BYTES}`);
    this.assertMutable();
    const state = await this.objectState(id);
    state.dn.bonus = Buffer.from(bonus);
    state.dnodeDirty = true;
    this.pin(state);
  }

  // ---- data ----------------------------------------------------------------------------------------

  async read(id: number, offset: number, length: number): Promise<Buffer> {
    assert(offset >= 0 && length >= 0, 'negative read');
    const state = await this.objectState(id);
    if (length > 0) this.prefetch(state, offset, length);
    return this.readBytes(state, offset, length);
  }

  async readShared(id: number, offset: number, length: number): Promise<Buffer> {
    assert(offset >= 0 && length > 0, 'bad shared read');
    const state = await this.objectState(id);
    const bs = state.dn.dataBlockSizeBytes;
    const blkid = Math.floor(offset / bs);
    const within = offset - blkid * bs;
    if (within + length <= bs) {
      const block = await this.getBlock(state, blkid);
      if (block !== null && block.length >= within + length) return block.subarray(within, within + length);
    }
    return this.readBytes(state, offset, length);
  }

  async readInto(id: number, offset: number, target: Buffer): Promise<void> {
    assert(offset >= 0, 'negative read');
    const state = await this.objectState(id);
    const direct = this.env.readBlockInto !== undefined;
    if (target.length > 0 && !direct) this.prefetch(state, offset, target.length);
    await this.readBytesInto(state, offset, target, direct);
  }

  /**
   * Sequential reads keep PREFETCH_BLOCKS blocks in flight ahead of the reader, so the device works
   * while the caller consumes. Prefetched blocks land in the cache; errors are left to the real read.
   */
  private prefetch(state: ObjectState, offset: number, length: number): void {
    const bs = state.dn.dataBlockSizeBytes;
    const first = Math.floor(offset / bs);
    const end = Math.floor((offset + length - 1) / bs) + 1;
    const sequential = state.readCursor === first;
    state.readCursor = end;
    if (!sequential) {
      state.prefetchedTo = end;
      return;
    }
    const from = Math.max(end, state.prefetchedTo ?? end);
    const to = Math.min(end + PREFETCH_BLOCKS, state.dn.maxBlockId);
    for (let blkid = from; blkid < to; blkid++) {
      if (!state.dirtyBlocks.has(blkid)) void this.getBlock(state, blkid).catch(() => undefined);
    }
    state.prefetchedTo = Math.max(to, state.prefetchedTo ?? 0);
  }

  async write(id: number, offset: number, data: Buffer, options?: { adopt?: boolean }): Promise<void> {
    assert(offset >= 0, 'negative write offset');
    this.assertMutable();
    const state = await this.objectState(id);
    if (DATA_TYPES.has(state.dn.type)) this.env.reserveSpace(data.length, this.policy.copies);
    await this.writeBytes(state, offset, data, options?.adopt === true);
  }

  async modify(id: number, offset: number, length: number, edit: (range: Buffer) => void): Promise<void> {
    assert(offset >= 0 && length > 0, 'bad modify range');
    this.assertMutable();
    const state = await this.objectState(id);
    await this.growBlockSize(state, offset + length);
    const bs = state.dn.dataBlockSizeBytes;
    const blkid = Math.floor(offset / bs);
    const within = offset - blkid * bs;
    assert(within + length <= bs, `modify of ${length} bytes at ${offset} crosses a ${bs}-byte block`);
    if (DATA_TYPES.has(state.dn.type)) this.env.reserveSpace(length, this.policy.copies);
    const block = await this.blockToChange(state, blkid);
    edit(block.subarray(within, within + length));
    this.markChanged(state, blkid, block);
  }

  async freeRange(id: number, offset: number, length: number): Promise<void> {
    this.assertMutable();
    const state = await this.objectState(id);
    const bs = state.dn.dataBlockSizeBytes;
    const end = Math.min(offset + length, state.dn.maxBlockId * bs);
    if (end <= offset) return;
    const firstFull = Math.ceil(offset / bs);
    const lastFull = Math.floor(end / bs); // exclusive
    if (firstFull > lastFull) {
      await this.writeBytes(state, offset, Buffer.alloc(end - offset));
      return;
    }
    if (offset < firstFull * bs) await this.writeBytes(state, offset, Buffer.alloc(firstFull * bs - offset));
    if (end > lastFull * bs) await this.writeBytes(state, lastFull * bs, Buffer.alloc(end - lastFull * bs));
    for (let blkid = await this.nextBlock(state, firstFull); blkid !== null && blkid < lastFull; blkid = await this.nextBlock(state, blkid + 1)) {
      this.setDirtyBlock(state, blkid, null);
    }
    if (lastFull >= state.dn.maxBlockId) {
      state.dn.maxBlockId = firstFull;
      state.dnodeDirty = true;
      this.pin(state);
    }
  }

  /**
   * The next level-0 block id ≥ from that may hold data (dirty, or not a hole on disk), or null.
   * Skips whole holes at indirect levels, so sparse objects of many TiB are walked quickly.
   */
  async nextBlock(state: ObjectState, from: number): Promise<number | null> {
    let dirtyNext: number | null = null;
    for (const id of state.dirtyBlocks.keys()) if (id >= from && (dirtyNext === null || id < dirtyNext)) dirtyNext = id;
    const limit = dirtyNext ?? state.dn.maxBlockId;
    for (let blkid = from; blkid < limit;) {
      const span = await this.holeSpan(state.dn, blkid);
      if (span === 0) return blkid;
      blkid = (Math.floor(blkid / span) + 1) * span;
    }
    return dirtyNext;
  }

  /** 0 if level-0 block blkid exists on disk; else how many level-0 blocks the hole around it spans. */
  private async holeSpan(dn: Dnode, blkid: number): Promise<number> {
    const top = dn.nlevels - 1;
    const reach = POINTERS_PER_INDIRECT ** top;
    if (blkid >= reach || isHole(dn.rootBp)) return Math.max(reach, 2 ** Math.ceil(Math.log2(blkid + 1)));
    let bp = dn.rootBp;
    for (let level = top; level > 0; level--) {
      const block = await this.env.readBlock(bp);
      const span = POINTERS_PER_INDIRECT ** (level - 1);
      bp = pointerIn(block, Math.floor(blkid / span) % POINTERS_PER_INDIRECT);
      if (isHole(bp)) return span;
    }
    return 0;
  }

  // ---- internals: object states --------------------------------------------------------------------

  private assertMutable(): void {
    assert(!this.syncing, 'object set modified while its txg is syncing (missing hold?)');
  }

  private pin(state: ObjectState): void {
    if (state.id === 0) return;
    this.clean.delete(state.id);
    if (!this.dirty.has(state.id)) this.env.objectDirtied?.();
    this.dirty.set(state.id, state);
  }

  private async objectState(id: number): Promise<ObjectState> {
    if (!Number.isSafeInteger(id) || id <= 0 || id >= this.nextObjectId) throw new CairnError('ENOENT', `object ${id} does not exist`);
    const dirty = this.dirty.get(id);
    if (dirty) {
      if (dirty.freed) throw new CairnError('ENOENT', `object ${id} was freed`);
      return dirty;
    }
    const cached = this.clean.get(id);
    if (cached) {
      // Moving an entry to the end is a delete and a set, which V8 makes cost O(map size) when repeated
      // on one key of a large Map (a directory looked up 10,000 times took 25 µs per hit): an entry
      // touched within the last half cache of hits is recent enough where it is.
      const now = ++this.cleanAccesses;
      if (cached.touchedAt === undefined || now - cached.touchedAt > CLEAN_DNODE_CACHE_MAX / 2) {
        cached.touchedAt = now;
        this.clean.delete(id);
        this.clean.set(id, cached);
      }
      return cached;
    }
    const generation = this.syncGeneration;
    const raw = await this.readBytes(this.meta, id * DNODE_SIZE_BYTES, DNODE_SIZE_BYTES);
    // Another caller may have loaded (or dirtied) it while we waited.
    const again = this.dirty.get(id) ?? this.clean.get(id);
    if (again) return again;
    // A sync finished during the read: the record read may predate it (and the synced state may have
    // been evicted since), so read it again rather than install a stale dnode.
    if (generation !== this.syncGeneration) return this.objectState(id);
    const dn = decodeDnode(raw, 0);
    if (dn.type === 0) throw new CairnError('ENOENT', `object ${id} does not exist`);
    const state: ObjectState = { id, dn, dirtyBlocks: new Map(), dnodeDirty: false, freed: false };
    this.clean.set(id, state);
    this.trimClean();
    return state;
  }

  /**
   * Drops the least recently used clean dnodes down to 7/8 of the cache, in one pass from the front of
   * the map: evicting one per insert would walk the deleted slots an LRU's touches leave at the front
   * of a Map every time, which made a miss cost O(cache size).
   */
  private trimClean(): void {
    if (this.clean.size <= CLEAN_DNODE_CACHE_MAX) return;
    let excess = this.clean.size - Math.floor((CLEAN_DNODE_CACHE_MAX * 7) / 8);
    for (const id of this.clean.keys()) {
      if (excess-- <= 0) break;
      this.clean.delete(id);
    }
  }

  private dropDirtyBlocks(state: ObjectState): void {
    for (const buf of state.dirtyBlocks.values()) if (buf) this.env.dirtyBytesChanged(-buf.length);
    state.dirtyBlocks.clear();
    state.partlyWritten?.clear();
  }

  private setDirtyBlock(state: ObjectState, blkid: number, data: Buffer | null): void {
    const old = state.dirtyBlocks.get(blkid);
    if (old) this.env.dirtyBytesChanged(-old.length);
    if (data) this.env.dirtyBytesChanged(data.length);
    state.dirtyBlocks.set(blkid, data);
    if (blkid >= state.dn.maxBlockId && data) {
      state.dn.maxBlockId = blkid + 1;
      state.dnodeDirty = true;
    }
    this.pin(state);
  }

  // ---- internals: reading --------------------------------------------------------------------------

  /** Level-0 block contents (dirty or on disk), or null for a hole. Never modify the result. */
  private async getBlock(state: ObjectState, blkid: number): Promise<Buffer | null> {
    const dirty = state.dirtyBlocks.get(blkid);
    if (dirty !== undefined) return dirty;
    const bp = await this.syncedPointer(state.dn, blkid);
    return bp === null ? null : this.env.readBlock(bp);
  }

  /** getBlock into target (the whole block): from the device straight into it when nothing holds it. */
  private async readWholeBlockInto(state: ObjectState, blkid: number, target: Buffer): Promise<void> {
    const dirty = state.dirtyBlocks.get(blkid);
    const bp = dirty === undefined ? await this.syncedPointer(state.dn, blkid) : null;
    if (bp !== null && bp.lsize === target.length && this.env.readBlockInto) return this.env.readBlockInto(bp, target);
    copyOrZero(dirty ?? (bp === null ? null : await this.env.readBlock(bp)), target, 0, 0, target.length);
  }

  /**
   * A clean block's contents for a partial write to change (null: a hole or past the end). `owned`:
   * the buffer is the cache's own, given up by ObjsetEnvironment.takeBlock (data objects only), for
   * the caller to change in place; otherwise it is shared and must be copied.
   */
  private async cleanBlockToChange(state: ObjectState, blkid: number): Promise<{ data: Buffer; owned: boolean } | null> {
    const bp = await this.syncedPointer(state.dn, blkid);
    if (bp === null) return null;
    const taken = DATA_TYPES.has(state.dn.type) ? await this.env.takeBlock?.(bp) : null;
    return taken ? { data: taken, owned: true } : { data: await this.env.readBlock(bp), owned: false };
  }

  /** Level-0 pointer of blkid in the tree as last synced; null for a hole or past the tree's end. */
  private async syncedPointer(dn: Dnode, blkid: number): Promise<BlockPointer | null> {
    if (blkid >= dn.maxBlockId && !(blkid === 0 && !isHole(dn.rootBp))) return null;
    const bp = await this.blockPointerOf(dn, 0, blkid);
    return bp === null || isHole(bp) ? null : bp;
  }

  /** The pointer to block (level, blkid) as of the tree on disk, or null when above the tree's reach. */
  private async blockPointerOf(dn: Dnode, level: number, blkid: number): Promise<BlockPointer | null> {
    const top = dn.nlevels - 1;
    if (level > top) return null;
    if (Math.floor(blkid / POINTERS_PER_INDIRECT ** (top - level)) !== 0) return null;
    let bp = dn.rootBp;
    for (let l = top; l > level; l--) {
      if (isHole(bp)) return bp;
      const block = await this.env.readBlock(bp);
      const slot = Math.floor(blkid / POINTERS_PER_INDIRECT ** (l - 1 - level)) % POINTERS_PER_INDIRECT;
      bp = pointerIn(block, slot);
    }
    return bp;
  }

  private async readBytes(state: ObjectState, offset: number, length: number): Promise<Buffer> {
    // Every byte is either copied from a block or zero-filled for a hole.
    const out = Buffer.allocUnsafe(length);
    await this.readBytesInto(state, offset, out);
    return out;
  }

  /** `direct`: whole blocks go through readWholeBlockInto (ObjectStore.readInto). */
  private async readBytesInto(state: ObjectState, offset: number, out: Buffer, direct = false): Promise<void> {
    const length = out.length;
    const bs = state.dn.dataBlockSizeBytes;
    // Blocks of one request are fetched concurrently (bounded by the request size), so a large read
    // keeps several device reads in flight instead of paying each one's latency in turn.
    const pending: Promise<void>[] = [];
    let done = 0;
    while (done < length) {
      const pos = offset + done;
      const blkid = Math.floor(pos / bs);
      const within = pos - blkid * bs;
      const n = Math.min(bs - within, length - done);
      const at = done;
      pending.push(direct && n === bs
        ? this.readWholeBlockInto(state, blkid, out.subarray(at, at + n))
        : this.getBlock(state, blkid).then((block) => copyOrZero(block, out, at, within, n)));
      if (pending.length >= READ_CONCURRENCY_MAX) await settleAll(pending.splice(0));
      done += n;
    }
    await settleAll(pending);
  }

  // ---- internals: writing --------------------------------------------------------------------------

  private async writeBytes(state: ObjectState, offset: number, data: Buffer, adopt = false): Promise<void> {
    await this.growBlockSize(state, offset + data.length);
    const bs = state.dn.dataBlockSizeBytes;
    let done = 0;
    while (done < data.length) {
      const pos = offset + done;
      const blkid = Math.floor(pos / bs);
      const within = pos - blkid * bs;
      const n = Math.min(bs - within, data.length - done);
      let block: Buffer;
      let filled = false;
      if (n === bs && adopt) {
        block = data.subarray(done, done + n); // the caller gave it up: no copy
        filled = true;
      } else if (n === bs) {
        block = Buffer.allocUnsafe(bs);
      } else {
        block = await this.blockToChange(state, blkid);
      }
      if (!filled) data.copy(block, within, done, done + n);
      this.markChanged(state, blkid, block);
      done += n;
    }
  }

  /** Block blkid as the open txg's own buffer, for a change of part of it in place. */
  private async blockToChange(state: ObjectState, blkid: number): Promise<Buffer> {
    const bs = state.dn.dataBlockSizeBytes;
    const dirty = state.dirtyBlocks.get(blkid);
    (state.partlyWritten ??= new Set()).add(blkid);
    if (dirty) return dirty; // already private to this txg
    // A null dirty entry is a hole made this txg (a trim): nothing on disk is read for it.
    const old = dirty === undefined ? await this.cleanBlockToChange(state, blkid) : null;
    // The cached copy, given up by the cache: no 128 KiB copy per small write.
    if (old?.owned === true && old.data.length === bs) return old.data;
    // Unzeroed: every byte is the old block's or zero, and the change lands on top.
    const block = Buffer.allocUnsafe(bs);
    const kept = old ? old.data.copy(block, 0, 0, Math.min(old.data.length, bs)) : 0;
    block.fill(0, kept);
    return block;
  }

  /** Records block as blkid's changed contents in the open txg (a no-op when it already is, inside the object). */
  private markChanged(state: ObjectState, blkid: number, block: Buffer): void {
    if (block !== state.dirtyBlocks.get(blkid) || blkid >= state.dn.maxBlockId) this.setDirtyBlock(state, blkid, block);
  }

  /**
   * A single-block object grows its block (power of two) as it grows, up to its record size, so small
   * files take small blocks; once it has two blocks the size is fixed (as OpenZFS does).
   */
  private async growBlockSize(state: ObjectState, endOffset: number): Promise<void> {
    const { dn } = state;
    if (dn.dataBlockSizeBytes >= dn.recordSizeBytes || endOffset <= dn.dataBlockSizeBytes) return;
    if (dn.maxBlockId > 1) return;
    let size = dn.dataBlockSizeBytes;
    while (size < endOffset && size < dn.recordSizeBytes) size *= 2;
    const old = await this.getBlock(state, 0);
    dn.dataBlockSizeBytes = size;
    state.dnodeDirty = true;
    this.pin(state);
    if (old) {
      // Block 0 gets a new pointer at sync; the old, smaller block is freed then.
      const grown = Buffer.alloc(size);
      old.copy(grown, 0, 0, Math.min(old.length, size));
      this.setDirtyBlock(state, 0, grown);
    }
  }

  // ---- sync ----------------------------------------------------------------------------------------

  /**
   * Writes every change since the last sync in txg `txg` and returns the new root block pointer. May be
   * called again in the same txg (pool convergence passes); unchanged object sets return at once.
   */
  async sync(txg: number): Promise<BlockPointer> {
    if (this.beforeSync !== null) await this.beforeSync(this);
    if (!this.isDirty && !isHole(this.rootBp)) return this.rootBp;
    this.syncing = true;
    try {
      const states = [...this.dirty.values()].sort((a, b) => a.id - b.id);
      // Objects sync OBJECTS_SYNCING_MAX at a time: a txg of many small files (an untar) would
      // otherwise wait for each one's block write in turn, while the txg gate keeps writers out.
      let next = 0;
      let failure: { error: unknown } | null = null;
      const syncer = async (): Promise<void> => {
        while (failure === null && next < states.length) {
          const state = states[next++] as ObjectState;
          try {
            if (state.freed) await this.freeTree(state.dn.rootBp, state.dn.nlevels - 1);
            else await this.syncObject(state, txg);
          } catch (error) {
            failure ??= { error };
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(OBJECTS_SYNCING_MAX, states.length) }, syncer));
      if (failure !== null) throw (failure as { error: unknown }).error;
      // Dnode records go into the meta-dnode object (plain writes: the objset is ours while syncing).
      for (const state of states) {
        const rec = Buffer.alloc(DNODE_SIZE_BYTES);
        encodeDnode(state.freed ? emptyDnode() : state.dn, rec, 0);
        this.syncing = false;
        await this.writeBytes(this.meta, state.id * DNODE_SIZE_BYTES, rec);
        this.syncing = true;
        this.dirty.delete(state.id);
        state.dnodeDirty = false;
        if (!state.freed) this.clean.set(state.id, state);
      }
      this.trimClean();
      await this.syncObject(this.meta, txg);
      this.meta.dnodeDirty = false;
      const phys = Buffer.alloc(OBJSET_PHYS_SIZE_BYTES);
      phys.writeBigUInt64LE(OBJSET_MAGIC, 0);
      phys.writeUInt32LE(OBJSET_VERSION, 8);
      phys.writeUInt32LE(this.type, 12);
      phys.writeBigUInt64LE(BigInt(this.nextObjectId), 16);
      encodeDnode(this.meta.dn, phys, 64);
      const old = isHole(this.rootBp) ? null : this.rootBp;
      this.rootBp = await this.env.writeBlock(phys, this.props(ObjectType.objset, 0, 1, true, txg), old);
      if (old && !sameLocation(old, this.rootBp)) this.env.freeBlock(old);
      return this.rootBp;
    } finally {
      this.syncing = false;
      this.syncGeneration++;
    }
  }

  private props(type: number, level: number, fill: number, metadata: boolean, txg: number): BlockWriteProps {
    return {
      type, level, fill, birthTxg: txg,
      checksum: this.policy.checksum,
      // Metadata is always compressed, as in OpenZFS: a sparse indirect block is mostly zeros.
      compression: metadata && this.policy.compression === CompressionType.off ? CompressionType.lz4 : this.policy.compression,
      copies: metadata ? this.policy.metadataCopies : this.policy.copies,
    };
  }

  /** Writes one object's dirty blocks and the indirect blocks above them; swaps in the new root. */
  private async syncObject(state: ObjectState, txg: number): Promise<void> {
    const { dn } = state;
    const entries = [...state.dirtyBlocks.entries()].sort((a, b) => a[0] - b[0]);
    if (entries.length === 0 && !isHole(dn.rootBp)) return;
    const metadata = !DATA_TYPES.has(dn.type);
    // Levels needed to reach the highest block.
    let nlevels = dn.nlevels;
    const maxId = Math.max(dn.maxBlockId - 1, 0);
    while (maxId >= POINTERS_PER_INDIRECT ** (nlevels - 1)) nlevels++;

    // Level 0: new pointers for the dirty blocks, written WRITE_CONCURRENCY_MAX at a time. Allocation
    // happens synchronously inside each write call, so placement stays in block order.
    let changed = new Map<number, BlockPointer>();
    for (let i = 0; i < entries.length; i += WRITE_CONCURRENCY_MAX) {
      const batch = entries.slice(i, i + WRITE_CONCURRENCY_MAX);
      const olds = await Promise.all(batch.map(([blkid]) => this.diskPointer(dn, 0, blkid)));
      const bps = await Promise.all(batch.map(([blkid, data], j) => {
        const old = olds[j] ?? null;
        if (data === null || (this.policy.compression !== 0 && isAllZero(data))) return Promise.resolve(holeBlockPointer(dn.dataBlockSizeBytes, txg));
        const props = this.props(dn.type, 0, 1, metadata, txg);
        if (state.partlyWritten?.has(blkid)) props.keepCached = true;
        return this.env.writeBlock(data, props, old && !isHole(old) ? old : null);
      }));
      batch.forEach(([blkid], j) => {
        const bp = bps[j] as BlockPointer;
        this.release(dn, olds[j] ?? null, bp);
        changed.set(blkid, bp);
      });
    }

    // Indirect levels, bottom-up: each changed child pointer dirties its parent.
    let rootBp: BlockPointer = dn.rootBp;
    if (nlevels === 1) {
      const only = changed.get(0);
      if (only) rootBp = only;
    }
    for (let level = 1; level < nlevels; level++) {
      const parents = new Map<number, Map<number, BlockPointer>>();
      for (const [blkid, bp] of changed) {
        const parentId = Math.floor(blkid / POINTERS_PER_INDIRECT);
        let group = parents.get(parentId);
        if (!group) parents.set(parentId, (group = new Map()));
        group.set(blkid % POINTERS_PER_INDIRECT, bp);
      }
      // The old root moves down one level when the tree grows.
      if (level === dn.nlevels && !isHole(dn.rootBp) && !parents.has(0)) parents.set(0, new Map());
      const next = new Map<number, BlockPointer>();
      for (const [parentId, group] of parents) {
        const old = await this.diskPointerGrown(dn, level, parentId);
        const block = Buffer.alloc(INDIRECT_BLOCK_SIZE_BYTES);
        if (old && !isHole(old)) (await this.env.readBlock(old)).copy(block);
        else if (level === dn.nlevels && parentId === 0 && !isHole(dn.rootBp)) encodeBlockPointer(dn.rootBp, block, 0);
        for (const [slot, bp] of group) encodeBlockPointer(bp, block, slot * BLKPTR_SIZE_BYTES);
        const fill = sumFill(block);
        let bp: BlockPointer;
        if (fill === 0 && allHoles(block)) bp = holeBlockPointer(0, txg);
        else bp = await this.env.writeBlock(block, this.props(ObjectType.indirect, level, fill, true, txg), old && !isHole(old) ? old : null);
        this.release(dn, old, bp);
        next.set(parentId, bp);
      }
      changed = next;
      if (level === nlevels - 1) rootBp = changed.get(0) ?? rootBp;
    }
    // Swap in the new version atomically (no await between these lines).
    dn.rootBp = rootBp;
    dn.nlevels = nlevels;
    this.dropDirtyBlocks(state);
    state.dnodeDirty = true;
  }

  /** Pointer of (level, blkid) in the current tree, or null when the tree does not reach that far. */
  private async diskPointer(dn: Dnode, level: number, blkid: number): Promise<BlockPointer | null> {
    return this.blockPointerOf(dn, level, blkid);
  }

  /** As diskPointer, but the old root counts as block 0 of its own level only (growth handled by caller). */
  private async diskPointerGrown(dn: Dnode, level: number, blkid: number): Promise<BlockPointer | null> {
    if (level >= dn.nlevels) return null;
    return this.blockPointerOf(dn, level, blkid);
  }

  /** Accounts a replaced pointer: the old block is freed unless it is being rewritten in place. */
  private release(dn: Dnode, old: BlockPointer | null, bp: BlockPointer): void {
    dn.usedBytes += allocated(bp);
    if (old && !isHole(old)) {
      dn.usedBytes -= allocated(old);
      if (!sameLocation(old, bp)) this.env.freeBlock(old);
    }
  }

  /** Frees every block of a tree (object freed). */
  private async freeTree(bp: BlockPointer, level: number): Promise<void> {
    if (isHole(bp)) return;
    if (level > 0) {
      const block = await this.env.readBlock(bp);
      for (let slot = 0; slot < POINTERS_PER_INDIRECT; slot++) {
        const child = decodeBlockPointer(block, slot * BLKPTR_SIZE_BYTES);
        if (!isHole(child)) await this.freeTree(child, level - 1);
      }
    }
    this.env.freeBlock(bp);
  }

  // ---- diff ----------------------------------------------------------------------------------------

  /**
   * Ids of the objects whose dnode differs between this object set and `older`, an earlier version of
   * it whose blocks are all born at or before sinceTxg (a snapshot taken in that txg), ascending, each
   * once (OpenZFS's dmu_diff). Only meta-dnode blocks born after sinceTxg are read: copy-on-write gives
   * a changed dnode a new block and new parents up to the root, while an unchanged subtree keeps its
   * old pointer and birth, so the cost follows what changed, not the size of the set. Within a changed
   * block each 512-byte record is compared with older's record of the same id (equal bytes: unchanged),
   * and a range punched to a hole reports every object older had there. Objects changed since this
   * set's last sync (still in memory) are included without comparison; the caller compares contents.
   * Assumes neither set syncs while it runs (snapshots, or a live set between syncs).
   */
  async *changedObjects(sinceTxg: number, older: ObjectSet, counters?: ChangedObjectsCounters): AsyncGenerator<number> {
    // Pending ids are taken now: the synced walk below sees the tree of the last sync.
    const pending = [...this.dirty.keys()].sort((a, b) => a - b);
    let next = 0;
    const root = this.meta.dn.rootBp;
    for await (const id of this.changedInTree(root, this.meta.dn.nlevels - 1, 0, sinceTxg, older, counters)) {
      while (next < pending.length && (pending[next] as number) < id) yield pending[next++] as number;
      if (pending[next] === id) next++;
      yield id;
    }
    while (next < pending.length) yield pending[next++] as number;
  }

  /** changedObjects for the meta-dnode subtree under bp, whose first level-0 block is firstBlkid. */
  private async *changedInTree(
    bp: BlockPointer, level: number, firstBlkid: number, sinceTxg: number, older: ObjectSet, counters: ChangedObjectsCounters | undefined,
  ): AsyncGenerator<number> {
    if (bp.birthTxg <= sinceTxg) return;
    const dnodesPerBlock = META_DNODE_BLOCK_SIZE_BYTES / DNODE_SIZE_BYTES;
    if (isHole(bp)) {
      // Punched after sinceTxg: every object older had in the range is gone.
      const endBlkid = Math.min(firstBlkid + POINTERS_PER_INDIRECT ** level, older.meta.dn.maxBlockId);
      for (let blkid = firstBlkid; blkid < endBlkid; blkid++) {
        const was = await older.metaBlockForDiff(blkid, counters);
        if (was === null) continue;
        for (let slot = 0; slot * DNODE_SIZE_BYTES < was.length; slot++) {
          if (was.readUInt8(slot * DNODE_SIZE_BYTES) !== 0) yield blkid * dnodesPerBlock + slot;
        }
      }
      return;
    }
    const block = await this.env.readBlock(bp);
    if (counters) counters.blocksVisited++;
    if (level > 0) {
      const span = POINTERS_PER_INDIRECT ** (level - 1);
      for (let slot = 0; slot < POINTERS_PER_INDIRECT; slot++) {
        const at = slot * BLKPTR_SIZE_BYTES;
        // Birth first: an unchanged child is skipped without decoding its pointer.
        if (Number(block.readBigUInt64LE(at + 64)) <= sinceTxg) continue;
        yield* this.changedInTree(decodeBlockPointer(block, at), level - 1, firstBlkid + slot * span, sinceTxg, older, counters);
      }
      return;
    }
    const was = await older.metaBlockForDiff(firstBlkid, counters);
    const slots = Math.max(block.length, was?.length ?? 0) / DNODE_SIZE_BYTES;
    for (let slot = 0; slot < slots; slot++) {
      if (!sameDnodeRecord(block, was, slot * DNODE_SIZE_BYTES)) yield firstBlkid * dnodesPerBlock + slot;
    }
  }

  /** Level-0 block blkid of the meta-dnode's synced tree, or null for a hole or past its end. */
  private async metaBlockForDiff(blkid: number, counters: ChangedObjectsCounters | undefined): Promise<Buffer | null> {
    const bp = await this.blockPointerOf(this.meta.dn, 0, blkid);
    if (bp === null || isHole(bp)) return null;
    if (counters) counters.olderBlocksRead++;
    return this.env.readBlock(bp);
  }

  // ---- traversal (scrub, resilver) -----------------------------------------------------------------

  /**
   * Visits every block pointer of this object set's last synced version: the objset block, the dnode
   * array, and every object's tree, parents before children. Memory: one indirect block per level.
   * Subtrees born at or before minBirthTxg are skipped: copy-on-write gives every parent a birth at
   * least its children's, so such a subtree holds only older blocks (snapshots, rollback, destroy).
   */
  async traverse(visit: (bp: BlockPointer) => Promise<void>, rootBp: BlockPointer = this.rootBp, minBirthTxg = 0): Promise<void> {
    if (isHole(rootBp) || rootBp.birthTxg <= minBirthTxg) return;
    await visit(rootBp);
    const phys = await this.env.readBlock(rootBp);
    const meta = decodeDnode(phys, 64);
    await this.traverseTree(meta.rootBp, meta.nlevels - 1, visit, async (block) => {
      for (let at = 0; at + DNODE_SIZE_BYTES <= block.length; at += DNODE_SIZE_BYTES) {
        const dn = decodeDnode(block, at);
        if (dn.type !== 0) await this.traverseTree(dn.rootBp, dn.nlevels - 1, visit, null, minBirthTxg);
      }
    }, minBirthTxg);
  }

  private async traverseTree(
    bp: BlockPointer, level: number, visit: (bp: BlockPointer) => Promise<void>,
    onData: ((block: Buffer) => Promise<void>) | null, minBirthTxg = 0,
  ): Promise<void> {
    if (isHole(bp) || bp.birthTxg <= minBirthTxg) return;
    await visit(bp);
    if (level === 0) {
      if (onData) await onData(await this.env.readBlock(bp));
      return;
    }
    const block = await this.env.readBlock(bp);
    for (let slot = 0; slot < POINTERS_PER_INDIRECT; slot++) {
      const child = decodeBlockPointer(block, slot * BLKPTR_SIZE_BYTES);
      if (!isHole(child)) await this.traverseTree(child, level - 1, visit, onData, minBirthTxg);
    }
  }
}

function sameDnodeRecord(a: Buffer, b: Buffer | null, at: number): boolean {
  const end = at + DNODE_SIZE_BYTES;
  const aEnd = Math.min(end, a.length);
  const bEnd = b === null ? at : Math.min(end, b.length);
  // Bytes past a block's end read as zero (a free slot).
  if (aEnd > at && bEnd > at && aEnd === bEnd && b !== null) return a.compare(b, at, bEnd, at, aEnd) === 0;
  for (let i = at; i < end; i++) {
    const x = i < aEnd ? (a[i] as number) : 0;
    const y = b !== null && i < bEnd ? (b[i] as number) : 0;
    if (x !== y) return false;
  }
  return true;
}

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

function isAllZero(buf: Buffer): boolean {
  // Compare 8 bytes at a time through a BigUint64Array view where aligned.
  if (buf.byteOffset % 8 === 0 && buf.length % 8 === 0) {
    const words = new BigUint64Array(buf.buffer, buf.byteOffset, buf.length / 8);
    for (let i = 0; i < words.length; i++) if (words[i] !== 0n) return false;
    return true;
  }
  for (let i = 0; i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
}

/** Copies n bytes of block from `within` to out at `at`; what the block lacks (a hole, a short block) reads as zeros. */
function copyOrZero(block: Buffer | null, out: Buffer, at: number, within: number, n: number): void {
  const copied = block ? block.copy(out, at, within, within + n) : 0;
  if (copied < n) out.fill(0, at + copied, at + n);
}

/**
 * Waits for every read of a request before failing it with the first error: a read still running
 * after the request was answered would write into a buffer that serves the next request (FUSE's
 * reply slot).
 */
async function settleAll(pending: Promise<void>[]): Promise<void> {
  const results = await Promise.allSettled(pending);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}

/**
 * Pointers decoded from an indirect block, per slot, kept as long as the block's buffer lives (the
 * ARC's; a block read from it is never changed): walking down to a block decoded one pointer per level
 * on every read, and the pool keys its cache by the pointer object (pool.ts, arcKey). The ARC does not
 * count this memory (a fully decoded 128 KiB block is about 750 KiB of heap), so after
 * DECODED_POINTERS_MAX pointers the map starts over, leaving the old one to the garbage collector.
 */
const DECODED_POINTERS_MAX = 65536;
let decodedPointers = new WeakMap<Buffer, (BlockPointer | undefined)[]>();
let decodedPointerCount = 0;

function pointerIn(block: Buffer, slot: number): BlockPointer {
  let decoded = decodedPointers.get(block);
  if (decoded === undefined) decodedPointers.set(block, (decoded = []));
  let bp = decoded[slot];
  if (bp === undefined) {
    if (++decodedPointerCount > DECODED_POINTERS_MAX) {
      decodedPointers = new WeakMap();
      decodedPointerCount = 1;
      decodedPointers.set(block, (decoded = []));
    }
    bp = decoded[slot] = decodeBlockPointer(block, slot * BLKPTR_SIZE_BYTES);
  }
  return bp;
}

function allHoles(block: Buffer): boolean {
  for (let slot = 0; slot < POINTERS_PER_INDIRECT; slot++) {
    const at = slot * BLKPTR_SIZE_BYTES;
    if (block.readUInt32LE(at + 4) !== 0 || block.readUInt32LE(at + 20) !== 0 || block.readUInt32LE(at + 36) !== 0) return false;
  }
  return true;
}

function sumFill(block: Buffer): number {
  let fill = 0;
  for (let slot = 0; slot < POINTERS_PER_INDIRECT; slot++) {
    const at = slot * BLKPTR_SIZE_BYTES;
    if (block.readUInt32LE(at + 4) !== 0) fill += block.readUInt32LE(at + 60);
  }
  return fill;
}

function allocated(bp: BlockPointer): number {
  let bytes = 0;
  for (const dva of bp.dvas) bytes += dva.asize;
  return bytes;
}

function sameLocation(a: BlockPointer, b: BlockPointer): boolean {
  const x = a.dvas[0];
  const y = b.dvas[0];
  return x !== undefined && y !== undefined && x.vdev === y.vdev && x.offset === y.offset;
}

export { DNODE_SHIFT };

/**
 * The dataset manager (OpenZFS DSL, filesystems only): the tree of datasets, their snapshots and clones,
 * their records in the MOS, and the free rule that makes snapshots O(1). See docs/datasets-design.md.
 */
import { decodeBlockPointer, encodeBlockPointer, holeBlockPointer, isHole, type BlockPointer } from '../io/blkptr.js';
import { createKv, openKv } from '../kv/index.js';
import { ObjectSet, ObjsetType, type ObjsetEnvironment, type WritePolicy } from '../objects/objset.js';
import { ObjectType, type ObjectStore } from '../objects/types.js';
import { Filesystem } from '../fs/index.js';
import { Volume } from './volume.js';
import { diffFilesystems, type DiffEntry } from './diff.js';
import type { FileSystemApi } from '../fs/types.js';
import { assert } from '../util/assert.js';
import { CairnError } from '../util/errors.js';
import {
  allocatedBytes, appendDeadList, createDeadList, deadListBytesBornAfter, deadListChunks, deadListTotals, freeDeadList,
} from './deadlist.js';
import { parentOf, validateDatasetName, validateSnapshotName } from './names.js';
import {
  checkInheritable, formatPropertyValue, isNativeProperty, parsePropertyValue, propertyDefinition, resolveProperties, validateVolsize,
  type DatasetType, type PropertyLayer, type PropertyValue, type ResolvedProperty,
} from './properties.js';
import { ChecksumType, CompressionType } from '../io/types.js';

const DATASET_MAGIC = 0x314c5344; // "DSL1", shared with version 1 (src/pool/mos.ts)
const DATASET_PHYS_VERSION = 2;
const PHYS_FIELDS_AT = 16 + 128;
const FLAG_SNAPSHOT = 1;
/** The object set is a volume (Volume, volume.ts); else a filesystem. Snapshots keep their head's flag. */
const FLAG_VOLUME = 2;

/** DatasetPhys version 2 (a MOS dataset object's bonus); version 1 is its first 144 bytes. */
export interface DatasetPhys {
  createTxg: number;
  rootBp: BlockPointer;
  /** Parent head's dataset object (0 for the root); for a snapshot, its head. */
  parentDir: number;
  prevSnapshot: number;
  /** Blocks born after this txg are referenced by no snapshot of this dataset's chain. */
  prevSnapshotTxg: number;
  /** Snapshots only: the next snapshot, or the head. */
  nextSnapshot: number;
  /** 0: empty. */
  deadList: number;
  referencedBytes: number;
  /** Bytes referenced and born after the origin (all of referencedBytes when not a clone). */
  uniqueBytes: number;
  compressedBytes: number;
  uncompressedBytes: number;
  originSnapshot: number;
  flags: number;
  propsKv: number;
  childrenKv: number;
  snapshotsKv: number;
  /** Snapshots only: kv of the clones made from it (dataset id → nothing). */
  clonesKv: number;
  /** Referenced bytes born after prevSnapshotTxg. */
  writtenBytes: number;
  /** Seconds since the epoch (the `creation` property). */
  creationSec: number;
  /** Random 53-bit id (the `guid` property). */
  guid: number;
  /** Snapshots only: kv of user holds (tag → u64 creation ms). */
  holdsKv: number;
}

const U64_FIELDS = [
  'parentDir', 'prevSnapshot', 'prevSnapshotTxg', 'nextSnapshot', 'deadList', 'referencedBytes', 'uniqueBytes',
  'compressedBytes', 'uncompressedBytes', 'originSnapshot', 'flags', 'propsKv', 'childrenKv', 'snapshotsKv', 'clonesKv',
  'writtenBytes', 'creationSec', 'guid', 'holdsKv',
] as const;
/** Fields added after the first version-2 records were written: such older records read them as 0. */
const U64_FIELDS_FIRST_V2 = 16;

export function encodeDatasetPhysV2(ds: DatasetPhys): Buffer {
  const out = Buffer.alloc(PHYS_FIELDS_AT + 8 * U64_FIELDS.length);
  out.writeUInt32LE(DATASET_MAGIC, 0);
  out.writeUInt32LE(DATASET_PHYS_VERSION, 4);
  out.writeBigUInt64LE(BigInt(ds.createTxg), 8);
  encodeBlockPointer(ds.rootBp, out, 16);
  U64_FIELDS.forEach((f, i) => out.writeBigUInt64LE(BigInt(ds[f]), PHYS_FIELDS_AT + 8 * i));
  return out;
}

/** Decodes version 1 (no snapshots, space unknown: `v1` true) or version 2. */
export function decodeDatasetPhysAny(buf: Buffer): { phys: DatasetPhys; v1: boolean } {
  if (buf.length < PHYS_FIELDS_AT || buf.readUInt32LE(0) !== DATASET_MAGIC) throw new CairnError('EIO', 'dataset record is damaged');
  const version = buf.readUInt32LE(4);
  if (version > DATASET_PHYS_VERSION) throw new CairnError('EVERSION', `dataset record version ${version} is newer than this Cairn`);
  const phys = emptyPhys(Number(buf.readBigUInt64LE(8)), decodeBlockPointer(buf, 16));
  if (version === 1) return { phys, v1: true };
  if (buf.length < PHYS_FIELDS_AT + 8 * U64_FIELDS_FIRST_V2) throw new CairnError('EIO', 'dataset record is damaged');
  U64_FIELDS.forEach((f, i) => {
    const at = PHYS_FIELDS_AT + 8 * i;
    phys[f] = at + 8 <= buf.length ? Number(buf.readBigUInt64LE(at)) : 0;
  });
  return { phys, v1: false };
}

function emptyPhys(createTxg: number, rootBp: BlockPointer): DatasetPhys {
  const phys = { createTxg, rootBp } as DatasetPhys;
  for (const f of U64_FIELDS) phys[f] = 0;
  return phys;
}

function u64(value: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(value));
  return b;
}

function sameLocation(a: BlockPointer, b: BlockPointer): boolean {
  const x = a.dvas[0];
  const y = b.dvas[0];
  return x !== undefined && y !== undefined && x.vdev === y.vdev && x.offset === y.offset;
}

/** What the pool gives the dataset layer. */
export interface DatasetHost {
  readonly poolName: string;
  /** The meta object set. */
  mos(): ObjectSet;
  /** The pool's block environment (its freeBlock frees to the pool, deferred). */
  readonly env: ObjsetEnvironment;
  /** A block's verified contents, taken out of the cache for the caller to modify and keep. */
  takeBlock(bp: BlockPointer): Promise<Buffer>;
  policy(): WritePolicy;
  statfs(): { totalBytes: number; freeBytes: number; availableBytes: number; files: number };
  /** Free space a dataset may still fill: free less the pool's slop. */
  availableBytes(): number;
  /**
   * The pool's write-time check (ENOSPC) of a data write of `bytes` at `copies`, with `heldBytes` of
   * reservations belonging to others kept out of reach.
   */
  reserveSpace(bytes: number, copies: number, heldBytes: number): void;
  /** Commits the open txg and waits until it is durable. */
  sync(): Promise<void>;
  /** The txg holds currently join. */
  openTxg(): number;
  hold<T>(fn: () => Promise<T>): Promise<T>;
  /**
   * Syncs, then with every hold drained runs check (its errors change nothing), then runs fn in the
   * next syncing txg after every dirty dataset was written, before the MOS passes: all fn changes land
   * in that one txg.
   */
  syncTask<T>(check: () => Promise<void>, fn: (txg: number) => Promise<T>): Promise<T>;
}

export interface DatasetSpace {
  referencedBytes: number;
  usedBytes: number;
  usedBySnapshotsBytes: number;
  usedByChildrenBytes: number;
  usedByRefreservationBytes: number;
  writtenBytes: number;
}

export interface DatasetListEntry {
  name: string;
  type: DatasetType;
  createTxg: number;
}

export interface CreateDatasetOptions {
  /** -p: create missing parents (as filesystems). */
  parents?: boolean;
  /** -V: a volume of this many bytes (a multiple of volblocksize). */
  volsizeBytes?: number;
  /** -s: no refreservation for a volume (thin). */
  sparse?: boolean;
  /** -o name=value, as typed (validated by the property table). */
  properties?: Record<string, string>;
}

export interface DestroyOptions {
  /** -r: also every descendant (for a snapshot name: that snapshot of every descendant). */
  recursive?: boolean;
  /** -R: also dependents outside the tree (clones and their descendants). */
  dependents?: boolean;
  /** -n: change nothing; report what would be destroyed and freed. */
  dryRun?: boolean;
}

export interface DestroyResult {
  /** In the order destroyed (children and clones before what they depend on). */
  destroyed: string[];
  /** Bytes that come (or would come) back to the pool. */
  reclaimBytes: number;
}

/** What a volume offers its users (cairn vol, NBD); Volume (volume.ts) implements it. */
export interface BlockVolume {
  readonly sizeBytes: number;
  readonly blockSizeBytes: number;
  readonly readonly: boolean;
  read(offset: number, length: number): Promise<Buffer>;
  /**
   * Reads target.length bytes at offset into target. Whole blocks the ARC does not hold go from the
   * device straight into target and are not cached: for a client that caches what it reads (NBD).
   */
  readInto(offset: number, target: Buffer): Promise<void>;
  write(offset: number, data: Buffer): Promise<void>;
  /** Durable on return (syncs the pool). */
  flush(): Promise<void>;
  trim(offset: number, length: number): Promise<void>;
  writeZeroes(offset: number, length: number, options: { punch: boolean }): Promise<void>;
}

export interface SnapshotHold {
  tag: string;
  createdMs: number;
}

class DsNode {
  id: number;
  name: string;
  phys: DatasetPhys;
  physDirty = false;
  os: ObjectSet | null = null;
  /** A filesystem head's file system (fs) or a volume head's block device (volume). */
  fs: Filesystem | null = null;
  volume: Volume | null = null;
  /** Blocks freed in the syncing txg that the previous snapshot still references. */
  pendingDead: BlockPointer[] = [];
  readonly children = new Map<string, number>();
  readonly snapshots = new Map<string, number>();
  readonly clones = new Set<number>();
  snapshotView: FileSystemApi | null = null;
  live: StoreGate;
  /** Locally set properties (the props kv), canonical values. */
  readonly props = new Map<string, PropertyValue>();
  /** Snapshots: user holds, tag → creation ms. */
  readonly holds = new Map<string, number>();
  /** Data written into the open txg and not yet synced (quota checks count it). */
  dirtyBytes = 0;
  /**
   * usedbysnapshots, kept in memory: bytes in this chain's dead lists born after the origin. Grows as
   * frees are dead-listed, recomputed from the dead lists after every structural change.
   */
  snapUsedBytes = 0;

  constructor(id: number, name: string, phys: DatasetPhys) {
    this.id = id;
    this.name = name;
    this.phys = phys;
    this.live = { live: true, readonly: false, name };
  }

  get isSnapshot(): boolean {
    return (this.phys.flags & FLAG_SNAPSHOT) !== 0;
  }

  get isVolume(): boolean {
    return (this.phys.flags & FLAG_VOLUME) !== 0;
  }

  get type(): DatasetType {
    return this.isSnapshot ? 'snapshot' : this.isVolume ? 'volume' : 'filesystem';
  }

  /** A canonical numeric property set locally (quota, refquota, reservation...), 0 when unset. */
  localNumber(name: string): number {
    const v = this.props.get(name);
    return typeof v === 'number' ? v : 0;
  }
}

const MUTATING = /^(set|create|mkdir|unlink|rmdir|rename|link|symlink|write|remove|truncate|fallocate|punch|utimens|chmod|chown)/i;

const STORE_MUTATORS: ReadonlySet<string> = new Set(['allocateObject', 'freeObject', 'write', 'modify', 'freeRange', 'setBonus']);

/** What the store of a head checks on every call; one per open object set of the head. */
interface StoreGate {
  /** Cleared when the object set is destroyed or rolled back. */
  live: boolean;
  /** The readonly property. */
  readonly: boolean;
  name: string;
}

/**
 * The store a head's file system uses: once the dataset is destroyed or rolled back, calls through an
 * old handle fail instead of changing an object set that will never be synced (or reading freed blocks).
 */
function liveStore(os: ObjectStore, token: StoreGate): ObjectStore {
  // One wrapper per method, made on first use: no allocation per call on the I/O path.
  const wrapped = new Map<string | symbol, unknown>();
  return new Proxy(os, {
    get(target, prop, receiver) {
      const v: unknown = Reflect.get(target, prop, receiver);
      if (typeof v !== 'function') return v;
      let w = wrapped.get(prop);
      if (w === undefined) {
        const fn = (v as (...a: unknown[]) => unknown).bind(target);
        const mutator = typeof prop === 'string' && STORE_MUTATORS.has(prop);
        w = (...args: unknown[]) => {
          if (!token.live) return Promise.reject(new CairnError('ENOENT', `dataset '${token.name}' was destroyed or rolled back; open it again`));
          if (mutator && token.readonly) return Promise.reject(new CairnError('EROFS', `dataset '${token.name}' is read-only (readonly=on)`));
          return fn(...args);
        };
        wrapped.set(prop, w);
      }
      return w;
    },
  }) as unknown as ObjectStore;
}

/** A snapshot's file system: reads pass through, every mutation fails with EROFS. */
function readOnlyView(fs: Filesystem, name: string): FileSystemApi {
  return new Proxy(fs, {
    get(target, prop, receiver) {
      const v: unknown = Reflect.get(target, prop, receiver);
      if (typeof v !== 'function') return v;
      if (typeof prop === 'string' && MUTATING.test(prop)) {
        return () => Promise.reject(new CairnError('EROFS', `snapshot '${name}' is read-only`));
      }
      return (v as (...a: unknown[]) => unknown).bind(target);
    },
  }) as unknown as FileSystemApi;
}

type KvField = 'childrenKv' | 'snapshotsKv' | 'clonesKv' | 'holdsKv';

/** zfs hold tags: any text but empty, up to 255 bytes. */
function validateHoldTag(tag: string): void {
  if (tag.length === 0) throw new CairnError('EINVAL', 'a hold tag cannot be empty');
  if (Buffer.byteLength(tag) > 255) throw new CairnError('ENAMETOOLONG', `hold tag is too long (${Buffer.byteLength(tag)} bytes, at most 255)`);
}

function randomGuid(): number {
  return Math.floor(Math.random() * 2 ** 53) || 1;
}

export class DatasetManager {
  private readonly host: DatasetHost;
  private readonly nodes = new Map<number, DsNode>();
  private readonly byName = new Map<string, number>();
  private rootNode!: DsNode;
  /** Dataset operations run one at a time (name checks stay true until their change lands). */
  private opTail: Promise<unknown> = Promise.resolve();
  /** The MOS without its gate hold: callers already hold the txg (a hold, or the syncing context). */
  private readonly mosStore: ObjectStore;

  private constructor(host: DatasetHost) {
    this.host = host;
    const mos = host.mos();
    this.mosStore = new Proxy(mos, {
      get(target, prop, receiver) {
        if (prop === 'hold') return <T>(fn: () => Promise<T>) => fn();
        const v: unknown = Reflect.get(target, prop, receiver);
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    }) as unknown as ObjectStore;
  }

  /** Pool creation: the root dataset object `id` exists (version 1 record); make its file system. */
  static async createRoot(host: DatasetHost, id: number, fsOwner: { uid: number; gid: number }): Promise<DatasetManager> {
    const m = new DatasetManager(host);
    const node = new DsNode(id, host.poolName, emptyPhys(1, holeBlockPointer()));
    node.physDirty = true;
    m.register(node);
    m.rootNode = node;
    node.os = ObjectSet.create(m.envFor(node), ObjsetType.filesystem, host.policy());
    node.phys.creationSec = Math.floor(Date.now() / 1000);
    node.phys.guid = randomGuid();
    node.fs = await Filesystem.create(liveStore(node.os, node.live), { ...fsOwner, statfs: () => m.statfsFor(node) });
    return m;
  }

  static async load(host: DatasetHost, rootId: number): Promise<DatasetManager> {
    const m = new DatasetManager(host);
    m.rootNode = await m.loadHead(rootId, host.poolName);
    for (const n of m.nodes.values()) if (!n.isSnapshot) await m.recountSnapUsed(n);
    m.applyPolicies();
    return m;
  }

  private async loadHead(id: number, name: string): Promise<DsNode> {
    const { phys, v1 } = decodeDatasetPhysAny(await this.mosStore.getBonus(id));
    const node = new DsNode(id, name, phys);
    this.register(node);
    if (phys.guid === 0) {
      phys.guid = randomGuid();
      node.physDirty = true;
    }
    await this.loadProps(node);
    node.os = await ObjectSet.open(this.envFor(node), phys.rootBp, this.policyFor(node));
    await this.openContents(node);
    if (v1) {
      // A version 1 record has no space figures: count them once (no snapshots, so all is unique).
      let bytes = 0;
      let compressedBytes = 0;
      let uncompressedBytes = 0;
      await node.os.traverse(async (bp) => {
        bytes += allocatedBytes(bp);
        compressedBytes += bp.psize;
        uncompressedBytes += bp.lsize;
      });
      phys.referencedBytes = phys.uniqueBytes = phys.writtenBytes = bytes;
      phys.compressedBytes = compressedBytes;
      phys.uncompressedBytes = uncompressedBytes;
      node.physDirty = true;
    }
    for (const [key, childId] of await this.kvEntries(phys.snapshotsKv)) {
      const snap = new DsNode(childId, `${name}@${key}`, decodeDatasetPhysAny(await this.mosStore.getBonus(childId)).phys);
      this.register(snap);
      await this.loadProps(snap);
      for (const [tag, ms] of await this.kvEntries(snap.phys.holdsKv)) snap.holds.set(tag, ms);
      node.snapshots.set(key, childId);
      for (const [cloneKey] of await this.kvEntries(snap.phys.clonesKv)) snap.clones.add(Number(cloneKey));
    }
    for (const [key, childId] of await this.kvEntries(phys.childrenKv)) {
      node.children.set(key, childId);
      await this.loadHead(childId, `${name}/${key}`);
    }
    return node;
  }

  /** Opens what a head's object set holds: its file system, or its volume. */
  private async openContents(node: DsNode): Promise<void> {
    const c = await this.contentsOf(node, node.os as ObjectSet, node.live);
    node.fs = c.fs;
    node.volume = c.volume;
  }

  private async contentsOf(node: DsNode, os: ObjectSet, live: StoreGate): Promise<{ fs: Filesystem | null; volume: Volume | null }> {
    const store = liveStore(os, live);
    if (node.isVolume) return { fs: null, volume: await Volume.open(store, { onFlush: () => this.host.sync() }) };
    return { fs: await Filesystem.open(store, { statfs: () => this.statfsFor(node) }), volume: null };
  }

  private async kvEntries(kvId: number): Promise<Array<[string, number]>> {
    if (kvId === 0) return [];
    const kv = openKv(this.mosStore, kvId);
    const out: Array<[string, number]> = [];
    let cursor: bigint | null = 0n;
    while (cursor !== null) {
      const page = await kv.list(cursor, 1024);
      for (const e of page.entries) out.push([e.key, Number(e.value.readBigUInt64LE(0))]);
      cursor = page.cursor;
    }
    return out;
  }

  private async kvSet(node: DsNode, field: KvField, key: string, value: number): Promise<void> {
    if (node.phys[field] === 0) {
      node.phys[field] = (await createKv(this.mosStore, ObjectType.kv)).objectId;
      node.physDirty = true;
    }
    await openKv(this.mosStore, node.phys[field]).set(key, u64(value));
  }

  private async kvDelete(node: DsNode, field: KvField, key: string): Promise<void> {
    if (node.phys[field] !== 0) await openKv(this.mosStore, node.phys[field]).delete(key);
  }

  private register(node: DsNode): void {
    this.nodes.set(node.id, node);
    this.byName.set(node.name, node.id);
  }

  private unregister(node: DsNode): void {
    this.nodes.delete(node.id);
    this.byName.delete(node.name);
  }

  private async writePhys(node: DsNode): Promise<void> {
    await this.mosStore.setBonus(node.id, encodeDatasetPhysV2(node.phys));
    node.physDirty = false;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.opTail.then(fn, fn);
    this.opTail = run.catch(() => undefined);
    return run;
  }

  // ---- the free rule -------------------------------------------------------------------------------

  private envFor(node: DsNode): ObjsetEnvironment {
    const base = this.host.env;
    return {
      readBlock: (bp) => base.readBlock(bp),
      ...(base.readBlockInto ? { readBlockInto: base.readBlockInto } : {}),
      // Only a block no snapshot (and so no clone) can reference may be changed in place: the free rule's test.
      takeBlock: async (bp) => (bp.birthTxg > node.phys.prevSnapshotTxg ? this.host.takeBlock(bp) : null),
      writeBlock: async (data, props, old) => {
        const bp = await base.writeBlock(data, props, old);
        if (old && !isHole(old) && sameLocation(old, bp)) this.account(node, old, -1);
        this.account(node, bp, 1);
        return bp;
      },
      freeBlock: (bp) => {
        if (isHole(bp)) return;
        this.account(node, bp, -1);
        if (bp.birthTxg > node.phys.prevSnapshotTxg) {
          base.freeBlock(bp);
        } else {
          node.pendingDead.push(bp);
          if (bp.birthTxg > this.originTxg(node)) node.snapUsedBytes += allocatedBytes(bp);
        }
      },
      hold: (fn) => base.hold(fn),
      dirtyBytesChanged: (d) => {
        node.dirtyBytes += d;
        base.dirtyBytesChanged(d);
      },
      objectDirtied: () => base.objectDirtied?.(),
      reserveSpace: (bytes, copies) => this.reserveSpace(node, bytes, copies),
    };
  }

  // ---- space: quotas and reservations at write time --------------------------------------------------

  /**
   * Before a write of `bytes` into node (OpenZFS dsl_dir_tempreserve_space): refquota against what the
   * dataset references, quota of it and every ancestor against what each uses (children, snapshots and
   * reservations included), then the pool with every unused reservation outside this dataset's line
   * held back. Dirty data counts as used, so a burst of writes cannot overshoot before a sync.
   */
  private reserveSpace(node: DsNode, bytes: number, copies: number): void {
    const charge = bytes * copies;
    const refquota = node.localNumber('refquota');
    if (refquota > 0 && node.phys.referencedBytes + node.dirtyBytes * copies + charge > refquota) {
      throw new CairnError('EDQUOT', `disk quota exceeded: refquota of '${node.name}' (${formatPropertyValue('refquota', refquota)})`);
    }
    // Each ancestor's used as it would be with the write: a child's growth inside its reservation, and
    // data filling a refreservation, are already counted there.
    const write = { node, bytes: charge };
    for (let a: DsNode | undefined = node; a; a = this.parentOf(a)) {
      const quota = a.localNumber('quota');
      if (quota > 0 && this.usedNow(a, true, write) > quota) {
        throw new CairnError('EDQUOT', `disk quota exceeded: quota of '${a.name}' (${formatPropertyValue('quota', quota)})`);
      }
    }
    this.host.reserveSpace(bytes, copies, this.reservedOutside(node));
  }

  private parentOf(node: DsNode): DsNode | undefined {
    return node.phys.parentDir === 0 ? undefined : this.nodes.get(node.phys.parentDir);
  }

  private childNodes(node: DsNode): DsNode[] {
    const out: DsNode[] = [];
    for (const id of node.children.values()) {
      const c = this.nodes.get(id);
      if (c) out.push(c);
    }
    return out;
  }

  /** The refreservation not yet filled by referenced data (usedbyrefreservation). */
  private unusedRefreservation(node: DsNode): number {
    return Math.max(0, node.localNumber('refreservation') - node.phys.referencedBytes);
  }

  /**
   * `used` of a head (zfs: usedbydataset + usedbysnapshots + usedbychildren + usedbyrefreservation);
   * withDirty adds the data not yet synced (and `write`, a write being checked), which first fills
   * the unused refreservation, as it will once synced.
   */
  private usedNow(node: DsNode, withDirty: boolean, write?: { node: DsNode; bytes: number }): number {
    const pending = (withDirty ? this.dirtyChargeBytes(node) : 0) + (write?.node === node ? write.bytes : 0);
    const unusedRefreservation = Math.max(0, this.unusedRefreservation(node) - pending);
    let used = node.phys.uniqueBytes + node.snapUsedBytes + unusedRefreservation + pending;
    for (const c of this.childNodes(node)) used += this.chargeToParent(c, withDirty, write);
    return used;
  }

  /** Dirty data as it will be allocated: once per copy (the bytes written are logical). */
  private dirtyChargeBytes(node: DsNode): number {
    return node.dirtyBytes * (node.os?.policy.copies ?? 1);
  }

  /** `used` without reservations: the bytes a head and its descendants actually hold (destroy frees them). */
  private writtenUsedNow(node: DsNode): number {
    let bytes = node.phys.uniqueBytes + node.snapUsedBytes;
    for (const c of this.childNodes(node)) bytes += this.writtenUsedNow(c);
    return bytes;
  }

  /** What a child takes from its parent: its use, or its reservation when larger. */
  private chargeToParent(node: DsNode, withDirty: boolean, write?: { node: DsNode; bytes: number }): number {
    return Math.max(this.usedNow(node, withDirty, write), node.localNumber('reservation'));
  }

  /** Unused reservations of every head outside node's line (its ancestors' and its own cover its writes). */
  private reservedOutside(node: DsNode): number {
    if (this.reservationCount() === 0) return 0;
    const line = new Set<number>();
    for (let a: DsNode | undefined = node; a; a = this.parentOf(a)) line.add(a.id);
    let held = 0;
    for (const n of this.nodes.values()) {
      if (n.isSnapshot || line.has(n.id)) continue;
      const reservation = n.localNumber('reservation');
      if (reservation > 0) held += Math.max(0, reservation - this.usedNow(n, true));
      held += this.unusedRefreservation(n);
    }
    return held;
  }

  private reservationCount(): number {
    let count = 0;
    for (const n of this.nodes.values()) if (n.localNumber('reservation') > 0 || n.localNumber('refreservation') > 0) count++;
    return count;
  }

  /** zfs `available`: pool space less reservations elsewhere, capped by quotas up the line and refquota. */
  private availableNow(node: DsNode): number {
    let avail = this.host.availableBytes() - this.reservedOutside(node) - this.unusedRefreservation(node);
    for (let a: DsNode | undefined = node; a; a = this.parentOf(a)) {
      const quota = a.localNumber('quota');
      if (quota > 0) avail = Math.min(avail, quota - this.usedNow(a, false));
    }
    const refquota = node.localNumber('refquota');
    if (refquota > 0) avail = Math.min(avail, refquota - node.phys.referencedBytes);
    return Math.max(0, avail + this.unusedRefreservation(node));
  }

  /** What df shows inside a dataset: its available space and what it references. */
  private statfsFor(node: DsNode): { totalBytes: number; freeBytes: number; availableBytes: number; files: number } {
    const pool = this.host.statfs();
    const avail = this.availableNow(node);
    return { totalBytes: node.phys.referencedBytes + avail, freeBytes: avail, availableBytes: avail, files: pool.files };
  }

  /** Recounts usedbysnapshots of a head from its chain's dead lists (after a structural change). */
  private async recountSnapUsed(node: DsNode): Promise<void> {
    const originTxg = this.originTxg(node);
    let bytes = 0;
    for (let n: DsNode | undefined = node; n; n = n.phys.prevSnapshot ? this.nodes.get(n.phys.prevSnapshot) : undefined) {
      if (n.phys.deadList !== 0) bytes += await deadListBytesBornAfter(this.mosStore, n.phys.deadList, originTxg);
    }
    for (const bp of node.pendingDead) if (bp.birthTxg > originTxg) bytes += allocatedBytes(bp);
    node.snapUsedBytes = bytes;
  }

  // ---- properties ------------------------------------------------------------------------------------

  /** The property chain of a dataset or snapshot, up to the pool's root dataset. */
  private layers(node: DsNode): PropertyLayer[] {
    const out: PropertyLayer[] = [];
    for (let n: DsNode | undefined = node; n; n = this.parentOf(n)) {
      const local: Record<string, PropertyValue> = Object.fromEntries(n.props);
      // A volume keeps its size and block size itself: they show as its own values.
      if (n.volume) Object.assign(local, { volsize: n.volume.sizeBytes, volblocksize: n.volume.blockSizeBytes });
      out.push({ name: n.name, local });
    }
    return out;
  }

  private resolved(node: DsNode): Map<string, ResolvedProperty> {
    const all = resolveProperties(this.layers(node), { type: node.type });
    // The pool's own checksum/compression/copies (zpool create -o) are this pool's defaults.
    const base = this.host.policy();
    const poolDefaults: Record<string, PropertyValue> = {
      checksum: base.checksum === ChecksumType.fletcher4 ? 'on' : (Object.keys(ChecksumType).find((k) => ChecksumType[k as keyof typeof ChecksumType] === base.checksum) ?? 'on'),
      compression: base.compression === CompressionType.lz4 ? 'on' : (Object.keys(CompressionType).find((k) => CompressionType[k as keyof typeof CompressionType] === base.compression) ?? 'on'),
      copies: base.copies,
    };
    for (const [name, value] of Object.entries(poolDefaults)) {
      const r = all.get(name);
      if (r && r.source === 'default') r.value = value;
    }
    return all;
  }

  /** The write policy of a head from its checksum, compression and copies properties. */
  private policyFor(node: DsNode, all = this.resolved(node)): WritePolicy {
    const base = this.host.policy();
    const checksumName = String(all.get('checksum')?.value ?? 'on');
    const compressionName = String(all.get('compression')?.value ?? 'on');
    const copies = Number(all.get('copies')?.value ?? base.copies);
    const checksum = checksumName === 'on' ? base.checksum : ChecksumType[checksumName as keyof typeof ChecksumType];
    const compression = compressionName === 'on' ? (base.compression === CompressionType.off ? CompressionType.lz4 : base.compression)
      : compressionName === 'off' ? CompressionType.off
        : compressionName.startsWith('zstd') ? CompressionType.zstd : CompressionType.lz4;
    assert(checksum !== undefined, `checksum '${checksumName}'`);
    return { checksum, compression, copies, metadataCopies: Math.min(3, copies + 1) };
  }

  /** Properties are inherited: after any change, every head's object set takes its policy anew. */
  private applyPolicies(): void {
    for (const n of this.nodes.values()) {
      if (!n.os) continue;
      const props = this.resolved(n);
      n.os.policy = this.policyFor(n, props);
      n.live.readonly = props.get('readonly')?.value === 'on';
      if (n.fs) {
        n.fs.recordSizeBytes = Number(props.get('recordsize')?.value ?? n.fs.recordSizeBytes);
        n.fs.atimeUpdates = props.get('atime')?.value !== 'off';
      }
    }
  }

  private async loadProps(node: DsNode): Promise<void> {
    node.props.clear();
    if (node.phys.propsKv === 0) return;
    const kv = openKv(this.mosStore, node.phys.propsKv);
    let cursor: bigint | null = 0n;
    while (cursor !== null) {
      const page = await kv.list(cursor, 1024);
      for (const e of page.entries) node.props.set(e.key, propertyDefinition(e.key).parse(e.value.toString('utf8')));
      cursor = page.cursor;
    }
  }

  /** Stores (value defined) or removes a local property, in the open txg (the caller holds it). */
  private async storeProp(node: DsNode, name: string, value: PropertyValue | undefined): Promise<void> {
    if (value === undefined) {
      if (node.phys.propsKv !== 0) await openKv(this.mosStore, node.phys.propsKv).delete(name);
      node.props.delete(name);
      return;
    }
    if (node.phys.propsKv === 0) {
      node.phys.propsKv = (await createKv(this.mosStore, ObjectType.kv)).objectId;
      await this.writePhys(node);
    }
    await openKv(this.mosStore, node.phys.propsKv).set(name, Buffer.from(formatPropertyValue(name, value, true), 'utf8'));
    node.props.set(name, value);
  }

  private originTxg(node: DsNode): number {
    if (node.phys.originSnapshot === 0) return 0;
    return this.nodes.get(node.phys.originSnapshot)?.phys.createTxg ?? 0;
  }

  private account(node: DsNode, bp: BlockPointer, sign: 1 | -1): void {
    const bytes = sign * allocatedBytes(bp);
    node.phys.referencedBytes += bytes;
    node.phys.compressedBytes += sign * bp.psize;
    node.phys.uncompressedBytes += sign * bp.lsize;
    if (bp.birthTxg > this.originTxg(node)) node.phys.uniqueBytes += bytes;
    if (bp.birthTxg > node.phys.prevSnapshotTxg) node.phys.writtenBytes += bytes;
    node.physDirty = true;
  }

  // ---- sync (called by the pool in the syncing txg, before the MOS passes) -------------------------

  get isDirty(): boolean {
    for (const n of this.nodes.values()) {
      if (n.physDirty || n.pendingDead.length > 0) return true;
      if (n.os && (n.os.isDirty || isHole(n.os.root))) return true;
    }
    return false;
  }

  async syncDirty(txg: number): Promise<void> {
    const heads = [...this.nodes.values()].filter((n) => n.os !== null).sort((a, b) => a.id - b.id);
    for (const node of heads) {
      const os = node.os as ObjectSet;
      if (os.isDirty || isHole(os.root)) {
        node.phys.rootBp = await os.sync(txg);
        node.physDirty = true;
      }
      if (node.pendingDead.length > 0) {
        const entries = node.pendingDead;
        node.pendingDead = [];
        if (node.phys.deadList === 0) node.phys.deadList = await createDeadList(this.mosStore);
        await appendDeadList(this.mosStore, node.phys.deadList, entries);
        node.physDirty = true;
      }
      if (node.physDirty) await this.writePhys(node);
    }
  }

  /**
   * Every synced tree with the txg at or below which its blocks belong to an older snapshot (or the
   * origin): walking each pruned there visits every block reachable from heads and snapshots once.
   */
  traversalRoots(): Array<{ name: string; rootBp: BlockPointer; minBirthTxg: number }> {
    return [...this.nodes.values()].sort((a, b) => a.id - b.id)
      .map((n) => ({ name: n.name, rootBp: n.os ? n.os.root : n.phys.rootBp, minBirthTxg: n.phys.prevSnapshotTxg }));
  }

  async traverseAll(visit: (bp: BlockPointer) => Promise<void>): Promise<void> {
    const walker = this.rootNode.os as ObjectSet;
    for (const r of this.traversalRoots()) await walker.traverse(visit, r.rootBp, r.minBirthTxg);
  }

  // ---- queries -------------------------------------------------------------------------------------

  get root(): { objset: ObjectSet; fs: Filesystem } {
    return { objset: this.rootNode.os as ObjectSet, fs: this.rootNode.fs as Filesystem };
  }

  private node(name: string): DsNode {
    const id = this.byName.get(name);
    const node = id === undefined ? undefined : this.nodes.get(id);
    if (!node) throw new CairnError('ENOENT', `dataset does not exist: '${name}'`);
    return node;
  }

  exists(name: string): boolean {
    return this.byName.has(name);
  }

  list(): DatasetListEntry[] {
    return [...this.nodes.values()].map((n): DatasetListEntry => ({ name: n.name, type: n.type, createTxg: n.phys.createTxg }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** The file system of a dataset, or a read-only view of a snapshot's. */
  async open(name: string): Promise<FileSystemApi> {
    const node = this.node(name);
    if (node.isVolume) throw new CairnError('EINVAL', `'${name}' is a volume, not a filesystem`);
    if (!node.isSnapshot) return node.fs as Filesystem;
    if (!node.snapshotView) {
      const { store, seal } = await this.snapshotStore(node);
      const fs = await Filesystem.open(store, { statfs: () => this.host.statfs() });
      seal();
      node.snapshotView = readOnlyView(fs, name);
    }
    return node.snapshotView;
  }

  /**
   * A snapshot's object set, never synced: its in-memory changes (only what opening does, such as the
   * unlinked-set drain) count as no dirty data. Once sealed, store mutations fail with EROFS, which the
   * file system's atime update (relatime) ignores, so reading a snapshot changes nothing.
   */
  private async snapshotStore(node: DsNode): Promise<{ store: ObjectStore; seal: () => void; objset: ObjectSet }> {
    const name = node.name;
    const ro: ObjsetEnvironment = {
      ...this.host.env,
      writeBlock: () => Promise.reject(new CairnError('EROFS', `snapshot '${name}' is read-only`)),
      freeBlock: () => assert(false, `free in snapshot '${name}'`),
      dirtyBytesChanged: () => undefined,
    };
    const os = await ObjectSet.open(ro, node.phys.rootBp, this.host.policy());
    let sealed = false;
    const store = new Proxy(os, {
      get(target, prop, receiver) {
        const v: unknown = Reflect.get(target, prop, receiver);
        if (typeof v !== 'function') return v;
        if (sealed && typeof prop === 'string' && STORE_MUTATORS.has(prop)) {
          return () => Promise.reject(new CairnError('EROFS', `snapshot '${name}' is read-only`));
        }
        return (v as (...a: unknown[]) => unknown).bind(target);
      },
    }) as unknown as ObjectStore;
    return { store: liveStore(store, node.live), seal: () => { sealed = true; }, objset: os };
  }

  /**
   * zfs diff SNAP [SNAP|FS]: what changed from a snapshot to a later snapshot of the same dataset, to
   * the dataset itself (the default), or to a clone of the snapshot. Cost follows what changed.
   */
  async *diff(fromName: string, toName?: string): AsyncGenerator<DiffEntry> {
    const from = this.node(fromName);
    if (!from.isSnapshot) throw new CairnError('EINVAL', `'${fromName}' is not a snapshot`);
    if (from.isVolume) throw new CairnError('EINVAL', `'${fromName}' is a volume snapshot; diff compares filesystems`);
    const head = this.nodes.get(from.phys.parentDir) as DsNode;
    const to = this.node(toName ?? head.name);
    const laterSnapshot = to.isSnapshot && to.phys.parentDir === head.id && to.phys.createTxg > from.phys.createTxg;
    if (!(to === head || laterSnapshot || to.phys.originSnapshot === from.id)) {
      throw new CairnError('EINVAL', `cannot diff '${fromName}' to '${to.name}': not a later snapshot of the same dataset, the dataset, or a clone of it`);
    }
    const fromSide = { fs: await this.open(from.name), objset: (await this.snapshotStore(from)).objset, txg: from.phys.createTxg };
    const toSide = to.isSnapshot
      ? { fs: await this.open(to.name), objset: (await this.snapshotStore(to)).objset }
      : { fs: to.fs as Filesystem, objset: to.os as ObjectSet };
    yield* diffFilesystems(fromSide, toSide);
  }

  /** A volume's block device; a snapshot of a volume gives a read-only one. */
  async openVolume(name: string): Promise<BlockVolume> {
    const node = this.node(name);
    if (!node.isVolume) throw new CairnError('EINVAL', `'${name}' is not a volume`);
    let volume: Volume;
    if (node.isSnapshot) {
      const { store, seal } = await this.snapshotStore(node);
      volume = await Volume.open(store);
      seal();
    } else {
      volume = node.volume as Volume;
    }
    const readonly = node.isSnapshot || this.resolved(node).get('readonly')?.value === 'on';
    const refuse = (): Promise<never> => Promise.reject(new CairnError('EROFS', `volume '${name}' is read-only`));
    return {
      get sizeBytes() { return volume.sizeBytes; },
      blockSizeBytes: volume.blockSizeBytes,
      readonly,
      read: (offset, length) => volume.read(offset, length),
      readInto: (offset, target) => volume.readInto(offset, target),
      write: (offset, data) => (readonly ? refuse() : volume.write(offset, data)),
      flush: () => (readonly ? Promise.resolve() : volume.flush()),
      trim: (offset, length) => (readonly ? refuse() : volume.trim(offset, length)),
      writeZeroes: (offset, length, options) => (readonly ? refuse() : volume.writeZeroes(offset, length, options)),
    };
  }

  /** Space figures counted from the dead lists (exact; the in-memory figures must agree with them). */
  async space(name: string): Promise<DatasetSpace> {
    const node = this.node(name);
    const mos = this.mosStore;
    if (node.isSnapshot) {
      const next = this.nodes.get(node.phys.nextSnapshot);
      assert(next !== undefined, 'snapshot without a next dataset');
      const used = next.phys.deadList === 0 ? 0 : await deadListBytesBornAfter(mos, next.phys.deadList, node.phys.prevSnapshotTxg);
      return { referencedBytes: node.phys.referencedBytes, usedBytes: used, usedBySnapshotsBytes: 0, usedByChildrenBytes: 0, usedByRefreservationBytes: 0, writtenBytes: node.phys.writtenBytes };
    }
    const originTxg = this.originTxg(node);
    let bySnapshots = 0;
    for (let n: DsNode | undefined = node; n; n = n.phys.prevSnapshot ? this.nodes.get(n.phys.prevSnapshot) : undefined) {
      if (n.phys.deadList !== 0) bySnapshots += await deadListBytesBornAfter(mos, n.phys.deadList, originTxg);
    }
    let byChildren = 0;
    for (const child of this.childNodes(node)) byChildren += Math.max((await this.space(child.name)).usedBytes, child.localNumber('reservation'));
    const byRefreservation = this.unusedRefreservation(node);
    return {
      referencedBytes: node.phys.referencedBytes,
      usedBytes: node.phys.uniqueBytes + bySnapshots + byChildren + byRefreservation,
      usedBySnapshotsBytes: bySnapshots,
      usedByChildrenBytes: byChildren,
      usedByRefreservationBytes: byRefreservation,
      writtenBytes: node.phys.writtenBytes,
    };
  }

  // ---- create --------------------------------------------------------------------------------------

  create(name: string, options: CreateDatasetOptions = {}): Promise<void> {
    return this.serial(() => this.createNow(name, options));
  }

  /** Checks `-o` properties for a new dataset of this type before anything is made. */
  private parseCreateProps(type: DatasetType, texts: Record<string, string> | undefined): Map<string, PropertyValue> {
    const out = new Map<string, PropertyValue>();
    for (const [key, text] of Object.entries(texts ?? {})) {
      const { name, value } = parsePropertyValue(key, text, { type, creating: true });
      if (name === 'volsize') throw new CairnError('EINVAL', `use -V to give a volume's size`);
      out.set(name, value);
    }
    return out;
  }

  private async createNow(name: string, options: CreateDatasetOptions): Promise<void> {
    validateDatasetName(name);
    const isVolume = options.volsizeBytes !== undefined;
    const type: DatasetType = isVolume ? 'volume' : 'filesystem';
    if (this.byName.has(name)) throw new CairnError('EEXIST', `dataset already exists: '${name}'`);
    const parentName = parentOf(name);
    if (parentName === undefined || !name.startsWith(`${this.host.poolName}/`)) {
      throw new CairnError('EINVAL', `'${name}' is not a dataset of pool '${this.host.poolName}'`);
    }
    const props = this.parseCreateProps(type, options.properties);
    if (options.sparse === true && !isVolume) throw new CairnError('EINVAL', `-s (sparse) applies only to volumes (-V)`);
    let volblocksize = 0;
    if (isVolume) {
      volblocksize = Number(props.get('volblocksize') ?? propertyDefinition('volblocksize').defaultValue);
      validateVolsize(options.volsizeBytes ?? 0, volblocksize);
      props.delete('volblocksize'); // the volume keeps its size and block size itself
      if (options.sparse !== true && !props.has('refreservation')) props.set('refreservation', options.volsizeBytes ?? 0);
    }
    if (!this.byName.has(parentName)) {
      if (options.parents !== true) throw new CairnError('ENOENT', `parent does not exist: '${parentName}' (use -p to create parents)`);
      await this.createNow(parentName, { parents: true });
    }
    const parent = this.node(parentName);
    if (parent.isVolume) throw new CairnError('EINVAL', `cannot create '${name}': parent '${parentName}' is a volume, not a filesystem`);
    const node = new DsNode(0, name, emptyPhys(0, holeBlockPointer()));
    node.phys.flags = isVolume ? FLAG_VOLUME : 0;
    node.phys.parentDir = parent.id;
    for (const [k, v] of props) node.props.set(k, v);
    const reservation = Math.max(node.localNumber('reservation'), node.localNumber('refreservation'));
    if (reservation > 0 && reservation > this.availableNow(parent)) {
      throw new CairnError('ENOSPC', `cannot create '${name}': out of space (reservation of ${formatPropertyValue('reservation', reservation)} is more than the ${formatPropertyValue('available', this.availableNow(parent))} available)`);
    }
    node.os = ObjectSet.create(this.envFor(node), isVolume ? ObjsetType.volume : ObjsetType.filesystem, this.policyFor(node));
    const store = liveStore(node.os, node.live);
    if (isVolume) {
      node.volume = await Volume.create(store, { volsizeBytes: options.volsizeBytes ?? 0, volblocksizeBytes: volblocksize, onFlush: () => this.host.sync() });
    } else {
      const recordSizeBytes = Number(this.resolved(node).get('recordsize')?.value ?? 128 * 1024);
      node.fs = await Filesystem.create(store, { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, recordSizeBytes, statfs: () => this.statfsFor(node) });
    }
    await this.host.hold(async () => {
      node.id = await this.mosStore.allocateObject(ObjectType.dataset, { blockSizeBytes: 512 });
      node.phys.createTxg = this.host.openTxg();
      node.phys.creationSec = Math.floor(Date.now() / 1000);
      node.phys.guid = randomGuid();
      await this.writePhys(node);
      for (const [k, v] of props) await this.storeProp(node, k, v);
      await this.kvSet(parent, 'childrenKv', name.slice(parentName.length + 1), node.id);
      if (parent.physDirty) await this.writePhys(parent);
      await this.writePhys(node);
      node.physDirty = true; // the root pointer comes at sync
      parent.children.set(name.slice(parentName.length + 1), node.id);
      this.register(node);
    });
    this.applyPolicies();
  }

  // ---- snapshot ------------------------------------------------------------------------------------

  snapshot(name: string): Promise<void> {
    return this.snapshotMany([name]).then(() => undefined);
  }

  /**
   * zfs snapshot [-r] a@s b@t ...: every snapshot (with -r, also the same-named snapshot of every
   * descendant) is made in one txg, so they are consistent with each other. Returns the names made.
   */
  snapshotMany(names: string[], options: { recursive?: boolean } = {}): Promise<string[]> {
    return this.serial(async () => {
      if (names.length === 0) throw new CairnError('EINVAL', 'no snapshot named');
      const wanted: Array<{ head: DsNode; short: string; full: string }> = [];
      for (const name of names) {
        validateDatasetName(name, { allowSnapshot: 'only' });
        const at = name.indexOf('@');
        const short = name.slice(at + 1);
        validateSnapshotName(short);
        const top = this.node(name.slice(0, at));
        if (top.isSnapshot) throw new CairnError('EINVAL', `'${name}' is not a snapshot name`);
        const heads = options.recursive === true ? this.subtree(top) : [top];
        for (const head of heads) wanted.push({ head, short, full: `${head.name}@${short}` });
      }
      const seen = new Set<string>();
      for (const w of wanted) {
        if (seen.has(w.full)) throw new CairnError('EINVAL', `snapshot '${w.full}' named twice`);
        seen.add(w.full);
      }
      await this.host.syncTask(async () => {
        const existing = wanted.filter((w) => this.byName.has(w.full)).map((w) => w.full);
        if (existing.length > 0) throw new CairnError('EEXIST', `snapshot already exists: ${existing.map((n) => `'${n}'`).join(', ')}`);
        const gone = wanted.filter((w) => !this.nodes.has(w.head.id)).map((w) => w.head.name);
        if (gone.length > 0) throw new CairnError('ENOENT', `dataset does not exist: '${gone[0]}'`);
      }, async (txg) => {
        for (const w of wanted) await this.snapshotInTxg(w.head, w.short, txg);
      });
      return wanted.map((w) => w.full);
    });
  }

  /** O(1): a saved root pointer and the dead list handed over; no tree is read. */
  private async snapshotInTxg(head: DsNode, short: string, txg: number): Promise<void> {
    const id = await this.mosStore.allocateObject(ObjectType.dataset, { blockSizeBytes: 512 });
    const phys: DatasetPhys = {
      ...head.phys, createTxg: txg, parentDir: head.id, nextSnapshot: head.id, flags: FLAG_SNAPSHOT | (head.phys.flags & FLAG_VOLUME),
      childrenKv: 0, snapshotsKv: 0, clonesKv: 0, propsKv: 0, holdsKv: 0, creationSec: Math.floor(Date.now() / 1000), guid: randomGuid(),
    };
    const snap = new DsNode(id, `${head.name}@${short}`, phys);
    const prev = head.phys.prevSnapshot ? this.nodes.get(head.phys.prevSnapshot) : undefined;
    if (prev) {
      prev.phys.nextSnapshot = id;
      await this.writePhys(prev);
    }
    head.phys.prevSnapshot = id;
    head.phys.prevSnapshotTxg = txg;
    head.phys.deadList = 0;
    head.phys.writtenBytes = 0;
    await this.kvSet(head, 'snapshotsKv', short, id);
    await this.writePhys(snap);
    await this.writePhys(head);
    head.snapshots.set(short, id);
    this.register(snap);
  }

  /** A head and every head below it, parents first. */
  private subtree(node: DsNode): DsNode[] {
    const out = [node];
    for (let i = 0; i < out.length; i++) out.push(...this.childNodes(out[i] as DsNode));
    return out;
  }

  // ---- clone ---------------------------------------------------------------------------------------

  clone(snapshotName: string, name: string, options: { parents?: boolean; properties?: Record<string, string> } = {}): Promise<void> {
    return this.serial(async () => {
      const snap = this.node(snapshotName);
      if (!snap.isSnapshot) throw new CairnError('EINVAL', `'${snapshotName}' is not a snapshot`);
      validateDatasetName(name);
      const parentName = parentOf(name);
      if (parentName === undefined || !name.startsWith(`${this.host.poolName}/`)) throw new CairnError('EINVAL', `'${name}' is not a dataset of pool '${this.host.poolName}'`);
      if (this.byName.has(name)) throw new CairnError('EEXIST', `dataset already exists: '${name}'`);
      const props = this.parseCreateProps(snap.isVolume ? 'volume' : 'filesystem', options.properties);
      if (!this.byName.has(parentName)) {
        if (options.parents !== true) throw new CairnError('ENOENT', `parent does not exist: '${parentName}' (use -p to create parents)`);
        await this.createNow(parentName, { parents: true });
      }
      const parent = this.node(parentName);
      if (parent.isVolume) throw new CairnError('EINVAL', `cannot create '${name}': parent '${parentName}' is a volume, not a filesystem`);
      const node = new DsNode(0, name, {
        ...snap.phys, parentDir: parent.id, prevSnapshot: 0, prevSnapshotTxg: snap.phys.createTxg, nextSnapshot: 0, deadList: 0,
        originSnapshot: snap.id, flags: snap.phys.flags & FLAG_VOLUME, childrenKv: 0, snapshotsKv: 0, clonesKv: 0, propsKv: 0, holdsKv: 0,
        writtenBytes: 0, uniqueBytes: 0, creationSec: Math.floor(Date.now() / 1000), guid: randomGuid(),
      });
      for (const [k, v] of props) node.props.set(k, v);
      node.os = await ObjectSet.open(this.envFor(node), snap.phys.rootBp, this.policyFor(node));
      await this.openContents(node);
      await this.host.syncTask(async () => {
        if (this.byName.has(name)) throw new CairnError('EEXIST', `dataset already exists: '${name}'`);
        if (!this.nodes.has(snap.id)) throw new CairnError('ENOENT', `dataset does not exist: '${snapshotName}'`);
      }, async (txg) => {
        node.id = await this.mosStore.allocateObject(ObjectType.dataset, { blockSizeBytes: 512 });
        node.phys.createTxg = txg;
        await this.writePhys(node);
        for (const [k, v] of props) await this.storeProp(node, k, v);
        const key = name.slice(parentName.length + 1);
        await this.kvSet(parent, 'childrenKv', key, node.id);
        await this.kvSet(snap, 'clonesKv', String(node.id), 0);
        await this.writePhys(parent);
        await this.writePhys(snap);
        await this.writePhys(node);
        parent.children.set(key, node.id);
        snap.clones.add(node.id);
        this.register(node);
      });
      this.applyPolicies();
    });
  }

  // ---- rollback ------------------------------------------------------------------------------------

  rollback(snapshotName: string): Promise<void> {
    return this.serial(async () => {
      const snap = this.node(snapshotName);
      if (!snap.isSnapshot) throw new CairnError('EINVAL', `'${snapshotName}' is not a snapshot`);
      const head = this.nodes.get(snap.phys.parentDir);
      assert(head !== undefined, 'snapshot without a head');
      const newer = () => [...head.snapshots.values()].map((id) => this.nodes.get(id)).filter((n): n is DsNode => n !== undefined && n.phys.createTxg > snap.phys.createTxg);
      if (newer().length > 0) {
        throw new CairnError('EEXIST', `cannot rollback to '${snapshotName}': more recent snapshots exist: ${newer().map((n) => n.name).join(', ')}`);
      }
      const os = await ObjectSet.open(this.envFor(head), snap.phys.rootBp, this.policyFor(head));
      const live: StoreGate = { ...head.live, live: true };
      const contents = await this.contentsOf(head, os, live);
      await this.host.syncTask(async () => {
        if (newer().length > 0 || !this.nodes.has(snap.id)) throw new CairnError('EBUSY', `snapshots of '${head.name}' changed; retry the rollback`);
      }, async () => {
        // Free what the head wrote since the snapshot: a walk pruned at the snapshot's txg.
        const current = (head.os as ObjectSet).root;
        let freedBytes = 0;
        await os.traverse(async (bp) => {
          freedBytes += allocatedBytes(bp);
          this.host.env.freeBlock(bp);
        }, current, snap.phys.createTxg);
        // Dead-listed blocks are the snapshot's, live again in the head. usedbydataset follows from the
        // head's own figure, not the snapshot's: a promote since may have moved the origin (and with it
        // which blocks are the head's own), which the snapshot's recorded figure does not know.
        const revivedBytes = head.phys.deadList === 0 ? 0 : await deadListBytesBornAfter(this.mosStore, head.phys.deadList, this.originTxg(head));
        if (head.phys.deadList !== 0) await freeDeadList(this.mosStore, head.phys.deadList);
        head.pendingDead = [];
        Object.assign(head.phys, {
          rootBp: snap.phys.rootBp, deadList: 0, referencedBytes: snap.phys.referencedBytes, uniqueBytes: head.phys.uniqueBytes - freedBytes + revivedBytes,
          compressedBytes: snap.phys.compressedBytes, uncompressedBytes: snap.phys.uncompressedBytes, writtenBytes: 0,
        });
        head.live.live = false;
        head.live = live;
        head.os = os;
        head.fs = contents.fs;
        head.volume = contents.volume;
        await this.writePhys(head);
        await this.recountSnapUsed(head);
      });
    });
  }

  // ---- destroy -------------------------------------------------------------------------------------

  /** Destroys a snapshot, or a dataset with no children, snapshots or clones. */
  destroy(name: string): Promise<void> {
    return this.serial(async () => {
      const node = this.node(name);
      if (node.isSnapshot) return this.destroySnapshotNow(node);
      return this.destroyHeadNow(node);
    });
  }

  destroySnapshot(name: string): Promise<void> {
    return this.destroy(name);
  }

  private async destroySnapshotNow(snap: DsNode): Promise<void> {
    const check = async (): Promise<void> => {
      if (snap.clones.size > 0) {
        const names = [...snap.clones].map((id) => this.nodes.get(id)?.name ?? `#${id}`);
        throw new CairnError('EBUSY', `cannot destroy '${snap.name}': snapshot has dependent clones: ${names.join(', ')} (use -R to destroy them too)`);
      }
      if (snap.holds.size > 0) {
        throw new CairnError('EBUSY', `cannot destroy '${snap.name}': snapshot is held by: ${[...snap.holds.keys()].join(', ')} (cairn release TAG ${snap.name})`);
      }
    };
    await check();
    await this.host.syncTask(check, async () => {
      const head = this.nodes.get(snap.phys.parentDir);
      const next = this.nodes.get(snap.phys.nextSnapshot);
      assert(head !== undefined && next !== undefined, 'snapshot chain');
      const prev = snap.phys.prevSnapshot ? this.nodes.get(snap.phys.prevSnapshot) : undefined;
      const mos = this.mosStore;
      // Next's dead list: entries born after the snapshot's previous one were referenced only by it.
      let freedBytes = 0;
      let merged = 0;
      if (next.phys.deadList !== 0 || snap.phys.deadList !== 0) {
        merged = await createDeadList(mos);
        if (next.phys.deadList !== 0) {
          for await (const chunk of deadListChunks(mos, next.phys.deadList)) {
            const kept: BlockPointer[] = [];
            for (const bp of chunk) {
              if (bp.birthTxg > snap.phys.prevSnapshotTxg) {
                freedBytes += allocatedBytes(bp);
                this.host.env.freeBlock(bp);
              } else {
                kept.push(bp);
              }
            }
            await appendDeadList(mos, merged, kept);
          }
          await freeDeadList(mos, next.phys.deadList);
        }
        if (snap.phys.deadList !== 0) {
          for await (const chunk of deadListChunks(mos, snap.phys.deadList)) await appendDeadList(mos, merged, chunk);
          await freeDeadList(mos, snap.phys.deadList);
        }
      }
      next.phys.deadList = merged;
      next.phys.prevSnapshot = snap.phys.prevSnapshot;
      next.phys.prevSnapshotTxg = snap.phys.prevSnapshotTxg;
      // Blocks the snapshot wrote that next still references now count as next's.
      next.phys.writtenBytes += snap.phys.writtenBytes - freedBytes;
      await this.writePhys(next);
      if (prev) {
        prev.phys.nextSnapshot = next.id;
        await this.writePhys(prev);
      }
      const short = snap.name.slice(snap.name.indexOf('@') + 1);
      await this.kvDelete(head, 'snapshotsKv', short);
      for (const kv of [snap.phys.clonesKv, snap.phys.propsKv, snap.phys.holdsKv]) if (kv !== 0) await mos.freeObject(kv);
      await mos.freeObject(snap.id);
      head.snapshots.delete(short);
      snap.live.live = false;
      this.unregister(snap);
      await this.recountSnapUsed(head);
    });
  }

  private async destroyHeadNow(node: DsNode): Promise<void> {
    if (node === this.rootNode) throw new CairnError('EINVAL', `cannot destroy the root dataset '${node.name}' (destroy the pool)`);
    const check = async (): Promise<void> => {
      const children = [...node.children.values()].map((id) => this.nodes.get(id)?.name ?? `#${id}`);
      if (children.length > 0) throw new CairnError('EBUSY', `cannot destroy '${node.name}': dataset has children: ${children.join(', ')} (use -r to destroy them too)`);
      const snaps = [...node.snapshots.values()].map((id) => this.nodes.get(id)?.name ?? `#${id}`);
      if (snaps.length > 0) throw new CairnError('EBUSY', `cannot destroy '${node.name}': dataset has snapshots: ${snaps.join(', ')} (use -r to destroy them too)`);
    };
    await check();
    await this.host.syncTask(check, async () => {
      const mos = this.mosStore;
      const os = node.os as ObjectSet;
      // Without snapshots, everything born after the origin (all of it when not a clone) is its own.
      await os.traverse(async (bp) => this.host.env.freeBlock(bp), os.root, node.phys.prevSnapshotTxg);
      if (node.phys.deadList !== 0) await freeDeadList(mos, node.phys.deadList);
      for (const kv of [node.phys.childrenKv, node.phys.snapshotsKv, node.phys.propsKv]) if (kv !== 0) await mos.freeObject(kv);
      const origin = node.phys.originSnapshot ? this.nodes.get(node.phys.originSnapshot) : undefined;
      if (origin) {
        await this.kvDelete(origin, 'clonesKv', String(node.id));
        origin.clones.delete(node.id);
      }
      const parent = this.nodes.get(node.phys.parentDir);
      assert(parent !== undefined, 'dataset without a parent');
      const key = node.name.slice(parent.name.length + 1);
      await this.kvDelete(parent, 'childrenKv', key);
      parent.children.delete(key);
      await mos.freeObject(node.id);
      node.live.live = false;
      node.os = null;
      node.fs = null;
      node.pendingDead = [];
      this.unregister(node);
    });
  }

  // ---- properties: get, set, inherit -------------------------------------------------------------

  /** The read-only figures of `zfs get` (used, available, ...) for one dataset or snapshot. */
  private stats(node: DsNode): Record<string, PropertyValue> {
    const ratio = (c: number, u: number): number => (c > 0 ? Math.round((u / c) * 100) / 100 : 1);
    const out: Record<string, PropertyValue> = {
      creation: node.phys.creationSec,
      createtxg: node.phys.createTxg,
      guid: node.phys.guid,
      referenced: node.phys.referencedBytes,
      logicalreferenced: node.phys.uncompressedBytes,
      written: node.phys.writtenBytes,
      refcompressratio: ratio(node.phys.compressedBytes, node.phys.uncompressedBytes),
      compressratio: ratio(node.phys.compressedBytes, node.phys.uncompressedBytes),
    };
    if (node.isSnapshot) {
      out['used'] = this.snapshotUsedCached(node);
      out['logicalused'] = node.phys.uncompressedBytes;
      out['clones'] = [...node.clones].map((id) => this.nodes.get(id)?.name ?? '').filter((n) => n !== '').sort().join(',');
      return out;
    }
    const byChildren = this.childNodes(node).reduce((sum, c) => sum + this.chargeToParent(c, false), 0);
    let logicalUsed = node.phys.uncompressedBytes;
    for (const c of this.subtree(node).slice(1)) logicalUsed += c.phys.uncompressedBytes;
    Object.assign(out, {
      used: this.usedNow(node, false),
      available: this.availableNow(node),
      usedbydataset: node.phys.uniqueBytes,
      usedbysnapshots: node.snapUsedBytes,
      usedbychildren: byChildren,
      usedbyrefreservation: this.unusedRefreservation(node),
      logicalused: logicalUsed,
      origin: node.phys.originSnapshot ? (this.nodes.get(node.phys.originSnapshot)?.name ?? '-') : '-',
    });
    return out;
  }

  /** A snapshot's `used` is a dead-list sum, counted once per change of its chain and kept here. */
  private readonly snapshotUsed = new Map<number, { key: string; bytes: number }>();

  private snapshotUsedCached(node: DsNode): number {
    return this.snapshotUsed.get(node.id)?.bytes ?? 0;
  }

  private async refreshSnapshotUsed(node: DsNode): Promise<void> {
    const next = this.nodes.get(node.phys.nextSnapshot);
    if (!next) return;
    const key = `${next.phys.deadList}:${node.phys.prevSnapshotTxg}:${next.phys.deadList === 0 ? 0 : (await deadListTotals(this.mosStore, next.phys.deadList)).count}`;
    if (this.snapshotUsed.get(node.id)?.key === key) return;
    const bytes = next.phys.deadList === 0 ? 0 : await deadListBytesBornAfter(this.mosStore, next.phys.deadList, node.phys.prevSnapshotTxg);
    this.snapshotUsed.set(node.id, { key, bytes });
  }

  /** zfs get: every property (names undefined) or the named ones, in table order then user properties. */
  async getProperties(name: string, names?: string[]): Promise<ResolvedProperty[]> {
    const node = this.node(name);
    if (node.isSnapshot) await this.refreshSnapshotUsed(node);
    const all = resolveProperties(this.layers(node), { type: node.type, stats: this.stats(node) });
    for (const [k, r] of this.resolved(node)) if (all.has(k) && r.source !== '-') all.set(k, r);
    const volblocksize = all.get('volblocksize');
    if (volblocksize && volblocksize.value === propertyDefinition('volblocksize').defaultValue) volblocksize.source = 'default';
    if (names === undefined) return [...all.values()];
    const out: ResolvedProperty[] = [];
    for (const wanted of names) {
      const definition = propertyDefinition(wanted);
      const found = all.get(definition.name);
      if (found) out.push(found);
      else if (!isNativeProperty(wanted)) out.push({ name: wanted, value: '-', source: '-' });
    }
    return out;
  }

  /** zfs set name=value (value as typed); checked against space and type before it lands. */
  setProperty(name: string, property: string, text: string): Promise<void> {
    return this.serial(async () => {
      const node = this.node(name);
      const { name: prop, value } = parsePropertyValue(property, text, { type: node.type });
      if (node.isSnapshot && isNativeProperty(prop)) throw new CairnError('EINVAL', `property '${prop}' cannot be set on snapshots`);
      if (prop === 'volsize') return this.setVolsize(node, Number(value));
      await this.checkSpaceProperty(node, prop, value);
      await this.host.hold(async () => {
        await this.storeProp(node, prop, prop === 'quota' || prop === 'refquota' || prop === 'reservation' || prop === 'refreservation' ? (value === 0 ? undefined : value) : value);
        if (node.physDirty) await this.writePhys(node);
      });
      this.applyPolicies();
    });
  }

  /** quota below what is used, or a reservation larger than what is available, is refused as zfs does. */
  private async checkSpaceProperty(node: DsNode, prop: string, value: PropertyValue): Promise<void> {
    const bytes = typeof value === 'number' ? value : 0;
    if (bytes === 0) return;
    const size = (b: number): string => formatPropertyValue('used', b);
    if (prop === 'quota' && bytes < Math.max(this.usedNow(node, true), node.localNumber('reservation'))) {
      throw new CairnError('EINVAL', `cannot set quota of '${node.name}' to ${size(bytes)}: less than what it uses or reserves (${size(this.usedNow(node, true))})`);
    }
    if (prop === 'refquota' && bytes < node.phys.referencedBytes) {
      throw new CairnError('EINVAL', `cannot set refquota of '${node.name}' to ${size(bytes)}: less than what it references (${size(node.phys.referencedBytes)})`);
    }
    if (prop === 'reservation' || prop === 'refreservation') {
      const quota = node.localNumber('quota');
      if (prop === 'reservation' && quota > 0 && bytes > quota) throw new CairnError('EINVAL', `cannot set reservation of '${node.name}': larger than its quota`);
      const current = prop === 'reservation' ? Math.max(0, node.localNumber('reservation') - this.usedNow(node, true)) : this.unusedRefreservation(node);
      const extra = prop === 'reservation' ? Math.max(0, bytes - this.usedNow(node, true)) - current : Math.max(0, bytes - node.phys.referencedBytes) - current;
      const parent = this.parentOf(node);
      const avail = parent ? this.availableNow(parent) : this.host.availableBytes() - this.reservedOutside(node);
      if (extra > avail) throw new CairnError('ENOSPC', `cannot set ${prop} of '${node.name}' to ${size(bytes)}: out of space (${size(avail)} available)`);
      // A refreservation counts in the dataset's own used: its quota and refquota bound it too (zfs).
      const refquota = node.localNumber('refquota');
      const ownQuotaExceeded = quota > 0 && extra > 0 && this.usedNow(node, true) + extra > quota;
      if (prop === 'refreservation' && (ownQuotaExceeded || (refquota > 0 && bytes > refquota))) {
        throw new CairnError('ENOSPC', `cannot set refreservation of '${node.name}' to ${size(bytes)}: out of space (more than its ${ownQuotaExceeded ? 'quota' : 'refquota'} allows)`);
      }
    }
  }

  /** volsize: grow or shrink the volume; a thick volume's refreservation follows its size. */
  private async setVolsize(node: DsNode, bytes: number): Promise<void> {
    const volume = node.volume;
    if (!volume) throw new CairnError('EINVAL', `'volsize' does not apply to '${node.name}'`);
    validateVolsize(bytes, volume.blockSizeBytes);
    const thick = node.localNumber('refreservation') === volume.sizeBytes;
    const storeRefreservation = (): Promise<void> => this.host.hold(async () => {
      await this.storeProp(node, 'refreservation', bytes);
      if (node.physDirty) await this.writePhys(node);
    });
    // The size and the refreservation change in different txgs (the volume frees in bounded holds):
    // the reservation grows before the size and shrinks after it, so a power cut between the two leaves
    // a volume reserving more than its size, never less.
    const growing = bytes > volume.sizeBytes;
    if (thick && growing) {
      await this.checkSpaceProperty(node, 'refreservation', bytes);
      await storeRefreservation();
    }
    await volume.resize(bytes);
    if (thick && !growing) await storeRefreservation();
  }

  /** zfs inherit [-r]: drops the local value (of the dataset and, with -r, every descendant). */
  inheritProperty(name: string, property: string, options: { recursive?: boolean } = {}): Promise<void> {
    return this.serial(async () => {
      const top = this.node(name);
      const prop = isNativeProperty(property) ? checkInheritable(property, top.type) : propertyDefinition(property).name;
      const targets = options.recursive === true && !top.isSnapshot ? this.subtree(top) : [top];
      await this.host.hold(async () => {
        for (const n of targets) {
          if (!n.props.has(prop)) continue;
          await this.storeProp(n, prop, undefined);
          if (n.physDirty) await this.writePhys(n);
        }
      });
      this.applyPolicies();
    });
  }

  // ---- rename ----------------------------------------------------------------------------------------

  /**
   * zfs rename: a dataset (with everything below it and its snapshots) to a new name, possibly under a
   * new parent in the same pool; or a snapshot to a new name on the same dataset. One MOS change.
   */
  rename(from: string, to: string, options: { parents?: boolean } = {}): Promise<void> {
    return this.serial(async () => {
      const node = this.node(from);
      if (this.byName.has(to)) throw new CairnError('EEXIST', `dataset already exists: '${to}'`);
      if (node.isSnapshot) {
        validateDatasetName(to, { allowSnapshot: 'only' });
        const at = to.indexOf('@');
        if (to.slice(0, at) !== from.slice(0, from.indexOf('@'))) throw new CairnError('EINVAL', `snapshots can only be renamed within their dataset: '${from}' → '${to}'`);
        const head = this.nodes.get(node.phys.parentDir) as DsNode;
        const oldShort = from.slice(from.indexOf('@') + 1);
        const newShort = to.slice(at + 1);
        validateSnapshotName(newShort);
        await this.host.hold(async () => {
          await this.kvDelete(head, 'snapshotsKv', oldShort);
          await this.kvSet(head, 'snapshotsKv', newShort, node.id);
          if (head.physDirty) await this.writePhys(head);
        });
        head.snapshots.delete(oldShort);
        head.snapshots.set(newShort, node.id);
        this.renameInMemory(node, to);
        return;
      }
      validateDatasetName(to);
      if (node === this.rootNode) throw new CairnError('EINVAL', `cannot rename the root dataset '${from}' (rename the pool on import)`);
      const parentName = parentOf(to);
      if (parentName === undefined || !to.startsWith(`${this.host.poolName}/`)) throw new CairnError('EXDEV', `cannot rename '${from}' to '${to}': datasets cannot move between pools`);
      if (to.startsWith(`${from}/`)) throw new CairnError('EINVAL', `cannot rename '${from}' to '${to}': a dataset cannot become its own descendant`);
      if (!this.byName.has(parentName)) {
        if (options.parents !== true) throw new CairnError('ENOENT', `parent does not exist: '${parentName}' (use -p to create parents)`);
        await this.createNow(parentName, { parents: true });
      }
      const newParent = this.node(parentName);
      if (newParent.isVolume || newParent.isSnapshot) throw new CairnError('EINVAL', `cannot rename to '${to}': parent '${parentName}' is not a filesystem`);
      const oldParent = this.parentOf(node) as DsNode;
      if (newParent !== oldParent) this.checkTransfer(node, oldParent, newParent, to);
      const oldKey = from.slice(oldParent.name.length + 1);
      const newKey = to.slice(parentName.length + 1);
      await this.host.hold(async () => {
        await this.kvDelete(oldParent, 'childrenKv', oldKey);
        await this.kvSet(newParent, 'childrenKv', newKey, node.id);
        node.phys.parentDir = newParent.id;
        for (const n of [oldParent, newParent, node]) await this.writePhys(n);
      });
      oldParent.children.delete(oldKey);
      newParent.children.set(newKey, node.id);
      this.renameInMemory(node, to);
      this.applyPolicies(); // inherited values may come from a new parent now
    });
  }

  /**
   * A move under a new parent brings what the dataset uses (or reserves, when more) into every new
   * ancestor below the common one: each quota there must still hold (zfs dsl_dir_transfer_possible).
   */
  private checkTransfer(node: DsNode, oldParent: DsNode, newParent: DsNode, to: string): void {
    const oldLine = new Set<number>();
    for (let a: DsNode | undefined = oldParent; a; a = this.parentOf(a)) oldLine.add(a.id);
    const movingBytes = this.chargeToParent(node, true);
    for (let a: DsNode | undefined = newParent; a && !oldLine.has(a.id); a = this.parentOf(a)) {
      const quota = a.localNumber('quota');
      if (quota > 0 && this.usedNow(a, true) + movingBytes > quota) {
        throw new CairnError('ENOSPC', `cannot rename '${node.name}' to '${to}': out of space (quota of '${a.name}' is ${formatPropertyValue('quota', quota)})`);
      }
    }
  }

  /** Renames a node, every head below it and all their snapshots in the name index. */
  private renameInMemory(node: DsNode, to: string): void {
    const from = node.name;
    for (const n of [...this.nodes.values()]) {
      if (n.name === from || n.name.startsWith(`${from}/`) || n.name.startsWith(`${from}@`)) {
        this.byName.delete(n.name);
        n.name = to + n.name.slice(from.length);
        n.live.name = n.name;
        this.byName.set(n.name, n.id);
        n.snapshotView = null;
      }
    }
  }

  // ---- promote ---------------------------------------------------------------------------------------

  /**
   * zfs promote CLONE: the clone takes over its origin snapshot S and every older snapshot of the origin
   * dataset O, and O becomes a clone of S. The dead lists need no change: the entries that followed S
   * (blocks born at or before S that O freed) now belong to a clone of S, which is what a clone's dead
   * list holds; the clone's own entries are blocks of S, now its own snapshot. Only the unique-byte
   * figures of both are recounted, by walks pruned at the new origins.
   */
  promote(name: string): Promise<void> {
    return this.serial(async () => {
      const clone = this.node(name);
      if (clone.isSnapshot) throw new CairnError('EINVAL', `'${name}' is a snapshot; promote a clone`);
      const origin = clone.phys.originSnapshot ? this.nodes.get(clone.phys.originSnapshot) : undefined;
      if (!origin) throw new CairnError('EINVAL', `cannot promote '${name}': not a cloned filesystem`);
      const moving = (): DsNode[] => {
        const out: DsNode[] = [];
        for (let n: DsNode | undefined = origin; n; n = n.phys.prevSnapshot ? this.nodes.get(n.phys.prevSnapshot) : undefined) out.push(n);
        return out.reverse();
      };
      const check = async (): Promise<void> => {
        const clash = moving().map((n) => n.name.slice(n.name.indexOf('@') + 1)).filter((short) => clone.snapshots.has(short));
        if (clash.length > 0) throw new CairnError('EEXIST', `cannot promote '${name}': it already has snapshots named ${clash.map((s) => `'@${s}'`).join(', ')} (rename them first)`);
      };
      await check();
      await this.host.syncTask(check, async () => {
        const oldHead = this.nodes.get(origin.phys.parentDir) as DsNode;
        const snaps = moving();
        const after = this.nodes.get(origin.phys.nextSnapshot) as DsNode; // a newer snapshot of O, or O
        const newOriginOfClone = oldHead.phys.originSnapshot;
        // The clone's chain: O's snapshots up to S, then the clone's own snapshots (the oldest of them
        // has no previous one while it is a clone), then the clone.
        let firstOwn: DsNode = clone;
        while (firstOwn.phys.prevSnapshot !== 0) firstOwn = this.nodes.get(firstOwn.phys.prevSnapshot) as DsNode;
        firstOwn.phys.prevSnapshot = origin.id;
        clone.phys.originSnapshot = newOriginOfClone;
        origin.phys.nextSnapshot = firstOwn.id;
        // O's chain: what followed S, which now starts at S as a clone of it.
        after.phys.prevSnapshot = 0;
        oldHead.phys.originSnapshot = origin.id;
        if (oldHead.phys.prevSnapshot === origin.id) oldHead.phys.prevSnapshot = 0;
        for (const snap of snaps) {
          const short = snap.name.slice(snap.name.indexOf('@') + 1);
          await this.kvDelete(oldHead, 'snapshotsKv', short);
          await this.kvSet(clone, 'snapshotsKv', short, snap.id);
          oldHead.snapshots.delete(short);
          clone.snapshots.set(short, snap.id);
          snap.phys.parentDir = clone.id;
          this.byName.delete(snap.name);
          snap.name = `${clone.name}@${short}`;
          snap.live.name = snap.name;
          this.byName.set(snap.name, snap.id);
          snap.snapshotView = null;
        }
        // S's clones: the clone leaves, the old head joins.
        await this.kvDelete(origin, 'clonesKv', String(clone.id));
        await this.kvSet(origin, 'clonesKv', String(oldHead.id), 0);
        origin.clones.delete(clone.id);
        origin.clones.add(oldHead.id);
        if (newOriginOfClone !== 0) {
          const grand = this.nodes.get(newOriginOfClone) as DsNode;
          await this.kvDelete(grand, 'clonesKv', String(oldHead.id));
          await this.kvSet(grand, 'clonesKv', String(clone.id), 0);
          grand.clones.delete(oldHead.id);
          grand.clones.add(clone.id);
          await this.writePhys(grand);
        }
        clone.phys.uniqueBytes = await this.bytesBornAfter(clone, this.originTxg(clone));
        oldHead.phys.uniqueBytes = await this.bytesBornAfter(oldHead, origin.phys.createTxg);
        for (const n of new Set([clone, firstOwn, oldHead, origin, after, ...snaps])) await this.writePhys(n);
        await this.recountSnapUsed(clone);
        await this.recountSnapUsed(oldHead);
      });
    });
  }

  /** Bytes a head references that were born after txg (a walk pruned there). */
  private async bytesBornAfter(node: DsNode, txg: number): Promise<number> {
    const os = node.os as ObjectSet;
    let bytes = 0;
    await os.traverse(async (bp) => {
      bytes += allocatedBytes(bp);
    }, os.root, txg);
    return bytes;
  }

  // ---- holds -----------------------------------------------------------------------------------------

  /** zfs hold [-r] TAG SNAP: a held snapshot cannot be destroyed until every tag is released. */
  hold(tag: string, snapshot: string, options: { recursive?: boolean } = {}): Promise<void> {
    return this.serial(async () => {
      validateHoldTag(tag);
      const snaps = this.snapshotsNamed(snapshot, options.recursive === true);
      const held = snaps.filter((s) => s.holds.has(tag)).map((s) => s.name);
      if (held.length > 0) throw new CairnError('EEXIST', `tag '${tag}' already exists on ${held.map((n) => `'${n}'`).join(', ')}`);
      const now = Date.now();
      await this.host.hold(async () => {
        for (const snap of snaps) {
          await this.kvSet(snap, 'holdsKv', tag, now);
          if (snap.physDirty) await this.writePhys(snap);
          snap.holds.set(tag, now);
        }
      });
    });
  }

  /** zfs release [-r] TAG SNAP. */
  release(tag: string, snapshot: string, options: { recursive?: boolean } = {}): Promise<void> {
    return this.serial(async () => {
      const snaps = this.snapshotsNamed(snapshot, options.recursive === true);
      const missing = snaps.filter((s) => !s.holds.has(tag)).map((s) => s.name);
      if (missing.length > 0) throw new CairnError('ENOENT', `no such tag '${tag}' on ${missing.map((n) => `'${n}'`).join(', ')}`);
      await this.host.hold(async () => {
        for (const snap of snaps) {
          await this.kvDelete(snap, 'holdsKv', tag);
          snap.holds.delete(tag);
        }
      });
    });
  }

  /** zfs holds SNAP: the tags and when each was placed. */
  async holds(snapshot: string): Promise<SnapshotHold[]> {
    const snap = this.node(snapshot);
    if (!snap.isSnapshot) throw new CairnError('EINVAL', `'${snapshot}' is not a snapshot`);
    return [...snap.holds].map(([tag, createdMs]) => ({ tag, createdMs })).sort((a, b) => (a.tag < b.tag ? -1 : a.tag > b.tag ? 1 : 0));
  }

  /** SNAP, and with recursive the same-named snapshot of every descendant that has one. */
  private snapshotsNamed(snapshot: string, recursive: boolean): DsNode[] {
    const snap = this.node(snapshot);
    if (!snap.isSnapshot) throw new CairnError('EINVAL', `'${snapshot}' is not a snapshot`);
    if (!recursive) return [snap];
    const short = snapshot.slice(snapshot.indexOf('@') + 1);
    const head = this.nodes.get(snap.phys.parentDir) as DsNode;
    return this.subtree(head).map((h) => h.snapshots.get(short)).filter((id): id is number => id !== undefined).map((id) => this.nodes.get(id) as DsNode);
  }

  // ---- destroy -r / -R / -n --------------------------------------------------------------------------

  /**
   * zfs destroy [-r|-R] [-n]: plans what goes (children before parents, clones before their origins,
   * a head's snapshots before the head), refuses with the names of what blocks it, and reports the bytes
   * reclaimed (exact: the blocks referenced by nothing that survives).
   */
  destroyWith(name: string, options: DestroyOptions = {}): Promise<DestroyResult> {
    return this.serial(async () => {
      // destroy -r fs@snap needs no fs@snap: the descendants' snapshots of that name go (zfs).
      const recursiveSnapshot = name.includes('@') && (options.recursive === true || options.dependents === true) && !this.byName.has(name);
      const plan = this.destroyPlan(recursiveSnapshot ? this.node(name.slice(0, name.indexOf('@'))) : this.node(name), name, options);
      if (plan.length === 0) throw new CairnError('ENOENT', `could not find any snapshots to destroy: '${name}'`);
      const reclaimBytes = await this.reclaimOf(plan);
      if (options.dryRun === true) return { destroyed: plan.map((n) => n.name), reclaimBytes };
      const destroyed: string[] = [];
      for (const n of plan) {
        if (n.isSnapshot) await this.destroySnapshotNow(n);
        else await this.destroyHeadNow(n);
        destroyed.push(n.name);
      }
      return { destroyed, reclaimBytes };
    });
  }

  private destroyPlan(top: DsNode, name: string, options: DestroyOptions): DsNode[] {
    const recursive = options.recursive === true || options.dependents === true;
    const planned = new Set<number>();
    const order: DsNode[] = [];
    const blockers: string[] = [];
    // Clones are blockers only if the plan does not take them anyway (zfs destroy -r: a clone inside
    // the tree is no obstacle), which is known once the whole plan is made.
    const dependentClones: Array<{ snap: DsNode; clone: DsNode }> = [];
    const addHead = (head: DsNode): void => {
      if (planned.has(head.id)) return;
      planned.add(head.id);
      for (const c of this.childNodes(head)) addHead(c);
      const snaps = [...head.snapshots.values()].map((id) => this.nodes.get(id) as DsNode).sort((a, b) => b.phys.createTxg - a.phys.createTxg);
      for (const snap of snaps) addSnapshot(snap);
      order.push(head);
    };
    const addSnapshot = (snap: DsNode): void => {
      if (planned.has(snap.id)) return;
      for (const cloneId of snap.clones) {
        const clone = this.nodes.get(cloneId) as DsNode;
        if (options.dependents === true) addHead(clone);
        else dependentClones.push({ snap, clone });
      }
      if (snap.holds.size > 0) blockers.push(`'${snap.name}' is held by ${[...snap.holds.keys()].join(', ')}`);
      planned.add(snap.id);
      order.push(snap);
    };
    if (name.includes('@')) {
      const short = name.slice(name.indexOf('@') + 1);
      const head = top.isSnapshot ? this.nodes.get(top.phys.parentDir) as DsNode : top;
      const heads = recursive ? this.subtree(head) : [head];
      for (const h of heads) {
        const id = h.snapshots.get(short);
        if (id !== undefined) addSnapshot(this.nodes.get(id) as DsNode);
      }
    } else {
      if (top === this.rootNode) throw new CairnError('EINVAL', `cannot destroy the root dataset '${top.name}' (destroy the pool)`);
      if (!recursive) {
        const deps = [...this.childNodes(top).map((c) => c.name), ...[...top.snapshots.values()].map((id) => this.nodes.get(id)?.name ?? '')];
        if (deps.length > 0) throw new CairnError('EBUSY', `cannot destroy '${top.name}': it has children or snapshots: ${deps.join(', ')} (use -r to destroy them too)`);
      }
      addHead(top);
    }
    for (const { snap, clone } of dependentClones) {
      if (!planned.has(clone.id)) blockers.unshift(`'${snap.name}' has dependent clone '${clone.name}'`);
    }
    if (blockers.length > 0) {
      const cloneHint = options.dependents !== true && blockers.some((b) => b.includes('dependent clone')) ? ' (use -R to destroy dependent clones)' : '';
      throw new CairnError('EBUSY', `cannot destroy '${name}': ${blockers.join('; ')}${cloneHint}`);
    }
    return this.orderDependents(order);
  }

  /** Orders a destroy plan so nothing goes before what depends on it (a stable topological sort). */
  private orderDependents(plan: DsNode[]): DsNode[] {
    const inPlan = new Set(plan.map((n) => n.id));
    const done = new Set<number>();
    const out: DsNode[] = [];
    const visit = (n: DsNode): void => {
      if (done.has(n.id)) return;
      done.add(n.id);
      const dependents: DsNode[] = [];
      if (n.isSnapshot) for (const id of n.clones) dependents.push(this.nodes.get(id) as DsNode);
      else {
        dependents.push(...this.childNodes(n));
        for (const id of n.snapshots.values()) dependents.push(this.nodes.get(id) as DsNode);
      }
      for (const d of dependents) if (inPlan.has(d.id)) visit(d);
      out.push(n);
    };
    for (const n of plan) visit(n);
    return out;
  }

  /**
   * Bytes a plan frees: whole heads free what they use (children and snapshots in the plan included);
   * a run of consecutive destroyed snapshots of a surviving head frees the dead-list entries of the
   * datasets after each of them born after the snapshot before the run.
   */
  private async reclaimOf(plan: DsNode[]): Promise<number> {
    const gone = new Set(plan.map((n) => n.id));
    let bytes = 0;
    for (const n of plan) {
      if (n.isSnapshot) continue;
      const parent = this.parentOf(n);
      if (parent && gone.has(parent.id)) continue; // counted in the parent's used
      bytes += this.writtenUsedNow(n);
    }
    const byHead = new Map<number, DsNode[]>();
    for (const n of plan) {
      if (!n.isSnapshot || gone.has(n.phys.parentDir)) continue;
      const list = byHead.get(n.phys.parentDir) ?? [];
      list.push(n);
      byHead.set(n.phys.parentDir, list);
    }
    for (const headId of byHead.keys()) {
      const head = this.nodes.get(headId) as DsNode;
      const chain: DsNode[] = [];
      for (let n: DsNode | undefined = head; n; n = n.phys.prevSnapshot ? this.nodes.get(n.phys.prevSnapshot) : undefined) chain.unshift(n);
      // chain: oldest snapshot … head. Runs of destroyed snapshots, each followed by a survivor.
      for (let i = 0; i < chain.length; i++) {
        if (!gone.has((chain[i] as DsNode).id)) continue;
        const start = chain[i] as DsNode;
        let j = i;
        while (j + 1 < chain.length && gone.has((chain[j + 1] as DsNode).id)) j++;
        for (let k = i + 1; k <= j + 1; k++) {
          const after = chain[k] as DsNode;
          if (after.phys.deadList !== 0) bytes += await deadListBytesBornAfter(this.mosStore, after.phys.deadList, start.phys.prevSnapshotTxg);
        }
        i = j;
      }
    }
    return bytes;
  }
}

/**
 * The dataset manager (OpenZFS DSL, filesystems only): the tree of datasets, their snapshots and clones,
 * their records in the MOS, and the free rule that makes snapshots O(1). See docs/datasets-design.md.
 */
import { decodeBlockPointer, encodeBlockPointer, holeBlockPointer, isHole, type BlockPointer } from '../io/blkptr.js';
import { createKv, openKv } from '../kv/index.js';
import { ObjectSet, ObjsetType, type ObjsetEnvironment, type WritePolicy } from '../objects/objset.js';
import { ObjectType, type ObjectStore } from '../objects/types.js';
import { Filesystem } from '../fs/index.js';
import type { FileSystemApi } from '../fs/types.js';
import { assert } from '../util/assert.js';
import { CairnError } from '../util/errors.js';
import {
  allocatedBytes, appendDeadList, createDeadList, deadListBytesBornAfter, deadListChunks, freeDeadList,
} from './deadlist.js';
import { parentOf, validateDatasetName, validateSnapshotName } from './names.js';
import type { DatasetType, ResolvedProperty } from './properties.js';

const DATASET_MAGIC = 0x314c5344; // "DSL1", shared with version 1 (src/pool/mos.ts)
const DATASET_PHYS_VERSION = 2;
const PHYS_FIELDS_AT = 16 + 128;
const FLAG_SNAPSHOT = 1;

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
}

const U64_FIELDS = [
  'parentDir', 'prevSnapshot', 'prevSnapshotTxg', 'nextSnapshot', 'deadList', 'referencedBytes', 'uniqueBytes',
  'compressedBytes', 'uncompressedBytes', 'originSnapshot', 'flags', 'propsKv', 'childrenKv', 'snapshotsKv', 'clonesKv',
  'writtenBytes',
] as const;

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
  if (buf.length < PHYS_FIELDS_AT + 8 * U64_FIELDS.length) throw new CairnError('EIO', 'dataset record is damaged');
  U64_FIELDS.forEach((f, i) => {
    phys[f] = Number(buf.readBigUInt64LE(PHYS_FIELDS_AT + 8 * i));
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
  policy(): WritePolicy;
  statfs(): { totalBytes: number; freeBytes: number; availableBytes: number; files: number };
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
  fs: Filesystem | null = null;
  /** Blocks freed in the syncing txg that the previous snapshot still references. */
  pendingDead: BlockPointer[] = [];
  readonly children = new Map<string, number>();
  readonly snapshots = new Map<string, number>();
  readonly clones = new Set<number>();
  snapshotView: FileSystemApi | null = null;
  /** Cleared when the object set its file system uses is destroyed or rolled back. */
  live: { live: boolean } = { live: true };

  constructor(id: number, name: string, phys: DatasetPhys) {
    this.id = id;
    this.name = name;
    this.phys = phys;
  }

  get isSnapshot(): boolean {
    return (this.phys.flags & FLAG_SNAPSHOT) !== 0;
  }
}

const MUTATING = /^(set|create|mkdir|unlink|rmdir|rename|link|symlink|write|remove|truncate|fallocate|punch|utimens|chmod|chown)/i;

const STORE_MUTATORS: ReadonlySet<string> = new Set(['allocateObject', 'freeObject', 'write', 'freeRange', 'setBonus']);

/**
 * The store a head's file system uses: once the dataset is destroyed or rolled back, calls through an
 * old handle fail instead of changing an object set that will never be synced (or reading freed blocks).
 */
function liveStore(os: ObjectStore, token: { live: boolean }, name: string): ObjectStore {
  // One wrapper per method, made on first use: no allocation per call on the I/O path.
  const wrapped = new Map<string | symbol, unknown>();
  return new Proxy(os, {
    get(target, prop, receiver) {
      const v: unknown = Reflect.get(target, prop, receiver);
      if (typeof v !== 'function') return v;
      let w = wrapped.get(prop);
      if (w === undefined) {
        const fn = (v as (...a: unknown[]) => unknown).bind(target);
        w = (...args: unknown[]) => {
          if (!token.live) return Promise.reject(new CairnError('ENOENT', `dataset '${name}' was destroyed or rolled back; open it again`));
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
    node.fs = await Filesystem.create(liveStore(node.os, node.live, node.name), { ...fsOwner, statfs: () => host.statfs() });
    return m;
  }

  static async load(host: DatasetHost, rootId: number): Promise<DatasetManager> {
    const m = new DatasetManager(host);
    m.rootNode = await m.loadHead(rootId, host.poolName);
    return m;
  }

  private async loadHead(id: number, name: string): Promise<DsNode> {
    const { phys, v1 } = decodeDatasetPhysAny(await this.mosStore.getBonus(id));
    const node = new DsNode(id, name, phys);
    this.register(node);
    node.os = await ObjectSet.open(this.envFor(node), phys.rootBp, this.host.policy());
    node.fs = await Filesystem.open(liveStore(node.os, node.live, node.name), { statfs: () => this.host.statfs() });
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
      node.snapshots.set(key, childId);
      for (const [cloneKey] of await this.kvEntries(snap.phys.clonesKv)) snap.clones.add(Number(cloneKey));
    }
    for (const [key, childId] of await this.kvEntries(phys.childrenKv)) {
      node.children.set(key, childId);
      await this.loadHead(childId, `${name}/${key}`);
    }
    return node;
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

  private async kvSet(node: DsNode, field: 'childrenKv' | 'snapshotsKv' | 'clonesKv', key: string, value: number): Promise<void> {
    if (node.phys[field] === 0) {
      node.phys[field] = (await createKv(this.mosStore, ObjectType.kv)).objectId;
      node.physDirty = true;
    }
    await openKv(this.mosStore, node.phys[field]).set(key, u64(value));
  }

  private async kvDelete(node: DsNode, field: 'childrenKv' | 'snapshotsKv' | 'clonesKv', key: string): Promise<void> {
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
      writeBlock: async (data, props, old) => {
        const bp = await base.writeBlock(data, props, old);
        if (old && !isHole(old) && sameLocation(old, bp)) this.account(node, old, -1);
        this.account(node, bp, 1);
        return bp;
      },
      freeBlock: (bp) => {
        if (isHole(bp)) return;
        this.account(node, bp, -1);
        if (bp.birthTxg > node.phys.prevSnapshotTxg) base.freeBlock(bp);
        else node.pendingDead.push(bp);
      },
      hold: (fn) => base.hold(fn),
      dirtyBytesChanged: (d) => base.dirtyBytesChanged(d),
      reserveSpace: (bytes, copies) => base.reserveSpace(bytes, copies),
    };
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
    return [...this.nodes.values()].map((n): DatasetListEntry => ({ name: n.name, type: n.isSnapshot ? 'snapshot' : 'filesystem', createTxg: n.phys.createTxg }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** The file system of a dataset, or a read-only view of a snapshot's. */
  async open(name: string): Promise<FileSystemApi> {
    const node = this.node(name);
    if (!node.isSnapshot) return node.fs as Filesystem;
    if (!node.snapshotView) {
      // Never synced: its in-memory changes (only the unlinked-set drain at open) count as no dirty data.
      const ro: ObjsetEnvironment = {
        ...this.host.env,
        writeBlock: () => Promise.reject(new CairnError('EROFS', `snapshot '${name}' is read-only`)),
        freeBlock: () => assert(false, `free in snapshot '${name}'`),
        dirtyBytesChanged: () => undefined,
      };
      const os = await ObjectSet.open(ro, node.phys.rootBp, this.host.policy());
      // Sealed once open: store mutations fail with EROFS, which the file system's atime update
      // (relatime) ignores, so reading a snapshot changes nothing.
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
      const fs = await Filesystem.open(liveStore(store, node.live, name), { statfs: () => this.host.statfs() });
      sealed = true;
      node.snapshotView = readOnlyView(fs, name);
    }
    return node.snapshotView;
  }

  async space(name: string): Promise<DatasetSpace> {
    const node = this.node(name);
    const mos = this.mosStore;
    if (node.isSnapshot) {
      const next = this.nodes.get(node.phys.nextSnapshot);
      assert(next !== undefined, 'snapshot without a next dataset');
      const used = next.phys.deadList === 0 ? 0 : await deadListBytesBornAfter(mos, next.phys.deadList, node.phys.prevSnapshotTxg);
      return { referencedBytes: node.phys.referencedBytes, usedBytes: used, usedBySnapshotsBytes: 0, usedByChildrenBytes: 0, writtenBytes: node.phys.writtenBytes };
    }
    const originTxg = this.originTxg(node);
    let bySnapshots = 0;
    for (let n: DsNode | undefined = node; n; n = n.phys.prevSnapshot ? this.nodes.get(n.phys.prevSnapshot) : undefined) {
      if (n.phys.deadList !== 0) bySnapshots += await deadListBytesBornAfter(mos, n.phys.deadList, originTxg);
    }
    let byChildren = 0;
    for (const childId of node.children.values()) {
      const child = this.nodes.get(childId);
      if (child) byChildren += (await this.space(child.name)).usedBytes;
    }
    return {
      referencedBytes: node.phys.referencedBytes,
      usedBytes: node.phys.uniqueBytes + bySnapshots + byChildren,
      usedBySnapshotsBytes: bySnapshots,
      usedByChildrenBytes: byChildren,
      writtenBytes: node.phys.writtenBytes,
    };
  }

  // ---- create --------------------------------------------------------------------------------------

  create(name: string, options: CreateDatasetOptions = {}): Promise<void> {
    return this.serial(() => this.createNow(name, options.parents ?? false));
  }

  private async createNow(name: string, parents: boolean): Promise<void> {
    validateDatasetName(name);
    if (this.byName.has(name)) throw new CairnError('EEXIST', `dataset already exists: '${name}'`);
    const parentName = parentOf(name);
    if (parentName === undefined || !name.startsWith(`${this.host.poolName}/`)) {
      throw new CairnError('EINVAL', `'${name}' is not a dataset of pool '${this.host.poolName}'`);
    }
    if (!this.byName.has(parentName)) {
      if (!parents) throw new CairnError('ENOENT', `parent does not exist: '${parentName}' (use -p to create parents)`);
      await this.createNow(parentName, true);
    }
    const parent = this.node(parentName);
    const node = new DsNode(0, name, emptyPhys(0, holeBlockPointer()));
    node.os = ObjectSet.create(this.envFor(node), ObjsetType.filesystem, this.host.policy());
    node.fs = await Filesystem.create(liveStore(node.os, node.live, node.name), { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, statfs: () => this.host.statfs() });
    await this.host.hold(async () => {
      node.id = await this.mosStore.allocateObject(ObjectType.dataset, { blockSizeBytes: 512 });
      node.phys.createTxg = this.host.openTxg();
      node.phys.parentDir = parent.id;
      await this.kvSet(parent, 'childrenKv', name.slice(parentName.length + 1), node.id);
      if (parent.physDirty) await this.writePhys(parent);
      await this.writePhys(node);
      node.physDirty = true; // the root pointer comes at sync
      parent.children.set(name.slice(parentName.length + 1), node.id);
      this.register(node);
    });
  }

  // ---- snapshot ------------------------------------------------------------------------------------

  snapshot(name: string): Promise<void> {
    return this.serial(async () => {
      validateDatasetName(name, { allowSnapshot: 'only' });
      const at = name.indexOf('@');
      const short = name.slice(at + 1);
      validateSnapshotName(short);
      const head = this.node(name.slice(0, at));
      await this.host.syncTask(async () => {
        if (this.byName.has(name)) throw new CairnError('EEXIST', `snapshot already exists: '${name}'`);
      }, async (txg) => {
        // O(1): a saved root pointer and the dead list handed over; no tree is read.
        const id = await this.mosStore.allocateObject(ObjectType.dataset, { blockSizeBytes: 512 });
        const phys: DatasetPhys = {
          ...head.phys, createTxg: txg, parentDir: head.id, nextSnapshot: head.id, flags: FLAG_SNAPSHOT,
          childrenKv: 0, snapshotsKv: 0, clonesKv: 0, propsKv: 0,
        };
        const snap = new DsNode(id, name, phys);
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
      });
    });
  }

  // ---- clone ---------------------------------------------------------------------------------------

  clone(snapshotName: string, name: string): Promise<void> {
    return this.serial(async () => {
      const snap = this.node(snapshotName);
      if (!snap.isSnapshot) throw new CairnError('EINVAL', `'${snapshotName}' is not a snapshot`);
      validateDatasetName(name);
      const parentName = parentOf(name);
      if (parentName === undefined || !name.startsWith(`${this.host.poolName}/`)) throw new CairnError('EINVAL', `'${name}' is not a dataset of pool '${this.host.poolName}'`);
      if (this.byName.has(name)) throw new CairnError('EEXIST', `dataset already exists: '${name}'`);
      const parent = this.node(parentName);
      const node = new DsNode(0, name, {
        ...snap.phys, parentDir: parent.id, prevSnapshot: 0, prevSnapshotTxg: snap.phys.createTxg, nextSnapshot: 0, deadList: 0,
        originSnapshot: snap.id, flags: 0, childrenKv: 0, snapshotsKv: 0, clonesKv: 0, propsKv: 0, writtenBytes: 0, uniqueBytes: 0,
      });
      node.os = await ObjectSet.open(this.envFor(node), snap.phys.rootBp, this.host.policy());
      node.fs = await Filesystem.open(liveStore(node.os, node.live, node.name), { statfs: () => this.host.statfs() });
      await this.host.syncTask(async () => {
        if (this.byName.has(name)) throw new CairnError('EEXIST', `dataset already exists: '${name}'`);
      }, async (txg) => {
        node.id = await this.mosStore.allocateObject(ObjectType.dataset, { blockSizeBytes: 512 });
        node.phys.createTxg = txg;
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
      const os = await ObjectSet.open(this.envFor(head), snap.phys.rootBp, this.host.policy());
      const live = { live: true };
      const fs = await Filesystem.open(liveStore(os, live, head.name), { statfs: () => this.host.statfs() });
      await this.host.syncTask(async () => {
        if (newer().length > 0 || !this.nodes.has(snap.id)) throw new CairnError('EBUSY', `snapshots of '${head.name}' changed; retry the rollback`);
      }, async () => {
        // Free what the head wrote since the snapshot: a walk pruned at the snapshot's txg.
        const current = (head.os as ObjectSet).root;
        await os.traverse(async (bp) => this.host.env.freeBlock(bp), current, snap.phys.createTxg);
        // Dead-listed blocks are the snapshot's, live again in the head.
        if (head.phys.deadList !== 0) await freeDeadList(this.mosStore, head.phys.deadList);
        head.pendingDead = [];
        Object.assign(head.phys, {
          rootBp: snap.phys.rootBp, deadList: 0, referencedBytes: snap.phys.referencedBytes, uniqueBytes: snap.phys.uniqueBytes,
          compressedBytes: snap.phys.compressedBytes, uncompressedBytes: snap.phys.uncompressedBytes, writtenBytes: 0,
        });
        head.live.live = false;
        head.live = live;
        head.os = os;
        head.fs = fs;
        await this.writePhys(head);
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
        throw new CairnError('EBUSY', `cannot destroy '${snap.name}': snapshot has dependent clones: ${names.join(', ')}`);
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
      if (snap.phys.clonesKv !== 0) await mos.freeObject(snap.phys.clonesKv);
      await mos.freeObject(snap.id);
      head.snapshots.delete(short);
      snap.live.live = false;
      this.unregister(snap);
    });
  }

  private async destroyHeadNow(node: DsNode): Promise<void> {
    if (node === this.rootNode) throw new CairnError('EINVAL', `cannot destroy the root dataset '${node.name}' (destroy the pool)`);
    const check = async (): Promise<void> => {
      const children = [...node.children.values()].map((id) => this.nodes.get(id)?.name ?? `#${id}`);
      if (children.length > 0) throw new CairnError('EBUSY', `cannot destroy '${node.name}': filesystem has children: ${children.join(', ')}`);
      const snaps = [...node.snapshots.values()].map((id) => this.nodes.get(id)?.name ?? `#${id}`);
      if (snaps.length > 0) throw new CairnError('EBUSY', `cannot destroy '${node.name}': filesystem has snapshots: ${snaps.join(', ')}`);
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

  // ---- being built (session 2): signatures the daemon codes against ---------------------------------

  /** zfs get: every property (names undefined) or the named ones, in table order then user properties. */
  async getProperties(name: string, names?: string[]): Promise<ResolvedProperty[]> {
    throw new CairnError('ENOTSUP', `get ${name} ${String(names)}: not built yet`);
  }

  /** zfs set name=value (value as typed). */
  async setProperty(name: string, property: string, value: string): Promise<void> {
    throw new CairnError('ENOTSUP', `set ${property}=${value} ${name}: not built yet`);
  }

  /** zfs inherit [-r]. */
  async inheritProperty(name: string, property: string, options: { recursive?: boolean } = {}): Promise<void> {
    throw new CairnError('ENOTSUP', `inherit ${property} ${name} ${String(options)}: not built yet`);
  }

  /** zfs snapshot [-r] a@s b@s ...: every snapshot in one txg; returns the names made. */
  async snapshotMany(names: string[], options: { recursive?: boolean } = {}): Promise<string[]> {
    throw new CairnError('ENOTSUP', `snapshot ${names.join(' ')} ${String(options)}: not built yet`);
  }

  /** zfs rename (datasets and snapshots; `to` is a full name; for a snapshot, same dataset). */
  async rename(from: string, to: string, options: { parents?: boolean } = {}): Promise<void> {
    throw new CairnError('ENOTSUP', `rename ${from} ${to} ${String(options)}: not built yet`);
  }

  /** zfs promote: the clone takes over its origin's older snapshots. */
  async promote(name: string): Promise<void> {
    throw new CairnError('ENOTSUP', `promote ${name}: not built yet`);
  }

  async hold(tag: string, snapshot: string, options: { recursive?: boolean } = {}): Promise<void> {
    throw new CairnError('ENOTSUP', `hold ${tag} ${snapshot} ${String(options)}: not built yet`);
  }

  async release(tag: string, snapshot: string, options: { recursive?: boolean } = {}): Promise<void> {
    throw new CairnError('ENOTSUP', `release ${tag} ${snapshot} ${String(options)}: not built yet`);
  }

  async holds(snapshot: string): Promise<SnapshotHold[]> {
    throw new CairnError('ENOTSUP', `holds ${snapshot}: not built yet`);
  }

  /** A volume's block device (volumes only; EINVAL for a filesystem). */
  async openVolume(name: string): Promise<BlockVolume> {
    throw new CairnError('ENOTSUP', `open volume ${name}: not built yet`);
  }

  /** zfs destroy [-r|-R] [-n]. */
  async destroyWith(name: string, options: DestroyOptions = {}): Promise<DestroyResult> {
    throw new CairnError('ENOTSUP', `destroy ${name} ${String(options)}: not built yet`);
  }
}

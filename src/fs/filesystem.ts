/**
 * Filesystem: FileSystemApi on one ObjectStore (see index.ts for the theory and the on-disk layout).
 */
import { ObjectType, type ObjectStore } from '../objects/types.js';
import type { KvMap } from '../kv/index.js';
import { createKv, openKv } from '../kv/index.js';
import { CairnError, isCairnError } from '../util/errors.js';
import { assert } from '../util/assert.js';
import {
  FileKind,
  type CreateOptions,
  type DirEntry,
  type FileSystemApi,
  type SetAttr,
  type SetXattrFlags,
  type Stat,
} from './types.js';
import {
  XATTR_CHUNK_SIZE_BYTES,
  XATTR_LIST_SIZE_MAX_BYTES,
  checkXattrNameSize,
  checkXattrValueSize,
  decodeXattrEntry,
  encodeXattrEntry,
  isXattrChunkKey,
  xattrChunkCount,
  xattrChunkKey,
  xattrNamespace,
  type XattrEntryPhys,
} from './xattr.js';
import {
  DIRENT_KIND_DIRECTORY,
  DIRENT_KIND_FILE,
  DIRENT_KIND_SYMLINK,
  INODE_FLAG_INLINE_SYMLINK,
  INODE_SIZE_BYTES,
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  S_IPERM,
  S_ISGID,
  SYMLINK_INLINE_MAX_BYTES,
  decodeDirent,
  decodeInode,
  encodeDirent,
  encodeInode,
  type InodePhys,
} from './inode.js';
import { Mutex } from '../util/mutex.js';
import { nameByteLength } from '../util/name-bytes.js';

/** The master node is the first object allocated in a new object set (id 0 is the meta-dnode). */
export const MASTER_NODE_OBJECT_ID = 1;
/** Version of the file system layout, kept in the master node under "version". */
export const FS_VERSION = 1;
export const RECORD_SIZE_DEFAULT_BYTES = 128 * 1024;
export const NAME_SIZE_MAX_BYTES = 255;
/** PATH_MAX - 1: the longest symlink target. */
export const SYMLINK_TARGET_SIZE_MAX_BYTES = 4095;
/** Symlinks followed while resolving one path (Linux's MAXSYMLINKS). */
export const SYMLINKS_FOLLOWED_MAX = 40;
/** Largest file offset: offsets are JS numbers, so stay where they are exact. */
export const FILE_SIZE_MAX_BYTES = Number.MAX_SAFE_INTEGER;
/** readdir pages are capped so one call can never pull a huge directory into memory. */
export const READDIR_LIMIT_MAX = 4096;
const GENERATION_RESERVE_COUNT = 1024n;
/** relatime: an atime older than this is refreshed by a read even when it is newer than mtime. */
const RELATIME_INTERVAL_NS = 24n * 3600n * 1_000_000_000n;
/** Timestamps are signed 64-bit ns (InodePhys), as Linux's: 1677 to 2262. */
const TIME_NS_MIN = -(2n ** 63n);
const TIME_NS_MAX = 2n ** 63n - 1n;
/** Entries read per kv page while listing attributes. */
const XATTR_LIST_PAGE_ENTRIES = 256;
/** Names kept by the name cache (Filesystem.names); past this the oldest eighth goes at once. */
const NAME_CACHE_ENTRIES_MAX = 32_768;

/** What the name cache keeps of one name: enough to tell that neither directory nor file was replaced since. */
interface CachedName {
  ino: number;
  generation: bigint;
  parentGeneration: bigint;
}

export const MasterKey = {
  version: 'version',
  root: 'root',
  unlinked: 'unlinked',
  recordSize: 'recordsize',
  nextGeneration: 'generation',
} as const;

export interface StatfsFigures {
  totalBytes: number;
  freeBytes: number;
  availableBytes: number;
  files: number;
}

export interface FilesystemOpenOptions {
  /** Wall clock in ns since the epoch; injected so tests are deterministic. */
  nowNs?: () => bigint;
  /** Space figures (the pool supplies them); without it statfs reports zeros. */
  statfs?: () => StatfsFigures | Promise<StatfsFigures>;
}

export interface FilesystemCreateOptions extends FilesystemOpenOptions {
  /** Owner of the root directory; a node created without an owner inherits its parent's. */
  uid: number;
  gid: number;
  /** Permission bits of the root directory; default 0o755. */
  rootMode?: number;
  /** Block size of regular files (the recordsize property); power of two, 512 B to 1 MiB. */
  recordSizeBytes?: number;
}

/** Default clock: the wall clock at start plus a monotonic high-resolution offset. */
function defaultNowNs(): () => bigint {
  const wallStartNs = BigInt(Date.now()) * 1_000_000n;
  const monotonicStartNs = process.hrtime.bigint();
  return () => wallStartNs + (process.hrtime.bigint() - monotonicStartNs);
}

/** A loaded inode: the decoded phys plus an inline symlink target, if any, to write back with it. */
interface Inode {
  readonly ino: number;
  phys: InodePhys;
  inline: Buffer | undefined;
}

function kindOfMode(mode: number): FileKind {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return FileKind.file;
    case S_IFDIR:
      return FileKind.directory;
    case S_IFLNK:
      return FileKind.symlink;
    default:
      throw new CairnError('EIO', `inode has unknown file type ${(mode & S_IFMT).toString(8)}`);
  }
}

function direntKindByte(kind: FileKind): number {
  if (kind === FileKind.file) return DIRENT_KIND_FILE;
  if (kind === FileKind.directory) return DIRENT_KIND_DIRECTORY;
  return DIRENT_KIND_SYMLINK;
}

function kindOfDirentByte(kindByte: number): FileKind {
  if (kindByte === DIRENT_KIND_FILE) return FileKind.file;
  if (kindByte === DIRENT_KIND_DIRECTORY) return FileKind.directory;
  if (kindByte === DIRENT_KIND_SYMLINK) return FileKind.symlink;
  throw new CairnError('EIO', `directory entry has unknown kind ${kindByte}`);
}

function encodeU64(value: number | bigint): Buffer {
  const out = Buffer.alloc(8);
  out.writeBigUInt64LE(BigInt(value));
  return out;
}

function decodeU64(value: Buffer | undefined, what: string): bigint {
  if (value === undefined || value.length !== 8) {
    throw new CairnError('EIO', `master node entry "${what}" is missing or malformed`);
  }
  return value.readBigUInt64LE(0);
}

/** Names in a directory: no '/', no NUL, not '.' or '..', 1 to 255 UTF-8 bytes. */
export function validateName(name: string): void {
  if (name.length === 0) throw new CairnError('ENOENT', 'empty file name');
  if (name === '.' || name === '..') throw new CairnError('EINVAL', `"${name}" cannot be used as a name here`);
  if (name.includes('/') || name.includes('\0')) {
    throw new CairnError('EINVAL', `file name ${JSON.stringify(name)} contains '/' or NUL`);
  }
  if (nameByteLength(name) > NAME_SIZE_MAX_BYTES) {
    throw new CairnError('ENAMETOOLONG', `file name is longer than ${NAME_SIZE_MAX_BYTES} bytes`);
  }
}

function checkTime(timeNs: bigint | undefined, what: string): void {
  if (timeNs === undefined) return;
  if (typeof timeNs !== 'bigint' || timeNs < TIME_NS_MIN || timeNs > TIME_NS_MAX) {
    throw new CairnError('EINVAL', `${what} ${String(timeNs)} ns is not a signed 64-bit nanosecond time`);
  }
}

function checkOffset(offset: number, what: string): void {
  if (!Number.isSafeInteger(offset) || offset < 0) throw new CairnError('EINVAL', `bad ${what} ${offset}`);
}

/**
 * Deletes the chunk keys of one set from index `from` on. Chunks are written in ascending and deleted in
 * descending order, so whatever a failure part way leaves, a set is always a contiguous run from 0 and
 * its end is found by probing upward.
 */
async function deleteXattrChunks(kv: KvMap, name: string, chunkSet: number, from: number): Promise<void> {
  let end = from;
  while ((await kv.get(xattrChunkKey(name, chunkSet, end))) !== undefined) end++;
  for (let index = end - 1; index >= from; index--) await kv.delete(xattrChunkKey(name, chunkSet, index));
}

/** The name cache's key: a name cannot hold '/', so the pair is unambiguous. */
function nameKey(parentIno: number, name: string): string {
  return `${parentIno}/${name}`;
}

function noXattr(ino: number, name: string): CairnError {
  return CairnError.answer('ENODATA', `inode ${ino} has no extended attribute "${name}"`);
}

export class Filesystem implements FileSystemApi {
  /** Mutating operations run one at a time so check-then-act stays atomic. */
  private readonly lock = new Mutex();
  /** The atime property: off means reads never record an access time. */
  atimeUpdates = true;
  /** Open counts (retain/release): an inode here with nlink 0 is on the unlinked set, freed at last release. */
  private readonly openCounts = new Map<number, number>();
  /**
   * Open inodes that lost their last link (on the unlinked set): only their last release has work to
   * do, so every other release returns without the lock or a txg hold. Added in the same synchronous
   * step that reads the open count, so a release cannot slip between the two.
   */
  private readonly openUnlinked = new Set<number>();
  /**
   * Open inodes that lost their last link in the open txg and are not yet on the on-disk unlinked set:
   * recordUnlinked() puts them there just before the txg syncs, unless their last release came first
   * and freed them. A file the kernel only looked up is released (FORGET) right after its unlink
   * through a mount, so deleting a file costs no unlinked-set entry at all, as it would cost two kv
   * writes otherwise. Used only with a store that syncs (setBeforeSync); others get the entry at once.
   */
  private readonly unlinkedPending = new Set<number>();
  /**
   * Names recently looked up or made, `${parentIno}/${name}` → the inode they name (OpenZFS's dnlc, as
   * Linux's dcache holds them above a local file system): a lookup that hits costs two inode loads from
   * the dnode cache instead of a directory kv lookup. A name's entry goes whenever the name is removed or
   * rebound (unlink, rmdir, rename); a hit is used only when the directory's and the file's generations
   * still match (a store may reuse object ids; ObjectSet does not) and the file still has links. Oldest
   * first, never moved on a hit.
   */
  private readonly names = new Map<string, CachedName>();
  /**
   * Odd while a mutation runs, and moved on by each: a lookup remembers what it read from a directory
   * only when no mutation ran or started meanwhile, so it never puts back a name just removed.
   */
  private mutationClock = 0;
  /** nextGeneration may be handed out without touching the master node while below this. */
  private generationReservedEnd: bigint;

  private constructor(
    private readonly store: ObjectStore,
    private readonly master: KvMap,
    readonly rootIno: number,
    private readonly unlinked: KvMap,
    /** Block size of regular files created from now on (the recordsize property may change it). */
    public recordSizeBytes: number,
    private nextGeneration: bigint,
    private readonly nowNs: () => bigint,
    private readonly statfsSource: FilesystemOpenOptions['statfs'],
  ) {
    this.generationReservedEnd = nextGeneration;
  }

  /** Lays out a new file system in an empty object set and opens it. */
  static async create(store: ObjectStore, options: FilesystemCreateOptions): Promise<Filesystem> {
    const nowNs = options.nowNs ?? defaultNowNs();
    const recordSizeBytes = options.recordSizeBytes ?? RECORD_SIZE_DEFAULT_BYTES;
    if (
      !Number.isInteger(recordSizeBytes) ||
      recordSizeBytes < 512 ||
      recordSizeBytes > 1024 * 1024 ||
      (recordSizeBytes & (recordSizeBytes - 1)) !== 0
    ) {
      throw new CairnError('EINVAL', `recordsize ${recordSizeBytes} is not a power of two from 512 B to 1 MiB`);
    }
    await store.hold(async () => {
      const master = await createKv(store, ObjectType.masterNode);
      assert(
        master.objectId === MASTER_NODE_OBJECT_ID,
        `master node got object ${master.objectId}, expected ${MASTER_NODE_OBJECT_ID}: object set not empty?`,
      );
      const unlinked = await createKv(store, ObjectType.kv);
      const root = await createKv(store, ObjectType.directory);
      const now = nowNs();
      const rootPhys: InodePhys = {
        mode: S_IFDIR | ((options.rootMode ?? 0o755) & S_IPERM),
        uid: options.uid,
        gid: options.gid,
        nlink: 2,
        sizeBytes: 2,
        atimeNs: now,
        mtimeNs: now,
        ctimeNs: now,
        birthtimeNs: now,
        generation: 1n,
        parentIno: root.objectId,
        flags: 0n,
        xattrObjectId: 0,
      };
      await store.setBonus(root.objectId, encodeInode(rootPhys));
      await master.set(MasterKey.version, encodeU64(FS_VERSION));
      await master.set(MasterKey.root, encodeU64(root.objectId));
      await master.set(MasterKey.unlinked, encodeU64(unlinked.objectId));
      await master.set(MasterKey.recordSize, encodeU64(recordSizeBytes));
      await master.set(MasterKey.nextGeneration, encodeU64(2n));
    });
    return Filesystem.open(store, options);
  }

  /** Opens the file system of an object set made by create(). */
  static async open(store: ObjectStore, options: FilesystemOpenOptions = {}): Promise<Filesystem> {
    return store.hold(async () => {
      const info = await store.objectInfo(MASTER_NODE_OBJECT_ID).catch((error: unknown) => {
        throw new CairnError('EINVAL', 'object set holds no file system (no master node)', { cause: String(error) });
      });
      if (info.type !== ObjectType.masterNode) {
        throw new CairnError('EINVAL', `object ${MASTER_NODE_OBJECT_ID} is not a file system master node`);
      }
      const master = await openKv(store, MASTER_NODE_OBJECT_ID);
      const version = decodeU64(await master.get(MasterKey.version), MasterKey.version);
      if (version !== BigInt(FS_VERSION)) {
        throw new CairnError('EVERSION', `file system version ${version} is not supported (this build: ${FS_VERSION})`);
      }
      const rootIno = Number(decodeU64(await master.get(MasterKey.root), MasterKey.root));
      const unlinkedId = Number(decodeU64(await master.get(MasterKey.unlinked), MasterKey.unlinked));
      const recordSizeBytes = Number(decodeU64(await master.get(MasterKey.recordSize), MasterKey.recordSize));
      const nextGeneration = decodeU64(await master.get(MasterKey.nextGeneration), MasterKey.nextGeneration);
      const unlinked = await openKv(store, unlinkedId);
      const fs = new Filesystem(
        store,
        master,
        rootIno,
        unlinked,
        recordSizeBytes,
        nextGeneration,
        options.nowNs ?? defaultNowNs(),
        options.statfs,
      );
      await fs.drainUnlinked();
      store.setBeforeSync?.((own) => fs.recordUnlinked(own));
      return fs;
    });
  }

  // ---- reads ----

  async lookup(parentIno: number, name: string): Promise<Stat> {
    const parent = await this.loadDirectory(parentIno);
    if (name === '.') return this.stat(parent);
    if (name === '..') return this.getattr(parent.phys.parentIno);
    validateName(name);
    const child = await this.childOf(parent, name);
    if (child === undefined) throw CairnError.answer('ENOENT', `no entry "${name}" in directory ${parentIno}`);
    return this.stat(child);
  }

  async getattr(ino: number): Promise<Stat> {
    return this.stat(await this.loadInode(ino));
  }

  async readlink(ino: number): Promise<string> {
    const inode = await this.loadInode(ino);
    if (kindOfMode(inode.phys.mode) !== FileKind.symlink) {
      throw new CairnError('EINVAL', `inode ${ino} is not a symbolic link`);
    }
    if (inode.inline !== undefined) return inode.inline.toString('utf8');
    return (await this.store.read(ino, 0, inode.phys.sizeBytes)).toString('utf8');
  }

  async readdir(
    ino: number,
    cursor: bigint,
    limit: number,
  ): Promise<{ entries: DirEntry[]; cursor: bigint | null }> {
    if (!Number.isInteger(limit) || limit < 1) throw new CairnError('EINVAL', `bad readdir limit ${limit}`);
    await this.loadDirectory(ino);
    const page = await (await openKv(this.store, ino)).list(cursor, Math.min(limit, READDIR_LIMIT_MAX));
    const entries: DirEntry[] = [];
    for (const { key, value } of page.entries) {
      const dirent = decodeDirent(value);
      entries.push({ name: key, ino: dirent.ino, kind: kindOfDirentByte(dirent.kindByte) });
    }
    return { entries, cursor: page.cursor };
  }

  async read(ino: number, offset: number, length: number): Promise<Buffer> {
    checkOffset(offset, 'offset');
    checkOffset(length, 'length');
    const inode = await this.loadInode(ino);
    this.requireFile(inode);
    const end = Math.min(inode.phys.sizeBytes, offset + length);
    if (end <= offset) return Buffer.alloc(0);
    const data = await this.store.read(ino, offset, end - offset);
    await this.touchAtime(inode);
    return data;
  }

  async readInto(ino: number, offset: number, target: Buffer): Promise<number> {
    checkOffset(offset, 'offset');
    const inode = await this.loadInode(ino);
    this.requireFile(inode);
    const end = Math.min(inode.phys.sizeBytes, offset + target.length);
    if (end <= offset) return 0;
    await this.store.readInto(ino, offset, target.subarray(0, end - offset));
    await this.touchAtime(inode);
    return end - offset;
  }

  async resolvePath(path: string): Promise<Stat> {
    if (!path.startsWith('/')) throw new CairnError('EINVAL', `path ${JSON.stringify(path)} is not absolute`);
    // Components still to walk, last first, so a symlink's target can be pushed in front of the rest.
    const pending = path.split('/').filter((part) => part !== '' && part !== '.').reverse();
    const trailingSlash = path.length > 1 && path.endsWith('/');
    let current = await this.loadInode(this.rootIno);
    let symlinksFollowed = 0;
    for (;;) {
      const followLast = trailingSlash;
      const name = pending.pop();
      if (name === undefined) break;
      if (kindOfMode(current.phys.mode) !== FileKind.directory) {
        throw new CairnError('ENOTDIR', `a component of ${JSON.stringify(path)} is not a directory`);
      }
      let next: Inode;
      if (name === '..') {
        next = await this.loadInode(current.phys.parentIno);
      } else {
        validateName(name);
        const child = await this.childOf(current, name);
        if (child === undefined) throw new CairnError('ENOENT', `no such file or directory: ${path}`);
        next = child;
      }
      const isLast = pending.length === 0;
      if (kindOfMode(next.phys.mode) === FileKind.symlink && (!isLast || followLast)) {
        if (++symlinksFollowed > SYMLINKS_FOLLOWED_MAX) {
          throw new CairnError('ELOOP', `too many symbolic links in ${JSON.stringify(path)}`);
        }
        const target = await this.readlink(next.ino);
        for (const part of target.split('/').reverse()) if (part !== '' && part !== '.') pending.push(part);
        if (target.startsWith('/')) current = await this.loadInode(this.rootIno);
        continue;
      }
      current = next;
    }
    if (trailingSlash && kindOfMode(current.phys.mode) !== FileKind.directory) {
      throw new CairnError('ENOTDIR', `${JSON.stringify(path)} is not a directory`);
    }
    return this.stat(current);
  }

  async statfs(): Promise<StatfsFigures> {
    if (this.statfsSource === undefined) return { totalBytes: 0, freeBytes: 0, availableBytes: 0, files: 0 };
    return this.statfsSource();
  }

  // ---- mutations: each one runs under the lock, inside one hold ----

  async create(parentIno: number, name: string, options: CreateOptions): Promise<Stat> {
    return this.mutate(() => this.makeNode(parentIno, name, FileKind.file, options, undefined));
  }

  async mkdir(parentIno: number, name: string, options: CreateOptions): Promise<Stat> {
    return this.mutate(() => this.makeNode(parentIno, name, FileKind.directory, options, undefined));
  }

  async symlink(parentIno: number, name: string, target: string, options: Partial<CreateOptions> = {}): Promise<Stat> {
    const targetBytes = Buffer.from(target, 'utf8');
    if (targetBytes.length === 0) throw new CairnError('ENOENT', 'empty symbolic link target');
    if (targetBytes.length > SYMLINK_TARGET_SIZE_MAX_BYTES || target.includes('\0')) {
      throw new CairnError(
        target.includes('\0') ? 'EINVAL' : 'ENAMETOOLONG',
        `bad symbolic link target (NUL, or longer than ${SYMLINK_TARGET_SIZE_MAX_BYTES} bytes)`,
      );
    }
    const createOptions: CreateOptions = { mode: 0o777 };
    if (options.uid !== undefined) createOptions.uid = options.uid;
    if (options.gid !== undefined) createOptions.gid = options.gid;
    return this.mutate(() => this.makeNode(parentIno, name, FileKind.symlink, createOptions, targetBytes));
  }

  async link(ino: number, newParentIno: number, newName: string): Promise<Stat> {
    return this.mutate(async () => {
      validateName(newName);
      const inode = await this.loadInode(ino);
      const kind = kindOfMode(inode.phys.mode);
      const parent = await this.loadDirectory(newParentIno);
      const dir = await openKv(this.store, newParentIno);
      // Linux order: the new name is checked (EEXIST) before the source's kind (EPERM).
      if ((await dir.get(newName)) !== undefined) throw new CairnError('EEXIST', `"${newName}" already exists`);
      if (kind === FileKind.directory) throw new CairnError('EPERM', 'hard links to directories are not allowed');
      // As linkat(2) on an open file that was unlinked: it is on its way out, not back in.
      if (inode.phys.nlink === 0) throw new CairnError('ENOENT', `inode ${ino} has no links left`);
      if (inode.phys.nlink === 0xffffffff) throw new CairnError('EINVAL', 'too many links');
      const now = this.nowNs();
      await dir.set(newName, encodeDirent(ino, direntKindByte(kind)));
      this.rememberName(parent, newName, inode);
      this.entryAdded(parent, now);
      await this.saveInode(parent);
      inode.phys.nlink++;
      inode.phys.ctimeNs = now;
      await this.saveInode(inode);
      return this.stat(inode);
    });
  }

  async unlink(parentIno: number, name: string): Promise<void> {
    return this.mutate(async () => {
      validateName(name);
      const parent = await this.loadDirectory(parentIno);
      const dir = await openKv(this.store, parentIno);
      const child = await this.childOf(parent, name);
      if (child === undefined) throw new CairnError('ENOENT', `no entry "${name}" in directory ${parentIno}`);
      if (kindOfMode(child.phys.mode) === FileKind.directory) {
        throw new CairnError('EISDIR', `"${name}" is a directory (use rmdir)`);
      }
      const now = this.nowNs();
      this.names.delete(nameKey(parentIno, name)); // before the directory changes: a failure part way leaves nothing cached
      await dir.delete(name);
      this.entryRemoved(parent, now);
      await this.saveInode(parent);
      await this.dropLink(child, now);
    });
  }

  async rmdir(parentIno: number, name: string): Promise<void> {
    return this.mutate(async () => {
      if (name === '..') throw new CairnError('ENOTEMPTY', 'cannot remove ".."');
      validateName(name);
      const parent = await this.loadDirectory(parentIno);
      const dir = await openKv(this.store, parentIno);
      const child = await this.childOf(parent, name);
      if (child === undefined) throw new CairnError('ENOENT', `no entry "${name}" in directory ${parentIno}`);
      if (kindOfMode(child.phys.mode) !== FileKind.directory) {
        throw new CairnError('ENOTDIR', `"${name}" is not a directory`);
      }
      await this.requireEmpty(child.ino, name);
      const now = this.nowNs();
      this.names.delete(nameKey(parentIno, name)); // before the directory changes: a failure part way leaves nothing cached
      await dir.delete(name);
      this.entryRemoved(parent, now);
      parent.phys.nlink--;
      await this.saveInode(parent);
      await this.freeInode(child);
    });
  }

  async rename(parentIno: number, name: string, newParentIno: number, newName: string): Promise<void> {
    return this.mutate(async () => {
      validateName(name);
      validateName(newName);
      const oldParent = await this.loadDirectory(parentIno);
      const newParent = newParentIno === parentIno ? oldParent : await this.loadDirectory(newParentIno);
      const oldDir = await openKv(this.store, parentIno);
      const newDir = newParentIno === parentIno ? oldDir : await openKv(this.store, newParentIno);
      const source = await this.childOf(oldParent, name);
      if (source === undefined) throw new CairnError('ENOENT', `no entry "${name}" in directory ${parentIno}`);
      const sourceKind = kindOfMode(source.phys.mode);
      // Linux order: the source may not be an ancestor of the target's directory (EINVAL), and the
      // target may not be an ancestor of the source (ENOTEMPTY), before kinds are compared.
      if (sourceKind === FileKind.directory && (await this.isAncestorOrSelf(source.ino, newParentIno))) {
        throw new CairnError('EINVAL', `cannot move directory "${name}" into its own subtree`);
      }
      const target = await this.childOf(newParent, newName);
      if (target !== undefined) {
        const targetKind = kindOfMode(target.phys.mode);
        if (targetKind === FileKind.directory && (await this.isAncestorOrSelf(target.ino, parentIno))) {
          throw new CairnError('ENOTEMPTY', `"${newName}" is an ancestor of "${name}"`);
        }
        if (target.ino === source.ino) return; // POSIX: two links to one file, nothing to do
        if (sourceKind === FileKind.directory && targetKind !== FileKind.directory) {
          throw new CairnError('ENOTDIR', `"${newName}" is not a directory`);
        }
        if (sourceKind !== FileKind.directory && targetKind === FileKind.directory) {
          throw new CairnError('EISDIR', `"${newName}" is a directory`);
        }
        if (targetKind === FileKind.directory) await this.requireEmpty(target.ino, newName);
      }
      // All checks passed: nothing below can fail for a user-visible reason, so the hold lands whole.
      const now = this.nowNs();
      if (target !== undefined) {
        if (kindOfMode(target.phys.mode) === FileKind.directory) {
          newParent.phys.nlink--;
          await this.freeInode(target);
        } else {
          await this.dropLink(target, now);
        }
      } else {
        this.entryAdded(newParent, now);
      }
      this.names.delete(nameKey(parentIno, name));
      this.names.delete(nameKey(newParentIno, newName));
      await newDir.set(newName, encodeDirent(source.ino, direntKindByte(sourceKind)));
      await oldDir.delete(name);
      this.rememberName(newParent, newName, source);
      this.entryRemoved(oldParent, now);
      if (sourceKind === FileKind.directory && oldParent !== newParent) {
        oldParent.phys.nlink--;
        newParent.phys.nlink++;
      }
      newParent.phys.mtimeNs = now;
      newParent.phys.ctimeNs = now;
      await this.saveInode(oldParent);
      if (newParent !== oldParent) await this.saveInode(newParent);
      source.phys.parentIno = newParentIno;
      source.phys.ctimeNs = now;
      await this.saveInode(source);
    });
  }

  async write(ino: number, offset: number, data: Buffer): Promise<number> {
    checkOffset(offset, 'offset');
    if (offset + data.length > FILE_SIZE_MAX_BYTES) throw new CairnError('EINVAL', 'write beyond the largest file size');
    return this.mutate(async () => {
      const inode = await this.loadInode(ino);
      this.requireFile(inode);
      // Hand the store at most one record per call: never a second copy of a large write in flight.
      // A store error (ENOSPC) after some records landed makes a short write, as POSIX allows: the
      // size covers what was written, so no byte past the size is ever non-zero.
      let done = 0;
      try {
        while (done < data.length) {
          const position = offset + done;
          const chunk = Math.min(this.recordSizeBytes - (position % this.recordSizeBytes), data.length - done);
          await this.store.write(ino, position, data.subarray(done, done + chunk));
          done += chunk;
        }
      } catch (e) {
        if (done === 0) throw e;
      }
      const now = this.nowNs();
      if (done > 0) {
        inode.phys.sizeBytes = Math.max(inode.phys.sizeBytes, offset + done);
        inode.phys.mtimeNs = now;
        inode.phys.ctimeNs = now;
        await this.saveInode(inode);
      }
      return done;
    });
  }

  async setattr(ino: number, attr: SetAttr): Promise<Stat> {
    checkTime(attr.atimeNs, 'atime');
    checkTime(attr.mtimeNs, 'mtime');
    return this.mutate(async () => {
      const inode = await this.loadInode(ino);
      const phys = inode.phys;
      const now = this.nowNs();
      if (attr.sizeBytes !== undefined) {
        checkOffset(attr.sizeBytes, 'size');
        this.requireFile(inode);
        if (attr.sizeBytes !== phys.sizeBytes) {
          if (attr.sizeBytes < phys.sizeBytes) await this.freeTail(ino, attr.sizeBytes, phys.sizeBytes);
          // Growing needs no I/O: bytes past the old size are already zero (see the invariant in index.ts).
          phys.sizeBytes = attr.sizeBytes;
          phys.mtimeNs = now;
        }
      }
      if (attr.mode !== undefined) phys.mode = (phys.mode & S_IFMT) | (attr.mode & S_IPERM);
      if (attr.uid !== undefined) phys.uid = attr.uid >>> 0;
      if (attr.gid !== undefined) phys.gid = attr.gid >>> 0;
      if (attr.atimeNs !== undefined) phys.atimeNs = attr.atimeNs;
      if (attr.mtimeNs !== undefined) phys.mtimeNs = attr.mtimeNs;
      phys.ctimeNs = now;
      await this.saveInode(inode);
      return this.stat(inode);
    });
  }

  // ---- extended attributes ----
  // Reads take the lock too: a value may span several kv entries, and a reader must not see half of a
  // concurrent replace (Linux serializes them per inode as well).

  async getxattr(ino: number, name: string): Promise<Buffer> {
    checkXattrNameSize(name);
    return this.lock.run(async () => {
      const inode = await this.loadInode(ino);
      this.checkXattrAccess(inode, name, false);
      xattrNamespace(name);
      if (inode.phys.xattrObjectId === 0) throw noXattr(ino, name);
      const kv = openKv(this.store, inode.phys.xattrObjectId);
      const raw = await kv.get(name);
      if (raw === undefined) throw noXattr(ino, name);
      const { entry, inline } = decodeXattrEntry(raw);
      if (inline !== undefined) return inline;
      const value = Buffer.alloc(entry.lengthBytes);
      const chunkCount = xattrChunkCount(entry);
      for (let index = 0; index < chunkCount; index++) {
        const chunk = await kv.get(xattrChunkKey(name, entry.chunkSet, index));
        const expectedBytes = Math.min(XATTR_CHUNK_SIZE_BYTES, entry.lengthBytes - index * XATTR_CHUNK_SIZE_BYTES);
        if (chunk?.length !== expectedBytes) {
          throw new CairnError('EIO', `extended attribute "${name}" of inode ${ino} is missing chunk ${index}`);
        }
        chunk.copy(value, index * XATTR_CHUNK_SIZE_BYTES);
      }
      return value;
    });
  }

  async setxattr(ino: number, name: string, value: Buffer, flags: SetXattrFlags = {}): Promise<void> {
    checkXattrNameSize(name);
    checkXattrValueSize(value);
    // Copied in, as the syscall does: the caller may reuse its buffer while this waits for the lock.
    const valueCopy = Buffer.from(value);
    return this.mutate(async () => {
      const inode = await this.loadInode(ino);
      this.checkXattrAccess(inode, name, true);
      xattrNamespace(name);
      const existingKv = inode.phys.xattrObjectId === 0 ? undefined : openKv(this.store, inode.phys.xattrObjectId);
      const existing = existingKv === undefined ? undefined : await this.xattrEntry(existingKv, name);
      if (flags.create === true && existing !== undefined) {
        throw new CairnError('EEXIST', `extended attribute "${name}" of inode ${ino} exists`);
      }
      if (flags.replace === true && existing === undefined) throw noXattr(ino, name);
      // All checks passed. The writes are ordered so that a failure part way (ENOSPC) leaves the old
      // value whole: the object is linked to the inode before anything goes in it, the new chunks go to
      // the chunk set the old value does not use, and one kv write of the entry switches to them.
      let kv = existingKv;
      if (kv === undefined) {
        kv = await createKv(this.store, ObjectType.kv);
        inode.phys.xattrObjectId = kv.objectId;
        await this.saveInode(inode);
      }
      const chunkSet = existing !== undefined && xattrChunkCount(existing) > 0 ? 1 - existing.chunkSet : 0;
      const entryRaw = encodeXattrEntry(valueCopy, chunkSet);
      const chunkCount = xattrChunkCount(decodeXattrEntry(entryRaw).entry);
      for (let index = 0; index < chunkCount; index++) {
        const start = index * XATTR_CHUNK_SIZE_BYTES;
        await kv.set(xattrChunkKey(name, chunkSet, index), valueCopy.subarray(start, start + XATTR_CHUNK_SIZE_BYTES));
      }
      await kv.set(name, entryRaw);
      // Drop the old value's chunks and any left by an earlier attempt that failed part way.
      await deleteXattrChunks(kv, name, chunkSet, chunkCount);
      await deleteXattrChunks(kv, name, 1 - chunkSet, 0);
      inode.phys.ctimeNs = this.nowNs();
      await this.saveInode(inode);
    });
  }

  async listxattr(ino: number): Promise<string[]> {
    return this.lock.run(async () => {
      const inode = await this.loadInode(ino);
      if (inode.phys.xattrObjectId === 0) return [];
      const kv = openKv(this.store, inode.phys.xattrObjectId);
      const names: string[] = [];
      let listBytes = 0;
      let cursor: bigint | null = 0n;
      while (cursor !== null) {
        const page = await kv.list(cursor, XATTR_LIST_PAGE_ENTRIES);
        for (const { key } of page.entries) {
          if (isXattrChunkKey(key)) continue;
          listBytes += Buffer.byteLength(key, 'utf8') + 1;
          if (listBytes > XATTR_LIST_SIZE_MAX_BYTES) {
            throw new CairnError('E2BIG', `extended attribute names of inode ${ino} exceed ${XATTR_LIST_SIZE_MAX_BYTES} bytes`);
          }
          names.push(key);
        }
        cursor = page.cursor;
      }
      return names.sort();
    });
  }

  async removexattr(ino: number, name: string): Promise<void> {
    checkXattrNameSize(name);
    return this.mutate(async () => {
      const inode = await this.loadInode(ino);
      this.checkXattrAccess(inode, name, true);
      xattrNamespace(name);
      if (inode.phys.xattrObjectId === 0) throw noXattr(ino, name);
      const kv = openKv(this.store, inode.phys.xattrObjectId);
      const existing = await this.xattrEntry(kv, name);
      if (existing === undefined) throw noXattr(ino, name);
      await kv.delete(name);
      await deleteXattrChunks(kv, name, 0, 0);
      await deleteXattrChunks(kv, name, 1, 0);
      // The last attribute takes the object with it, so an inode without attributes costs nothing.
      if ((await kv.count()) === 0) {
        await this.store.freeObject(kv.objectId);
        inode.phys.xattrObjectId = 0;
      }
      inode.phys.ctimeNs = this.nowNs();
      await this.saveInode(inode);
    });
  }

  /** Linux's xattr_permission: user.* only on regular files and directories. */
  private checkXattrAccess(inode: Inode, name: string, write: boolean): void {
    if (!name.startsWith('user.')) return;
    const kind = kindOfMode(inode.phys.mode);
    if (kind === FileKind.file || kind === FileKind.directory) return;
    if (write) throw new CairnError('EPERM', `user.* extended attributes are not allowed on a ${kind}`);
    throw noXattr(inode.ino, name);
  }

  private async xattrEntry(kv: KvMap, name: string): Promise<XattrEntryPhys | undefined> {
    const raw = await kv.get(name);
    return raw === undefined ? undefined : decodeXattrEntry(raw).entry;
  }

  // ---- internals ----

  private mutate<T>(fn: () => Promise<T>): Promise<T> {
    return this.lock.run(() => this.store.hold(async () => {
      this.mutationClock++;
      try {
        return await fn();
      } finally {
        this.mutationClock++;
      }
    }));
  }

  /** The file or directory `name` in parent names, if any: from the name cache when it still holds (names above), else from the directory. */
  private async childOf(parent: Inode, name: string): Promise<Inode | undefined> {
    const key = nameKey(parent.ino, name);
    const cached = this.names.get(key);
    if (cached !== undefined) {
      if (cached.parentGeneration === parent.phys.generation) {
        const child = await this.loadInode(cached.ino).catch((error: unknown) => {
          if (error instanceof CairnError && error.code === 'ENOENT') return undefined;
          throw error;
        });
        if (child !== undefined && child.phys.generation === cached.generation && child.phys.nlink > 0) return child;
      }
      this.names.delete(key);
    }
    const clock = this.mutationClock;
    const entry = await this.findEntry(parent.ino, name);
    if (entry === undefined) return undefined;
    const child = await this.loadInode(entry.ino);
    if ((clock & 1) === 0 && clock === this.mutationClock) this.rememberName(parent, name, child);
    return child;
  }

  private rememberName(parent: Inode, name: string, child: Inode): void {
    if (this.names.size >= NAME_CACHE_ENTRIES_MAX) {
      let evict = NAME_CACHE_ENTRIES_MAX / 8;
      for (const key of this.names.keys()) {
        this.names.delete(key);
        if (--evict === 0) break;
      }
    }
    this.names.set(nameKey(parent.ino, name), { ino: child.ino, generation: child.phys.generation, parentGeneration: parent.phys.generation });
  }

  private async makeNode(
    parentIno: number,
    name: string,
    kind: FileKind,
    options: CreateOptions,
    symlinkTarget: Buffer | undefined,
  ): Promise<Stat> {
    validateName(name);
    const parent = await this.loadDirectory(parentIno);
    const dir = await openKv(this.store, parentIno);
    const now = this.nowNs();
    let ino: number;
    let typeBits: number;
    let sizeBytes = 0;
    let nlink = 1;
    let flags = 0n;
    let inline: Buffer | undefined;
    if (kind === FileKind.directory) {
      ino = (await createKv(this.store, ObjectType.directory)).objectId;
      typeBits = S_IFDIR;
      sizeBytes = 2;
      nlink = 2;
    } else if (kind === FileKind.file) {
      ino = await this.store.allocateObject(ObjectType.plainFile, { blockSizeBytes: this.recordSizeBytes });
      typeBits = S_IFREG;
    } else {
      assert(symlinkTarget !== undefined, 'symlink without a target');
      sizeBytes = symlinkTarget.length;
      typeBits = S_IFLNK;
      if (symlinkTarget.length <= SYMLINK_INLINE_MAX_BYTES) {
        ino = await this.store.allocateObject(ObjectType.symlink, { blockSizeBytes: 512 });
        inline = symlinkTarget;
        flags = INODE_FLAG_INLINE_SYMLINK;
      } else {
        ino = await this.store.allocateObject(ObjectType.symlink, { blockSizeBytes: 4096 });
        await this.store.write(ino, 0, symlinkTarget);
      }
    }
    const generation = await this.takeGeneration();
    // Linux's inode_init_owner: in a setgid directory, new entries take the directory's group, and new
    // directories keep the setgid bit (BSD group semantics).
    const setgidParent = (parent.phys.mode & S_ISGID) !== 0;
    const inode: Inode = {
      ino,
      phys: {
        mode: typeBits | (options.mode & S_IPERM) | (setgidParent && kind === FileKind.directory ? S_ISGID : 0),
        uid: options.uid ?? parent.phys.uid,
        gid: setgidParent ? parent.phys.gid : (options.gid ?? parent.phys.gid),
        nlink,
        sizeBytes,
        atimeNs: now,
        mtimeNs: now,
        ctimeNs: now,
        birthtimeNs: now,
        generation,
        parentIno,
        flags,
        xattrObjectId: 0,
      },
      inline,
    };
    await this.saveInode(inode);
    try {
      // Exclusive: the name's absence is checked by the insert itself, not by a lookup before it (a
      // create then walks the directory once, not twice). The rare EEXIST gives back the object made.
      await dir.set(name, encodeDirent(ino, direntKindByte(kind)), { exclusive: true });
    } catch (error) {
      // Only a refused insert changed nothing: after another failure the entry may be in already (the
      // leaf written, its header not), and must not name a freed object.
      if (isCairnError(error, 'EEXIST')) await this.store.freeObject(ino);
      throw error;
    }
    this.rememberName(parent, name, inode);
    this.entryAdded(parent, now);
    if (kind === FileKind.directory) parent.phys.nlink++;
    await this.saveInode(parent);
    return this.stat(inode);
  }

  /**
   * Generations are handed out from a reserved range: the master node records the end of the range, so
   * it is written once per GENERATION_RESERVE_COUNT creates instead of on every create, and a reopen
   * (which starts at the recorded end) can skip numbers but never repeat one.
   */
  private async takeGeneration(): Promise<bigint> {
    if (this.nextGeneration >= this.generationReservedEnd) {
      this.generationReservedEnd = this.nextGeneration + GENERATION_RESERVE_COUNT;
      await this.master.set(MasterKey.nextGeneration, encodeU64(this.generationReservedEnd));
    }
    return this.nextGeneration++;
  }

  /** Removes one link; the last one frees the object (open-file tracking will defer this later). */
  private async dropLink(inode: Inode, now: bigint): Promise<void> {
    assert(inode.phys.nlink > 0, `inode ${inode.ino} already has no links`);
    inode.phys.nlink--;
    inode.phys.ctimeNs = now;
    if (inode.phys.nlink === 0) await this.freeInode(inode);
    else await this.saveInode(inode);
  }

  /**
   * An inode lost its last link: freed with its xattr object, unless it is open, in which case it stays
   * with nlink 0 on the unlinked set until its last release (or until the next open after a crash).
   */
  private async freeInode(inode: Inode): Promise<void> {
    if ((this.openCounts.get(inode.ino) ?? 0) > 0) {
      this.openUnlinked.add(inode.ino);
      inode.phys.nlink = 0;
      await this.saveInode(inode);
      if (this.store.setBeforeSync) this.unlinkedPending.add(inode.ino);
      else await this.unlinked.set(String(inode.ino), Buffer.alloc(0));
      return;
    }
    if (inode.phys.xattrObjectId !== 0) await this.store.freeObject(inode.phys.xattrObjectId);
    await this.store.freeObject(inode.ino);
  }

  async retain(ino: number): Promise<void> {
    const count = this.openCounts.get(ino);
    if (count === undefined) await this.loadInode(ino); // ENOENT for an inode that does not exist
    this.openCounts.set(ino, (this.openCounts.get(ino) ?? 0) + 1);
  }

  async release(ino: number): Promise<void> {
    const count = this.openCounts.get(ino) ?? 0;
    if (count === 0) throw new CairnError('EINVAL', `release of inode ${ino}, which is not retained`);
    if (count > 1) {
      this.openCounts.set(ino, count - 1);
      return;
    }
    this.openCounts.delete(ino);
    if (!this.openUnlinked.has(ino)) return;
    await this.mutate(async () => {
      // Checked under the lock: a retain may have come in meanwhile.
      if ((this.openCounts.get(ino) ?? 0) > 0) return;
      this.openUnlinked.delete(ino);
      const inode = await this.loadInode(ino).catch((error: unknown) => {
        if (error instanceof CairnError && error.code === 'ENOENT') return undefined;
        throw error;
      });
      if (inode === undefined || inode.phys.nlink > 0) return;
      await this.freeInode(inode);
      if (!this.unlinkedPending.delete(ino)) await this.unlinked.delete(String(ino));
    });
  }

  /** The before-sync hook (unlinkedPending above); no lock: no mutation runs while a txg syncs. */
  private async recordUnlinked(own: ObjectStore): Promise<void> {
    if (this.unlinkedPending.size === 0) return;
    // Through the object set itself: the dataset may have turned readonly since (its store wrapper
    // then refuses writes), and the entries still belong to this txg.
    const unlinked = openKv(own, this.unlinked.objectId);
    for (const ino of this.unlinkedPending) await unlinked.set(String(ino), Buffer.alloc(0));
    this.unlinkedPending.clear();
  }

  private entryAdded(parent: Inode, now: bigint): void {
    parent.phys.sizeBytes++;
    parent.phys.mtimeNs = now;
    parent.phys.ctimeNs = now;
  }

  private entryRemoved(parent: Inode, now: bigint): void {
    assert(parent.phys.sizeBytes > 2, `directory ${parent.ino} size ${parent.phys.sizeBytes} would drop below 2`);
    parent.phys.sizeBytes--;
    parent.phys.mtimeNs = now;
    parent.phys.ctimeNs = now;
  }

  /** Frees whole blocks past newSize and zeroes the rest of the block it ends in. */
  private async freeTail(ino: number, newSizeBytes: number, oldSizeBytes: number): Promise<void> {
    const info = await this.store.objectInfo(ino);
    const endBytes = Math.max(oldSizeBytes, info.maxOffsetBytes);
    if (endBytes > newSizeBytes) await this.store.freeRange(ino, newSizeBytes, endBytes - newSizeBytes);
  }

  /** relatime: refresh atime only when it is older than mtime/ctime or a day old. */
  private async touchAtime(inode: Inode): Promise<void> {
    if (!this.atimeUpdates) return;
    const now = this.nowNs();
    const phys = inode.phys;
    if (phys.atimeNs > phys.mtimeNs && phys.atimeNs > phys.ctimeNs && now - phys.atimeNs < RELATIME_INTERVAL_NS) {
      return;
    }
    if (phys.atimeNs >= now) return;
    try {
      await this.mutate(async () => {
        const fresh = await this.loadInode(inode.ino);
        fresh.phys.atimeNs = now;
        await this.saveInode(fresh);
      });
    } catch (error) {
      // A read must not fail because atime cannot be recorded (read-only import, snapshot).
      if (!(error instanceof CairnError && error.code === 'EROFS')) throw error;
    }
  }

  private async requireEmpty(dirIno: number, name: string): Promise<void> {
    const page = await (await openKv(this.store, dirIno)).list(0n, 1);
    if (page.entries.length > 0) throw new CairnError('ENOTEMPTY', `directory "${name}" is not empty`);
  }

  /** Whether ancestorIno is ino or one of its ancestors, walking parent pointers up to the root. */
  private async isAncestorOrSelf(ancestorIno: number, ino: number): Promise<boolean> {
    let current = ino;
    for (let depth = 0; ; depth++) {
      if (current === ancestorIno) return true;
      if (current === this.rootIno) return false;
      assert(depth < 1_000_000, `directory ${ino} has a parent cycle`);
      current = (await this.loadInode(current)).phys.parentIno;
    }
  }

  private requireFile(inode: Inode): void {
    const kind = kindOfMode(inode.phys.mode);
    if (kind === FileKind.directory) throw new CairnError('EISDIR', `inode ${inode.ino} is a directory`);
    if (kind !== FileKind.file) throw new CairnError('EINVAL', `inode ${inode.ino} is not a regular file`);
  }

  private async findEntry(dirIno: number, name: string): Promise<{ ino: number; kindByte: number } | undefined> {
    const value = await openKv(this.store, dirIno).get(name);
    return value === undefined ? undefined : decodeDirent(value);
  }

  private async loadInode(ino: number): Promise<Inode> {
    if (!Number.isSafeInteger(ino) || ino <= 0) throw new CairnError('ENOENT', `no inode ${ino}`);
    let bonus: Buffer;
    try {
      bonus = await this.store.getBonus(ino);
    } catch (error) {
      if (error instanceof CairnError && error.code === 'ENOENT') {
        throw new CairnError('ENOENT', `no inode ${ino}`, { ino });
      }
      throw error;
    }
    const phys = decodeInode(bonus);
    if (phys === undefined) throw new CairnError('ENOENT', `object ${ino} is not a file, directory or symlink`);
    const inline =
      (phys.flags & INODE_FLAG_INLINE_SYMLINK) !== 0n
        ? bonus.subarray(INODE_SIZE_BYTES, INODE_SIZE_BYTES + phys.sizeBytes)
        : undefined;
    return { ino, phys, inline };
  }

  private async loadDirectory(ino: number): Promise<Inode> {
    const inode = await this.loadInode(ino);
    if (kindOfMode(inode.phys.mode) !== FileKind.directory) {
      throw new CairnError('ENOTDIR', `inode ${ino} is not a directory`);
    }
    return inode;
  }

  private async saveInode(inode: Inode): Promise<void> {
    await this.store.setBonus(inode.ino, encodeInode(inode.phys, inode.inline));
  }

  private async stat(inode: Inode): Promise<Stat> {
    const phys = inode.phys;
    const info = await this.store.objectInfo(inode.ino);
    return {
      ino: inode.ino,
      kind: kindOfMode(phys.mode),
      mode: phys.mode,
      uid: phys.uid,
      gid: phys.gid,
      nlink: phys.nlink,
      sizeBytes: phys.sizeBytes,
      allocatedBytes: info.usedBytes,
      atimeNs: phys.atimeNs,
      mtimeNs: phys.mtimeNs,
      ctimeNs: phys.ctimeNs,
      birthtimeNs: phys.birthtimeNs,
    };
  }

  /** Frees objects left on the unlinked list (files unlinked while open when the pool last stopped). */
  private async drainUnlinked(): Promise<void> {
    for (;;) {
      const page = await this.unlinked.list(0n, 256);
      if (page.entries.length === 0) return;
      for (const { key } of page.entries) {
        const ino = Number(key);
        try {
          // An object that is not (or no longer) an inode is still freed; an inode takes its xattrs along.
          const phys = decodeInode(await this.store.getBonus(ino));
          if (phys !== undefined && phys.xattrObjectId !== 0) await this.store.freeObject(phys.xattrObjectId);
          await this.store.freeObject(ino);
        } catch (error) {
          if (!(error instanceof CairnError && error.code === 'ENOENT')) throw error;
        }
        await this.unlinked.delete(key);
      }
    }
  }
}

/**
 * The `.cairn/snapshot` directory of a mounted file system, as OpenZFS's `.zfs/snapshot`: a virtual
 * directory at the root whose entries are the dataset's snapshots, each the read-only root of that
 * snapshot's file system.
 *
 * SnapshotNamespace is itself a FileSystemApi that wraps the live one, so the FUSE session serves it
 * unchanged (hidden names for open unlinked files, ESTALE on stale nodes, the namespace lock all apply).
 *
 * Inode numbers. Every inode of every file system served through one mount needs its own number, since
 * the kernel keys its caches on node ids and `stat` shows attr.ino. A number is
 * `fsIndex * 2^40 + ino`: index 0 is the live file system (so its numbers are its own inode numbers, as
 * before this existed), index 1 holds the two virtual directories, and each snapshot gets an index the
 * first time its name is looked up or listed. A snapshot's root directory is inner number 0 (object 0 is
 * never an inode), so listing `.cairn/snapshot` needs no snapshot opened. Limits: an inode number must be
 * below 2^40 (asserted; object ids of a pool that size are far off), and the index below 2^13, so every
 * number stays a safe JavaScript integer (< 2^53). That leaves 8190 snapshot indexes per mount; when they
 * run out, the index of a snapshot that no longer exists (or was replaced by a new one of the same name)
 * is reused, so a node id the kernel still caches from that dead snapshot would name a file of the new one
 * (the same caveat as inode reuse without generations, see docs/fuse.md). A gone snapshot's file system
 * is let go as soon as a listing misses it, so memory does not grow with destroyed snapshots.
 *
 * Freshness. The snapshot listing is asked of the provider at most once per cache period (the attribute
 * timeout the kernel also uses), and again on a lookup of a name that was not in it, so a snapshot taken
 * after the mount shows up at once and a destroyed one disappears once the kernel's dentry expires. A
 * snapshot destroyed (or destroyed and re-created) under an open file or a cached dentry answers ESTALE:
 * the provider's old file system fails with ENOENT and a new one of the same name gets a new index.
 *
 * Everything under `.cairn` is read-only: every mutation is EROFS (mkdir in `.cairn/snapshot` too; ZFS
 * would take a snapshot there, Cairn does not), and link/rename between the live file system and a
 * snapshot is EXDEV as across ZFS's separate snapshot mounts. `.cairn` itself cannot be created (EEXIST)
 * nor removed or renamed (EBUSY) in the live root; a real entry of that name in the live root is shadowed.
 */
import { assert } from '../util/assert.js';
import type { CreateOptions, DirEntry, FileSystemApi, SetAttr, SetXattrFlags, Stat } from '../fs/types.js';
import { S_IFDIR } from '../fs/index.js';
import { CairnError, isCairnError } from '../util/errors.js';
import { E, ErrnoReply } from './errno.js';

/** Where the dataset's snapshots come from; short names are what follows `@`. */
export interface SnapshotProvider {
  list(): Promise<string[]> | string[];
  open(shortName: string): Promise<FileSystemApi>;
}

export type SnapdirVisibility = 'hidden' | 'visible';

export const CONTROL_DIR_NAME = '.cairn';
export const SNAPSHOT_DIR_NAME = 'snapshot';
/** Numbers per file system: inode numbers of each one must be below this. */
export const INODE_SPAN = 2 ** 40;
/** File systems per mount (live, virtual, snapshots); INODE_SPAN * FS_INDEX_LIMIT = 2^53. */
export const FS_INDEX_LIMIT = 2 ** 13;

const CONTROL_INDEX = 1;
const FIRST_SNAPSHOT_INDEX = 2;
const CONTROL_DIR_INO = CONTROL_INDEX * INODE_SPAN + 1;
const SNAPSHOT_DIR_INO = CONTROL_INDEX * INODE_SPAN + 2;
/** Root readdir cursor meaning "`.cairn` was listed, the live entries start next". */
const CURSOR_AFTER_CONTROL = -1n;
const NAME_BYTES_MAX = 255;
const VIRTUAL_DIR_MODE = S_IFDIR | 0o555;

interface SnapshotSlot {
  readonly index: number;
  readonly name: string;
  /** Opened at first lookup; null while the slot only gave listing entries their numbers, or once dead. */
  fs: FileSystemApi | null;
  /** The snapshot is gone (or replaced by a new one of the same name): its nodes answer ESTALE. */
  dead: boolean;
}

export interface SnapshotNamespaceOptions {
  snapdir?: SnapdirVisibility;
  /** How long a snapshot listing may be reused; the mount passes its attribute timeout. */
  listCacheMs?: number;
  nowMs?: () => number;
}

function stale(): ErrnoReply {
  return new ErrnoReply(E.ESTALE);
}

function readonly(): CairnError {
  return new CairnError('EROFS', `${CONTROL_DIR_NAME} and the snapshots under it are read-only`);
}

function validSnapshotName(name: string): boolean {
  return name.length > 0 && !name.includes('/') && !name.includes('\0') && name !== '.' && name !== '..' && Buffer.byteLength(name) <= NAME_BYTES_MAX;
}

export class SnapshotNamespace implements FileSystemApi {
  readonly rootIno: number;
  private readonly snapdir: SnapdirVisibility;
  private readonly listCacheMs: number;
  private readonly nowMs: () => number;
  private readonly bySlotIndex = new Map<number, SnapshotSlot>();
  /** The current slot of each snapshot name; a slot replaced here stays in bySlotIndex (its nodes go stale). */
  private readonly byName = new Map<string, SnapshotSlot>();
  private nextIndex = FIRST_SNAPSHOT_INDEX;
  private listing: { names: string[]; present: ReadonlySet<string>; atMs: number } | null = null;
  private readonly virtualTimeNs: bigint;

  constructor(
    private readonly live: FileSystemApi,
    private readonly provider: SnapshotProvider,
    options: SnapshotNamespaceOptions = {},
  ) {
    assert(live.rootIno > 0 && live.rootIno < INODE_SPAN, `live root inode ${live.rootIno} out of range`);
    this.rootIno = live.rootIno;
    this.snapdir = options.snapdir ?? 'hidden';
    this.listCacheMs = options.listCacheMs ?? 1000;
    this.nowMs = options.nowMs ?? Date.now;
    this.virtualTimeNs = BigInt(this.nowMs()) * 1_000_000n;
  }

  /** Whether a node belongs to `.cairn` or a snapshot, where every change is refused. */
  isReadonlyIno(ino: number): boolean {
    return ino >= INODE_SPAN;
  }

  // ---- numbering ----

  private checkLive(st: Stat): Stat {
    assert(st.ino < INODE_SPAN, `inode ${st.ino} of the live file system is not below 2^40; node ids would collide`);
    return st;
  }

  private outerIno(slot: SnapshotSlot, fs: FileSystemApi, innerIno: number): number {
    if (innerIno === fs.rootIno) return slot.index * INODE_SPAN;
    assert(innerIno > 0 && innerIno < INODE_SPAN, `inode ${innerIno} of snapshot '${slot.name}' is not in 1..2^40`);
    return slot.index * INODE_SPAN + innerIno;
  }

  private snapshotStat(slot: SnapshotSlot, fs: FileSystemApi, st: Stat): Stat {
    return { ...st, ino: this.outerIno(slot, fs, st.ino) };
  }

  private virtualStat(ino: number, nlink: number): Stat {
    const t = this.virtualTimeNs;
    return { ino, kind: 'directory', mode: VIRTUAL_DIR_MODE, uid: 0, gid: 0, nlink, sizeBytes: 0, allocatedBytes: 0, atimeNs: t, mtimeNs: t, ctimeNs: t, birthtimeNs: t };
  }

  /** The snapshot file system an outer number belongs to, and the inode inside it. */
  private async inside(ino: number): Promise<{ slot: SnapshotSlot; fs: FileSystemApi; inner: number }> {
    const index = Math.floor(ino / INODE_SPAN);
    const slot = this.bySlotIndex.get(index);
    if (!slot || slot.dead) throw stale(); // a gone snapshot, or a number never handed out
    const fs = slot.fs ?? (slot.fs = await this.openFs(slot.name));
    const innerPart = ino - index * INODE_SPAN;
    return { slot, fs, inner: innerPart === 0 ? fs.rootIno : innerPart };
  }

  private async openFs(name: string): Promise<FileSystemApi> {
    try {
      return await this.provider.open(name);
    } catch (e) {
      if (isCairnError(e, 'ENOENT')) throw stale();
      throw e;
    }
  }

  /** ENOENT about an inode of a snapshot means the snapshot went away under an open file or cached node. */
  private async staleOnMissing<T>(call: Promise<T>): Promise<T> {
    try {
      return await call;
    } catch (e) {
      if (isCairnError(e, 'ENOENT')) throw stale();
      throw e;
    }
  }

  // ---- the snapshot list ----

  /** The sorted snapshot names and their set, from the provider at most once per cache period unless fresh. */
  private async snapshotNames(fresh: boolean): Promise<{ names: string[]; present: ReadonlySet<string> }> {
    const now = this.nowMs();
    if (!fresh && this.listing && now - this.listing.atMs < this.listCacheMs) return this.listing;
    const present = new Set((await this.provider.list()).filter(validSnapshotName));
    const names = [...present].sort();
    this.listing = { names, present, atMs: now };
    for (const slot of this.byName.values()) if (!present.has(slot.name)) this.retire(slot);
    return this.listing;
  }

  /** Lets go of a gone snapshot's file system (so memory does not grow with destroyed snapshots); its nodes go stale. */
  private retire(slot: SnapshotSlot): void {
    slot.dead = true;
    slot.fs = null;
    if (this.byName.get(slot.name) === slot) this.byName.delete(slot.name);
  }

  /** A slot for `name`, reusing an index of a dead snapshot when all are taken; null when none is free. */
  private slotFor(name: string, present: ReadonlySet<string>): SnapshotSlot | null {
    const known = this.byName.get(name);
    if (known) return known;
    let index = this.nextIndex < FS_INDEX_LIMIT ? this.nextIndex++ : -1;
    if (index < 0) {
      for (const slot of this.bySlotIndex.values()) {
        if (slot.dead || !present.has(slot.name)) {
          index = slot.index;
          this.retire(slot);
          break;
        }
      }
      if (index < 0) return null;
    }
    const slot: SnapshotSlot = { index, name, fs: null, dead: false };
    this.bySlotIndex.set(index, slot);
    this.byName.set(name, slot);
    return slot;
  }

  /** Looks a snapshot up by name (asking the provider again on a miss) and opens it. */
  private async lookupSnapshot(name: string): Promise<Stat> {
    if (!validSnapshotName(name)) throw new CairnError('ENOENT', `no snapshot '${name}'`);
    let listing = await this.snapshotNames(false);
    if (!listing.present.has(name)) listing = await this.snapshotNames(true);
    if (!listing.present.has(name)) throw new CairnError('ENOENT', `no snapshot '${name}'`);
    const fs = await this.provider.open(name);
    let slot = this.byName.get(name);
    if (slot && slot.fs !== null && slot.fs !== fs) {
      // destroyed and taken again under the same name: a new index, so nodes of the old one go stale
      this.retire(slot);
      slot = undefined;
    }
    slot ??= this.slotFor(name, listing.present) ?? undefined;
    if (!slot) throw new CairnError('EBUSY', `more than ${FS_INDEX_LIMIT - FIRST_SNAPSHOT_INDEX} snapshots in use through this mount`);
    slot.fs = fs;
    return this.snapshotStat(slot, fs, await fs.getattr(fs.rootIno));
  }

  private async listSnapshotDir(cursor: bigint, limit: number): Promise<{ entries: DirEntry[]; cursor: bigint | null }> {
    const { names, present } = await this.snapshotNames(false);
    const start = Number(cursor);
    const end = Math.min(names.length, start + limit);
    const entries: DirEntry[] = [];
    for (let i = start; i < end; i++) {
      const name = names[i]!;
      // d_ino is only a hint (no READDIRPLUS): with every index taken, the directory's own number stands in
      const slot = this.slotFor(name, present);
      entries.push({ name, ino: slot ? slot.index * INODE_SPAN : SNAPSHOT_DIR_INO, kind: 'directory' });
    }
    return { entries, cursor: end < names.length ? BigInt(end) : null };
  }

  private async listRoot(cursor: bigint, limit: number): Promise<{ entries: DirEntry[]; cursor: bigint | null }> {
    const visible = this.snapdir === 'visible';
    let page: { entries: DirEntry[]; cursor: bigint | null };
    let first: DirEntry | null = null;
    if (visible && cursor === 0n) {
      first = { name: CONTROL_DIR_NAME, ino: CONTROL_DIR_INO, kind: 'directory' };
      if (limit === 1) return { entries: [first], cursor: CURSOR_AFTER_CONTROL };
      page = await this.live.readdir(this.rootIno, 0n, limit - 1);
    } else {
      page = await this.live.readdir(this.rootIno, cursor === CURSOR_AFTER_CONTROL ? 0n : cursor, limit);
    }
    assert(page.cursor === null || page.cursor >= 0n, 'live readdir cursors are not negative');
    const entries: DirEntry[] = first ? [first] : [];
    for (const entry of page.entries) {
      if (entry.name === CONTROL_DIR_NAME) continue; // shadowed by the virtual directory
      assert(entry.ino < INODE_SPAN, `inode ${entry.ino} of the live file system is not below 2^40`);
      entries.push(entry);
    }
    return { entries, cursor: page.cursor };
  }

  // ---- FileSystemApi: reads ----

  async lookup(parentIno: number, name: string): Promise<Stat> {
    if (parentIno < INODE_SPAN) {
      if (parentIno === this.rootIno && name === CONTROL_DIR_NAME) return this.virtualStat(CONTROL_DIR_INO, 3);
      return this.checkLive(await this.live.lookup(parentIno, name));
    }
    if (parentIno === CONTROL_DIR_INO) {
      if (name === SNAPSHOT_DIR_NAME) return this.virtualStat(SNAPSHOT_DIR_INO, 2);
      throw new CairnError('ENOENT', `no '${name}' in ${CONTROL_DIR_NAME}`);
    }
    if (parentIno === SNAPSHOT_DIR_INO) return this.lookupSnapshot(name);
    const { slot, fs, inner } = await this.inside(parentIno);
    // ENOENT stays ENOENT here: it names the entry, not the (still valid) directory
    return this.snapshotStat(slot, fs, await fs.lookup(inner, name));
  }

  async getattr(ino: number): Promise<Stat> {
    if (ino < INODE_SPAN) return this.live.getattr(ino);
    if (ino === CONTROL_DIR_INO) return this.virtualStat(CONTROL_DIR_INO, 3);
    if (ino === SNAPSHOT_DIR_INO) return this.virtualStat(SNAPSHOT_DIR_INO, 2);
    const { slot, fs, inner } = await this.inside(ino);
    return this.snapshotStat(slot, fs, await this.staleOnMissing(fs.getattr(inner)));
  }

  async readdir(ino: number, cursor: bigint, limit: number): Promise<{ entries: DirEntry[]; cursor: bigint | null }> {
    if (ino === this.rootIno) return this.listRoot(cursor, limit);
    if (ino < INODE_SPAN) return this.live.readdir(ino, cursor, limit);
    if (ino === CONTROL_DIR_INO) {
      return { entries: cursor === 0n ? [{ name: SNAPSHOT_DIR_NAME, ino: SNAPSHOT_DIR_INO, kind: 'directory' }] : [], cursor: null };
    }
    if (ino === SNAPSHOT_DIR_INO) return this.listSnapshotDir(cursor, limit);
    const { slot, fs, inner } = await this.inside(ino);
    const page = await this.staleOnMissing(fs.readdir(inner, cursor, limit));
    const entries = page.entries.map((entry): DirEntry => ({ name: entry.name, ino: this.outerIno(slot, fs, entry.ino), kind: entry.kind }));
    return { entries, cursor: page.cursor };
  }

  async readlink(ino: number): Promise<string> {
    if (ino < INODE_SPAN) return this.live.readlink(ino);
    if (ino === CONTROL_DIR_INO || ino === SNAPSHOT_DIR_INO) throw new CairnError('EINVAL', 'not a symlink');
    const { fs, inner } = await this.inside(ino);
    return this.staleOnMissing(fs.readlink(inner));
  }

  async read(ino: number, offset: number, length: number): Promise<Buffer> {
    if (ino < INODE_SPAN) return this.live.read(ino, offset, length);
    if (ino === CONTROL_DIR_INO || ino === SNAPSHOT_DIR_INO) throw new CairnError('EISDIR', 'is a directory');
    const { fs, inner } = await this.inside(ino);
    return this.staleOnMissing(fs.read(inner, offset, length));
  }

  async readInto(ino: number, offset: number, target: Buffer): Promise<number> {
    if (ino < INODE_SPAN) return this.live.readInto(ino, offset, target);
    if (ino === CONTROL_DIR_INO || ino === SNAPSHOT_DIR_INO) throw new CairnError('EISDIR', 'is a directory');
    const { fs, inner } = await this.inside(ino);
    return this.staleOnMissing(fs.readInto(inner, offset, target));
  }

  resolvePath(path: string): Promise<Stat> {
    // a convenience of the library, not reached by FUSE: the live tree only
    return this.live.resolvePath(path);
  }

  statfs(): Promise<{ totalBytes: number; freeBytes: number; availableBytes: number; files: number }> {
    return this.live.statfs();
  }

  async getxattr(ino: number, name: string): Promise<Buffer> {
    if (ino < INODE_SPAN) return this.live.getxattr(ino, name);
    if (ino === CONTROL_DIR_INO || ino === SNAPSHOT_DIR_INO) throw new CairnError('ENODATA', `no attribute '${name}'`);
    const { fs, inner } = await this.inside(ino);
    return this.staleOnMissing(fs.getxattr(inner, name));
  }

  async listxattr(ino: number): Promise<string[]> {
    if (ino < INODE_SPAN) return this.live.listxattr(ino);
    if (ino === CONTROL_DIR_INO || ino === SNAPSHOT_DIR_INO) return [];
    const { fs, inner } = await this.inside(ino);
    return this.staleOnMissing(fs.listxattr(inner));
  }

  // ---- FileSystemApi: changes (live only) ----

  private refuseName(parentIno: number, name: string, errno: 'EEXIST' | 'EBUSY'): void {
    if (parentIno === this.rootIno && name === CONTROL_DIR_NAME) {
      throw new CairnError(errno, `${CONTROL_DIR_NAME} is the virtual snapshot directory`);
    }
  }

  async setattr(ino: number, attr: SetAttr): Promise<Stat> {
    if (ino >= INODE_SPAN) throw readonly();
    return this.live.setattr(ino, attr);
  }

  async create(parentIno: number, name: string, options: CreateOptions): Promise<Stat> {
    if (parentIno >= INODE_SPAN) throw readonly();
    this.refuseName(parentIno, name, 'EEXIST');
    return this.checkLive(await this.live.create(parentIno, name, options));
  }

  async mkdir(parentIno: number, name: string, options: CreateOptions): Promise<Stat> {
    if (parentIno >= INODE_SPAN) throw readonly();
    this.refuseName(parentIno, name, 'EEXIST');
    return this.checkLive(await this.live.mkdir(parentIno, name, options));
  }

  async symlink(parentIno: number, name: string, target: string, options?: Partial<CreateOptions>): Promise<Stat> {
    if (parentIno >= INODE_SPAN) throw readonly();
    this.refuseName(parentIno, name, 'EEXIST');
    return this.checkLive(await this.live.symlink(parentIno, name, target, options));
  }

  async link(ino: number, newParentIno: number, newName: string): Promise<Stat> {
    if (newParentIno >= INODE_SPAN) throw readonly();
    this.refuseName(newParentIno, newName, 'EEXIST');
    if (ino >= INODE_SPAN) throw new CairnError('EXDEV', 'cannot link a snapshot file into the live file system');
    return this.checkLive(await this.live.link(ino, newParentIno, newName));
  }

  async unlink(parentIno: number, name: string): Promise<void> {
    if (parentIno >= INODE_SPAN) throw readonly();
    this.refuseName(parentIno, name, 'EBUSY');
    return this.live.unlink(parentIno, name);
  }

  async rmdir(parentIno: number, name: string): Promise<void> {
    if (parentIno >= INODE_SPAN) throw readonly();
    this.refuseName(parentIno, name, 'EBUSY');
    return this.live.rmdir(parentIno, name);
  }

  async rename(parentIno: number, name: string, newParentIno: number, newName: string): Promise<void> {
    const fromLive = parentIno < INODE_SPAN;
    const toLive = newParentIno < INODE_SPAN;
    if (!fromLive && !toLive) throw readonly();
    if (fromLive !== toLive) throw new CairnError('EXDEV', 'cannot rename between the live file system and a snapshot');
    this.refuseName(parentIno, name, 'EBUSY');
    this.refuseName(newParentIno, newName, 'EBUSY');
    return this.live.rename(parentIno, name, newParentIno, newName);
  }

  async write(ino: number, offset: number, data: Buffer): Promise<number> {
    if (ino >= INODE_SPAN) throw readonly();
    return this.live.write(ino, offset, data);
  }

  async setxattr(ino: number, name: string, value: Buffer, flags?: SetXattrFlags): Promise<void> {
    if (ino >= INODE_SPAN) throw readonly();
    return this.live.setxattr(ino, name, value, flags);
  }

  async removexattr(ino: number, name: string): Promise<void> {
    if (ino >= INODE_SPAN) throw readonly();
    return this.live.removexattr(ino, name);
  }

  // Snapshot inodes are never freed while the snapshot exists: only live opens are tracked.
  async retain(ino: number): Promise<void> {
    if (ino < INODE_SPAN) await this.live.retain?.(ino);
  }

  async release(ino: number): Promise<void> {
    if (ino < INODE_SPAN) await this.live.release?.(ino);
  }
}

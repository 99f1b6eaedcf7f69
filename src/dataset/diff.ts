/**
 * `zfs diff` for Cairn: what changed in a file system between an older version (a snapshot taken in
 * txg `from.txg`) and a newer one (a later snapshot, or the live file system).
 *
 * How (as OpenZFS's dmu_diff + libzfs_diff): the object layer names the objects whose dnode changed,
 * reading only meta-dnode blocks born after from.txg (ObjectSet.changedObjects), so the cost follows the
 * change, not the size of the file system. Each such object's inode is read on both sides and judged:
 *   - only in the newer version: '+'; only in the older one: '-'; a different generation or file type
 *     (the object was freed and its id reused): '-' then '+';
 *   - both, with nothing but atime different: not reported (a read is no change);
 *   - both, link count changed (not a directory): 'M' at one of its paths, as zfs does;
 *   - both, a different parent or name: 'R' path -> newPath (rename changed the object's parent
 *     pointer and ctime);
 *   - both, same parent and name: 'M' at the newer path (contents or metadata; a directory whose
 *     entries changed is 'M').
 * A directory renamed moves its descendants without changing them, so they are not reported (zfs too).
 * A descendant that changed for its own reasons is 'M' at its new path; zfs, which compares whole paths,
 * would call it 'R', but its name and parent did not change.
 *
 * Paths: an inode keeps its parent's object id, not its name, so a name is found by scanning the parent
 * directory for the entry pointing at the object (zfs's zap_value_search). Objects are handled in
 * batches of DIFF_BATCH_OBJECTS_MAX: each parent directory is scanned once per batch for every child
 * the batch needs, and ancestor paths come from a bounded cache. Memory: one batch, one readdir page and
 * the cache. A file whose parent no longer lists it (its first hard link was removed and another link
 * remains elsewhere) is named `<parent>/(object N)`: finding its other links would mean a full walk.
 *
 * Order: ascending object id (the order the object layer finds them; deterministic), '-' before '+'
 * for a reused id.
 */
import type { ChangedObjectsCounters, ObjectSet } from '../objects/objset.js';
import type { FileKind, FileSystemApi } from '../fs/types.js';
import { decodeInode, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, type InodePhys } from '../fs/inode.js';
import { isCairnError } from '../util/errors.js';
import { assert } from '../util/assert.js';

export type DiffChange = '+' | '-' | 'M' | 'R';

export interface DiffEntry {
  change: DiffChange;
  kind: FileKind;
  /** The path in the older version for '-', 'R' and a link count increase ('M'); else in the newer one. */
  path: string;
  /** 'R' only: the path in the newer version. */
  newPath?: string;
}

export interface DiffSide {
  fs: FileSystemApi;
  objset: ObjectSet;
}

export interface DiffFromSide extends DiffSide {
  /** Txg of the snapshot: every block of `objset` is born at or before it. */
  txg: number;
}

export interface DiffOptions {
  /** Filled with what the object layer read (tests, `zfs diff -v`-style statistics). */
  counters?: ChangedObjectsCounters;
}

/** Changed objects judged per batch (bounds memory; each parent directory is scanned once per batch). */
export const DIFF_BATCH_OBJECTS_MAX = 256;
/** Directory paths remembered per side. */
const DIR_PATH_CACHE_MAX = 4096;
/** Entries per readdir page while looking for names. */
const NAME_SCAN_PAGE_ENTRIES = 1024;
/** Deepest path followed up parent pointers before the tree is declared broken. */
const PATH_DEPTH_MAX = 4096;

interface Judged {
  id: number;
  before: InodePhys | undefined;
  after: InodePhys | undefined;
}

/**
 * What changed from `from` (a snapshot, taken in txg from.txg) to `to` (a later snapshot or clone of the
 * same file system, or the live one, unsynced changes included), as `zfs diff` reports it, in ascending
 * object id order. Not checked: that `from` really is an earlier version of `to` (the caller, like zfs,
 * must refuse unrelated snapshots), and that `to` does not change while the diff runs.
 */
export async function* diffFilesystems(from: DiffFromSide, to: DiffSide, options: DiffOptions = {}): AsyncGenerator<DiffEntry> {
  const older = new PathResolver(from);
  const newer = new PathResolver(to);
  let batch: Judged[] = [];
  for await (const id of to.objset.changedObjects(from.txg, from.objset, options.counters)) {
    const before = await inodeOf(from.objset, id);
    const after = await inodeOf(to.objset, id);
    if (before === undefined && after === undefined) continue; // not a file system object, or never seen
    if (before !== undefined && after !== undefined && sameExceptAtime(before, after)) continue;
    batch.push({ id, before, after });
    if (batch.length >= DIFF_BATCH_OBJECTS_MAX) {
      yield* judgeBatch(batch, older, newer);
      batch = [];
    }
  }
  yield* judgeBatch(batch, older, newer);
}

async function* judgeBatch(batch: Judged[], older: PathResolver, newer: PathResolver): AsyncGenerator<DiffEntry> {
  if (batch.length === 0) return;
  const oldPaths = await older.pathsOf(batch.flatMap((j) => (j.before ? [{ ino: j.id, inode: j.before }] : [])));
  const newPaths = await newer.pathsOf(batch.flatMap((j) => (j.after ? [{ ino: j.id, inode: j.after }] : [])));
  for (const { id, before, after } of batch) {
    const oldPath = oldPaths.get(id);
    const newPath = newPaths.get(id);
    if (before === undefined) {
      assert(after !== undefined && newPath !== undefined, `object ${id}: no path on the newer side`);
      yield { change: '+', kind: kindOf(after.mode), path: newPath };
      continue;
    }
    assert(oldPath !== undefined, `object ${id}: no path on the older side`);
    if (after === undefined) {
      yield { change: '-', kind: kindOf(before.mode), path: oldPath };
      continue;
    }
    assert(newPath !== undefined, `object ${id}: no path on the newer side`);
    if (before.generation !== after.generation || (before.mode & S_IFMT) !== (after.mode & S_IFMT)) {
      yield { change: '-', kind: kindOf(before.mode), path: oldPath };
      yield { change: '+', kind: kindOf(after.mode), path: newPath };
      continue;
    }
    const kind = kindOf(after.mode);
    if (kind !== 'directory' && before.nlink !== after.nlink) {
      yield { change: 'M', kind, path: after.nlink > before.nlink ? oldPath : newPath };
    } else if (before.parentIno !== after.parentIno || baseName(oldPath) !== baseName(newPath)) {
      yield { change: 'R', kind, path: oldPath, newPath };
    } else {
      yield { change: 'M', kind, path: newPath };
    }
  }
}

/** The inode of object id, or undefined when the object is free or holds no inode (master node, kv). */
async function inodeOf(objset: ObjectSet, id: number): Promise<InodePhys | undefined> {
  let bonus: Buffer;
  try {
    bonus = await objset.getBonus(id);
  } catch (error) {
    if (isCairnError(error, 'ENOENT')) return undefined;
    throw error;
  }
  return decodeInode(bonus);
}

/** Everything but atime: relatime updates on read are not changes (zfs compares ctime alone). */
function sameExceptAtime(a: InodePhys, b: InodePhys): boolean {
  return a.mode === b.mode && a.uid === b.uid && a.gid === b.gid && a.nlink === b.nlink && a.sizeBytes === b.sizeBytes &&
    a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs && a.birthtimeNs === b.birthtimeNs && a.generation === b.generation &&
    a.parentIno === b.parentIno && a.flags === b.flags && a.xattrObjectId === b.xattrObjectId;
}

function kindOf(mode: number): FileKind {
  switch (mode & S_IFMT) {
    case S_IFDIR:
      return 'directory';
    case S_IFLNK:
      return 'symlink';
    case S_IFREG:
      return 'file';
    default:
      // decodeInode accepted it, so the file system wrote it: any other type is a bug or damage.
      assert(false, `inode with unknown file type ${(mode & S_IFMT).toString(8)}`);
      return 'file';
  }
}

function baseName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

function joinPath(parentPath: string, name: string): string {
  return parentPath === '/' ? `/${name}` : `${parentPath}/${name}`;
}

/** Paths of objects in one version of a file system, from parent pointers and directory scans. */
class PathResolver {
  /** Directory object id → path, in LRU order (Map insertion order). */
  private readonly dirPaths = new Map<number, string>();

  constructor(private readonly side: DiffSide) {}

  /** Paths of several objects; each parent directory is scanned once for all of its wanted children. */
  async pathsOf(items: ReadonlyArray<{ ino: number; inode: InodePhys }>): Promise<Map<number, string>> {
    const out = new Map<number, string>();
    const byParent = new Map<number, Set<number>>();
    for (const { ino, inode } of items) {
      if (ino === this.side.fs.rootIno) {
        out.set(ino, '/');
        continue;
      }
      let wanted = byParent.get(inode.parentIno);
      if (!wanted) byParent.set(inode.parentIno, (wanted = new Set()));
      wanted.add(ino);
    }
    for (const [parentIno, wanted] of byParent) {
      const parentPath = await this.dirPath(parentIno, 0);
      const names = await this.namesIn(parentIno, wanted);
      for (const ino of wanted) out.set(ino, joinPath(parentPath, names.get(ino) ?? `(object ${ino})`));
    }
    return out;
  }

  private async dirPath(dirIno: number, depth: number): Promise<string> {
    if (dirIno === this.side.fs.rootIno) return '/';
    const cached = this.dirPaths.get(dirIno);
    if (cached !== undefined) {
      this.dirPaths.delete(dirIno);
      this.dirPaths.set(dirIno, cached);
      return cached;
    }
    assert(depth < PATH_DEPTH_MAX, `directory ${dirIno}: parent pointers form a cycle or are deeper than ${PATH_DEPTH_MAX}`);
    const inode = await inodeOf(this.side.objset, dirIno);
    assert(inode !== undefined, `directory ${dirIno} on a parent chain does not exist`);
    const parentPath = await this.dirPath(inode.parentIno, depth + 1);
    const name = (await this.namesIn(inode.parentIno, new Set([dirIno]))).get(dirIno) ?? `(object ${dirIno})`;
    const path = joinPath(parentPath, name);
    this.dirPaths.set(dirIno, path);
    if (this.dirPaths.size > DIR_PATH_CACHE_MAX) {
      const oldest = this.dirPaths.keys().next();
      if (!oldest.done) this.dirPaths.delete(oldest.value);
    }
    return path;
  }

  /** Names of the wanted children in directory dirIno, one page at a time, stopping when all are found. */
  private async namesIn(dirIno: number, wanted: ReadonlySet<number>): Promise<Map<number, string>> {
    const names = new Map<number, string>();
    let cursor: bigint | null = 0n;
    while (cursor !== null && names.size < wanted.size) {
      const page: Awaited<ReturnType<FileSystemApi['readdir']>> = await this.side.fs.readdir(dirIno, cursor, NAME_SCAN_PAGE_ENTRIES);
      for (const entry of page.entries) {
        // Hard links: the first name found is the one reported, as zfs reports one path.
        if (wanted.has(entry.ino) && !names.has(entry.ino)) names.set(entry.ino, entry.name);
      }
      cursor = page.cursor;
    }
    return names;
  }
}

export interface FormatDiffOptions {
  /** zfs diff -F: a column with the file type ('F' file, '/' directory, '@' symlink). */
  classify?: boolean;
  /** zfs diff -h: paths as they are, without escaping. Default true. */
  escape?: boolean;
}

const KIND_SYMBOL: Record<FileKind, string> = { file: 'F', directory: '/', symlink: '@' };

/**
 * One line of `zfs diff` output, without the newline: `M\t/path`, `R\t/a -> /b`. Path bytes outside
 * printable ASCII, space and backslash are written as a backslash and four octal digits (`\0040` for a
 * space), byte by byte of the UTF-8 encoding, as current OpenZFS's stream_bytes does.
 */
export function formatDiffEntry(entry: DiffEntry, options: FormatDiffOptions = {}): string {
  const head = options.classify ? `${entry.change}\t${KIND_SYMBOL[entry.kind]}\t` : `${entry.change}\t`;
  const show = options.escape === false ? (p: string) => p : escapeDiffPath;
  const path = show(entry.path);
  return entry.change === 'R' && entry.newPath !== undefined ? `${head}${path} -> ${show(entry.newPath)}` : `${head}${path}`;
}

export function escapeDiffPath(path: string): string {
  const bytes = Buffer.from(path, 'utf8');
  let out = '';
  for (const byte of bytes) {
    if (byte > 0x20 && byte !== 0x5c && byte < 0x7f) out += String.fromCharCode(byte);
    else out += `\\${byte.toString(8).padStart(4, '0')}`;
  }
  return out;
}

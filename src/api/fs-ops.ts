/**
 * Path-level file operations the daemon serves (cp, cat, ls, mkdir, rm, mv, ln, chmod) on a dataset's FileSystemApi, on
 * top of fs/paths.ts. Two are the daemon's own: reading yields chunks (so the HTTP answer can start only
 * once the first read has worked, and report a later failure in its trailer), and listing pages with a
 * cursor the client carries between requests. A file moves in chunks of at most STREAM_CHUNK_BYTES, a
 * directory in pages of at most LIST_PAGE_ENTRIES_MAX entries.
 */
import { posix } from 'node:path';
import { mkdirp, removePath, resolvePathFollow, writeFileFromStream } from '../fs/index.js';
import type { FileSystemApi, Stat } from '../fs/index.js';
import { CairnError, isCairnError } from '../util/errors.js';
import type { WireDirEntry, WireStat } from './protocol.js';
import { LIST_PAGE_ENTRIES_MAX } from './protocol.js';

export const STREAM_CHUNK_BYTES = 1024 * 1024;

const FS_MESSAGES: Partial<Record<string, string>> = {
  ENOENT: 'no such file or directory',
  EEXIST: 'file exists',
  ENOTDIR: 'not a directory',
  EISDIR: 'is a directory',
  ENOTEMPTY: 'directory not empty',
  ENAMETOOLONG: 'file name too long',
  ENOSPC: 'out of space',
  EROFS: 'read-only file system',
  EXDEV: 'cross-device link',
  EPERM: 'operation not permitted',
};

/** Rewrites a file-system error as "tank/home:/a/b: no such file or directory", keeping its code. */
export function fsError(error: unknown, dataset: string, path: string): unknown {
  if (!isCairnError(error)) return error;
  const reason = FS_MESSAGES[error.code] ?? error.message;
  return new CairnError(error.code, `${dataset}:${path}: ${reason}`, error.data);
}

/** "/a/b/../c/" → "/a/c"; the path must be absolute. */
export function normalizePath(path: string): string {
  if (!path.startsWith('/')) throw new CairnError('EINVAL', `path '${path}' must be absolute`);
  const normal = posix.normalize(path);
  return normal.length > 1 && normal.endsWith('/') ? normal.slice(0, -1) : normal;
}

export function toWireStat(stat: Stat): WireStat {
  return {
    ino: stat.ino,
    kind: stat.kind,
    mode: stat.mode,
    uid: stat.uid,
    gid: stat.gid,
    nlink: stat.nlink,
    sizeBytes: stat.sizeBytes,
    allocatedBytes: stat.allocatedBytes,
    atimeNs: stat.atimeNs.toString(),
    mtimeNs: stat.mtimeNs.toString(),
    ctimeNs: stat.ctimeNs.toString(),
  };
}

async function resolveDirectory(fs: FileSystemApi, path: string): Promise<Stat> {
  const stat = await fs.resolvePath(path);
  if (stat.kind !== 'directory') throw new CairnError('ENOTDIR', `${path}: not a directory`);
  return stat;
}

/** The directory a path lives in and its last component; the root has no parent. */
async function resolveParent(fs: FileSystemApi, path: string): Promise<{ parent: Stat; name: string }> {
  const normal = normalizePath(path);
  if (normal === '/') throw new CairnError('EISDIR', '/: is a directory');
  return { parent: await resolveDirectory(fs, posix.dirname(normal)), name: posix.basename(normal) };
}

export async function mkdirPath(fs: FileSystemApi, path: string, parents: boolean, modeBits: number): Promise<Stat> {
  const normal = normalizePath(path);
  if (parents) return mkdirp(fs, normal, modeBits);
  const { parent, name } = await resolveParent(fs, normal);
  return fs.mkdir(parent.ino, name, { mode: modeBits });
}

/** One page of a directory; a file lists as itself (as ls does). */
export async function listPath(
  fs: FileSystemApi,
  path: string,
  cursorText: string | undefined,
  limit: number,
  long: boolean,
): Promise<{ directory: boolean; entries: WireDirEntry[]; cursor: string | null }> {
  const normal = normalizePath(path);
  const stat = await fs.resolvePath(normal);
  if (stat.kind !== 'directory') {
    if (cursorText !== undefined) return { directory: false, entries: [], cursor: null };
    const entry: WireDirEntry = { name: posix.basename(normal), ino: stat.ino, kind: stat.kind };
    if (long) await fillLong(fs, entry, stat);
    return { directory: false, entries: [entry], cursor: null };
  }
  let cursor: bigint;
  try {
    cursor = BigInt(cursorText ?? '0');
  } catch {
    throw new CairnError('EINVAL', `bad directory cursor '${cursorText ?? ''}'`);
  }
  const pageLimit = Math.max(1, Math.min(LIST_PAGE_ENTRIES_MAX, Math.floor(limit)));
  const page = await fs.readdir(stat.ino, cursor, pageLimit);
  const entries: WireDirEntry[] = [];
  for (const item of page.entries) {
    const entry: WireDirEntry = { name: item.name, ino: item.ino, kind: item.kind };
    if (long) await fillLong(fs, entry, await fs.getattr(item.ino));
    entries.push(entry);
  }
  return { directory: true, entries, cursor: page.cursor === null ? null : page.cursor.toString() };
}

async function fillLong(fs: FileSystemApi, entry: WireDirEntry, stat: Stat): Promise<void> {
  entry.stat = toWireStat(stat);
  if (stat.kind === 'symlink') entry.target = await fs.readlink(stat.ino);
}

/** rm [-r] [-f]: unlike rmdir, rm without -r refuses any directory, empty or not (as GNU rm does). */
export async function removePathTree(fs: FileSystemApi, path: string, recursive: boolean, force: boolean): Promise<void> {
  const normal = normalizePath(path);
  try {
    const { parent, name } = await resolveParent(fs, normal);
    const stat = await fs.lookup(parent.ino, name);
    if (stat.kind === 'directory' && !recursive) throw new CairnError('EISDIR', `${normal}: is a directory`);
    await removePath(fs, normal, { recursive });
  } catch (error) {
    if (force && isCairnError(error, 'ENOENT')) return;
    throw error;
  }
}

/**
 * The checks an upload would fail first (parent missing or not a directory, target a directory), made
 * before the client sends the body (HTTP 100-continue), so a typo costs no transfer.
 */
export async function checkUploadTarget(fs: FileSystemApi, path: string): Promise<void> {
  const normal = normalizePath(path);
  if (normal === '/') throw new CairnError('EISDIR', '/: is a directory');
  const parent = await resolvePathFollow(fs, posix.dirname(normal));
  if (parent.kind !== 'directory') throw new CairnError('ENOTDIR', `${posix.dirname(normal)}: not a directory`);
  let existing: Stat | null = null;
  try {
    existing = await fs.lookup(parent.ino, posix.basename(normal));
  } catch (error) {
    if (!isCairnError(error, 'ENOENT')) throw error;
  }
  if (existing?.kind === 'directory') throw new CairnError('EISDIR', `${normal}: is a directory`);
}

/** cp into the pool: creates or truncates the file and streams source into it. */
export async function writeFileFrom(
  fs: FileSystemApi,
  path: string,
  source: AsyncIterable<Buffer>,
  modeBits: number,
): Promise<number> {
  return writeFileFromStream(fs, normalizePath(path), source, modeBits & 0o7777);
}

/** The file's chunks in order, each at most STREAM_CHUNK_BYTES. */
export async function* readFileChunks(fs: FileSystemApi, path: string): AsyncGenerator<Buffer> {
  const stat = await fs.resolvePath(normalizePath(path));
  if (stat.kind === 'directory') throw new CairnError('EISDIR', `${path}: is a directory`);
  let offset = 0;
  for (;;) {
    const chunk = await fs.read(stat.ino, offset, STREAM_CHUNK_BYTES);
    if (chunk.length === 0) return;
    offset += chunk.length;
    yield chunk;
    if (chunk.length < STREAM_CHUNK_BYTES) return;
  }
}

/** mv within one dataset (the caller refuses a move across datasets with EXDEV). */
export async function renamePath(fs: FileSystemApi, path: string, toPath: string): Promise<void> {
  const from = await resolveParent(fs, path);
  const to = await resolveParent(fs, toPath);
  await fs.rename(from.parent.ino, from.name, to.parent.ino, to.name);
}

/** ln: a hard link at toPath to the (non-directory) file at path. */
export async function linkPath(fs: FileSystemApi, path: string, toPath: string): Promise<Stat> {
  const existing = await fs.resolvePath(normalizePath(path));
  if (existing.kind === 'directory') throw new CairnError('EPERM', `${path}: hard link not allowed for directory`);
  const to = await resolveParent(fs, toPath);
  return fs.link(existing.ino, to.parent.ino, to.name);
}

/** ln -s: path becomes a symlink to target (stored as given, never resolved). */
export async function symlinkPath(fs: FileSystemApi, path: string, target: string): Promise<Stat> {
  if (target === '') throw new CairnError('EINVAL', 'symlink target is empty');
  const at = await resolveParent(fs, path);
  return fs.symlink(at.parent.ino, at.name, target);
}

/** chmod: permission bits of what path names, following a final symlink as chmod(2) does. */
export async function chmodPath(fs: FileSystemApi, path: string, modeBits: number): Promise<Stat> {
  if (!Number.isInteger(modeBits) || modeBits < 0 || modeBits > 0o7777) {
    throw new CairnError('EINVAL', `bad mode '${modeBits.toString(8)}'`);
  }
  const stat = await resolvePathFollow(fs, normalizePath(path));
  return fs.setattr(stat.ino, { mode: modeBits });
}

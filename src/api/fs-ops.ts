/**
 * Path-level file operations the daemon serves (cp, cat, ls, mkdir, rm) on a pool's FileSystemApi.
 * Everything streams or pages: a file moves in chunks of at most STREAM_CHUNK_BYTES, a directory in
 * pages of at most LIST_PAGE_ENTRIES_MAX entries, and recursive removal holds one page per level.
 */
import { posix } from 'node:path';
import type { FileSystemApi, Stat } from '../fs/types.js';
import { CairnError, isCairnError } from '../util/errors.js';
import type { WireDirEntry, WireStat } from './protocol.js';
import { LIST_PAGE_ENTRIES_MAX } from './protocol.js';

export const STREAM_CHUNK_BYTES = 1024 * 1024;
const S_IFMT = 0o170000;
const REMOVE_PAGE_ENTRIES = 128;

const FS_MESSAGES: Partial<Record<string, string>> = {
  ENOENT: 'no such file or directory',
  EEXIST: 'file exists',
  ENOTDIR: 'not a directory',
  EISDIR: 'is a directory',
  ENOTEMPTY: 'directory not empty',
  ENAMETOOLONG: 'file name too long',
  ENOSPC: 'out of space',
};

/** Rewrites a file-system error as "tank:/a/b: no such file or directory", keeping its code. */
export function fsError(error: unknown, pool: string, path: string): unknown {
  if (!isCairnError(error)) return error;
  const reason = FS_MESSAGES[error.code] ?? error.message;
  return new CairnError(error.code, `${pool}:${path}: ${reason}`, error.data);
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
  if (!parents) {
    const { parent, name } = await resolveParent(fs, normal);
    return fs.mkdir(parent.ino, name, { mode: modeBits });
  }
  let current = await fs.getattr(fs.rootIno);
  for (const name of normal.split('/').filter((part) => part !== '')) {
    let next: Stat;
    try {
      next = await fs.lookup(current.ino, name);
    } catch (error) {
      if (!isCairnError(error, 'ENOENT')) throw error;
      try {
        next = await fs.mkdir(current.ino, name, { mode: modeBits });
      } catch (mkdirError) {
        // Another client made it between our lookup and mkdir: take theirs.
        if (!isCairnError(mkdirError, 'EEXIST')) throw mkdirError;
        next = await fs.lookup(current.ino, name);
      }
    }
    if (next.kind !== 'directory') throw new CairnError('ENOTDIR', `${name}: not a directory`);
    current = next;
  }
  return current;
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

export async function removePathTree(fs: FileSystemApi, path: string, recursive: boolean, force: boolean): Promise<void> {
  const normal = normalizePath(path);
  let parent: Stat;
  let name: string;
  let stat: Stat;
  try {
    ({ parent, name } = await resolveParent(fs, normal));
    stat = await fs.lookup(parent.ino, name);
  } catch (error) {
    if (force && isCairnError(error, 'ENOENT')) return;
    throw error;
  }
  if (stat.kind !== 'directory') return fs.unlink(parent.ino, name);
  if (!recursive) throw new CairnError('EISDIR', `${normal}: is a directory`);
  await emptyDirectory(fs, stat.ino);
  await fs.rmdir(parent.ino, name);
}

/** Removes a directory's contents a page at a time, restarting from the start after each page. */
async function emptyDirectory(fs: FileSystemApi, ino: number): Promise<void> {
  for (;;) {
    const page = await fs.readdir(ino, 0n, REMOVE_PAGE_ENTRIES);
    if (page.entries.length === 0) return;
    for (const entry of page.entries) {
      if (entry.kind === 'directory') {
        await emptyDirectory(fs, entry.ino);
        await fs.rmdir(ino, entry.name);
      } else {
        await fs.unlink(ino, entry.name);
      }
    }
  }
}

/**
 * Creates or truncates a file and writes the stream into it. Chunks are gathered to STREAM_CHUNK_BYTES
 * so the pool sees few large writes; each gathered chunk is a fresh Buffer because the layers below may
 * keep a reference to dirty data until its txg syncs.
 */
export async function writeFileFrom(
  fs: FileSystemApi,
  path: string,
  source: AsyncIterable<Buffer>,
  modeBits: number,
): Promise<number> {
  const { parent, name } = await resolveParent(fs, path);
  let target: Stat;
  try {
    target = await fs.lookup(parent.ino, name);
    if (target.kind === 'directory') throw new CairnError('EISDIR', `${path}: is a directory`);
    if (target.kind !== 'file') throw new CairnError('EINVAL', `${path}: not a regular file`);
    if (target.sizeBytes > 0) await fs.setattr(target.ino, { sizeBytes: 0 });
  } catch (error) {
    if (!isCairnError(error, 'ENOENT')) throw error;
    target = await fs.create(parent.ino, name, { mode: modeBits & ~S_IFMT });
  }
  let offset = 0;
  let pending = Buffer.allocUnsafe(STREAM_CHUNK_BYTES);
  let pendingBytes = 0;
  for await (const chunk of source) {
    let used = 0;
    while (used < chunk.length) {
      const take = Math.min(chunk.length - used, STREAM_CHUNK_BYTES - pendingBytes);
      chunk.copy(pending, pendingBytes, used, used + take);
      pendingBytes += take;
      used += take;
      if (pendingBytes === STREAM_CHUNK_BYTES) {
        offset += await writeAll(fs, target.ino, offset, pending);
        pending = Buffer.allocUnsafe(STREAM_CHUNK_BYTES);
        pendingBytes = 0;
      }
    }
  }
  if (pendingBytes > 0) offset += await writeAll(fs, target.ino, offset, pending.subarray(0, pendingBytes));
  return offset;
}

async function writeAll(fs: FileSystemApi, ino: number, offset: number, data: Buffer): Promise<number> {
  let written = 0;
  while (written < data.length) {
    const count = await fs.write(ino, offset + written, data.subarray(written));
    if (count <= 0) throw new CairnError('EIO', 'write made no progress');
    written += count;
  }
  return written;
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

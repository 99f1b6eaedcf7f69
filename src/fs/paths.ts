/**
 * Path-level helpers on any FileSystemApi, for the CLI and library users: mkdir -p, streaming a file in
 * and out, rm [-r], and ls -l. They stream: no helper holds more than STREAM_CHUNK_SIZE_BYTES of a file
 * or more than one readdir page of a directory (times the tree depth for a recursive remove).
 */
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { CairnError, isCairnError } from '../util/errors.js';
import { FileKind, type FileSystemApi, type Stat } from './types.js';

export const STREAM_CHUNK_SIZE_BYTES = 1024 * 1024;
const SYMLINKS_FOLLOWED_MAX = 40;
const LIST_PAGE_ENTRIES = 256;

/** Splits an absolute path into its parent path and last name, without collapsing "..". */
export function splitPath(path: string): { parentPath: string; name: string } {
  if (!path.startsWith('/')) throw new CairnError('EINVAL', `path ${JSON.stringify(path)} is not absolute`);
  const trimmed = path.replace(/\/+$/, '');
  if (trimmed === '') throw new CairnError('EINVAL', 'the root directory has no parent');
  const slash = trimmed.lastIndexOf('/');
  return { parentPath: slash === 0 ? '/' : trimmed.slice(0, slash), name: trimmed.slice(slash + 1) };
}

/** Resolves a path following symlinks in every component, the last one included (stat, not lstat). */
export async function resolvePathFollow(fs: FileSystemApi, path: string): Promise<Stat> {
  let current = path;
  for (let followed = 0; ; followed++) {
    const stat = await fs.resolvePath(current);
    if (stat.kind !== FileKind.symlink) return stat;
    if (followed >= SYMLINKS_FOLLOWED_MAX) {
      throw new CairnError('ELOOP', `too many symbolic links in ${JSON.stringify(path)}`);
    }
    const target = await fs.readlink(stat.ino);
    current = target.startsWith('/') ? target : `${splitPath(current).parentPath}/${target}`;
  }
}

/** mkdir -p: creates every missing directory of path; an existing non-directory is ENOTDIR. */
export async function mkdirp(fs: FileSystemApi, path: string, mode = 0o755): Promise<Stat> {
  if (!path.startsWith('/')) throw new CairnError('EINVAL', `path ${JSON.stringify(path)} is not absolute`);
  let current = await fs.getattr(fs.rootIno);
  let walked = '';
  for (const name of path.split('/')) {
    if (name === '' || name === '.') continue;
    walked += `/${name}`;
    let next: Stat;
    try {
      next = await fs.lookup(current.ino, name);
    } catch (error) {
      if (!isCairnError(error, 'ENOENT')) throw error;
      next = await fs.mkdir(current.ino, name, { mode });
    }
    if (next.kind === FileKind.symlink) next = await resolvePathFollow(fs, walked);
    if (next.kind !== FileKind.directory) throw new CairnError('ENOTDIR', `${walked} is not a directory`);
    current = next;
  }
  return current;
}

/**
 * Writes a stream to path, creating the file (with mode) or truncating the existing one, in writes of
 * at most STREAM_CHUNK_SIZE_BYTES. Returns the bytes written.
 */
export async function writeFileFromStream(
  fs: FileSystemApi,
  path: string,
  readable: AsyncIterable<Buffer | Uint8Array | string> | Iterable<Buffer | Uint8Array | string>,
  mode = 0o644,
): Promise<number> {
  const { parentPath, name } = splitPath(path);
  const parent = await resolvePathFollow(fs, parentPath);
  if (parent.kind !== FileKind.directory) throw new CairnError('ENOTDIR', `${parentPath} is not a directory`);
  let existing: Stat | undefined;
  try {
    existing = await fs.lookup(parent.ino, name);
  } catch (error) {
    if (!isCairnError(error, 'ENOENT')) throw error;
  }
  let ino: number;
  if (existing === undefined) {
    ino = (await fs.create(parent.ino, name, { mode })).ino;
  } else {
    const target = existing.kind === FileKind.symlink ? await resolvePathFollow(fs, path) : existing;
    if (target.kind === FileKind.directory) throw new CairnError('EISDIR', `${path} is a directory`);
    await fs.setattr(target.ino, { sizeBytes: 0 });
    ino = target.ino;
  }
  // One staging buffer, reused: the stream's chunk sizes do not decide the write sizes or the memory.
  const staging = Buffer.allocUnsafe(STREAM_CHUNK_SIZE_BYTES);
  let stagedBytes = 0;
  let offset = 0;
  for await (const piece of readable) {
    const chunk = typeof piece === 'string' ? Buffer.from(piece) : piece;
    let consumed = 0;
    while (consumed < chunk.length) {
      const take = Math.min(staging.length - stagedBytes, chunk.length - consumed);
      staging.set(chunk.subarray(consumed, consumed + take), stagedBytes);
      stagedBytes += take;
      consumed += take;
      if (stagedBytes === staging.length) {
        offset = await writeAll(fs, ino, offset, staging);
        stagedBytes = 0;
      }
    }
  }
  if (stagedBytes > 0) offset = await writeAll(fs, ino, offset, staging.subarray(0, stagedBytes));
  return offset;
}

/** Writes all of data (a short write is retried; the retry reports the error, e.g. ENOSPC). */
async function writeAll(fs: FileSystemApi, ino: number, offset: number, data: Buffer): Promise<number> {
  let done = 0;
  while (done < data.length) done += await fs.write(ino, offset + done, data.subarray(done));
  return offset + done;
}

/**
 * Streams a file (following symlinks) to writable in reads of at most STREAM_CHUNK_SIZE_BYTES, waiting
 * for 'drain' when it pushes back. Ends the stream unless end is false (process.stdout). Returns bytes.
 */
export async function readFileToStream(
  fs: FileSystemApi,
  path: string,
  writable: Writable,
  options: { end?: boolean } = {},
): Promise<number> {
  const stat = await resolvePathFollow(fs, path);
  if (stat.kind === FileKind.directory) throw new CairnError('EISDIR', `${path} is a directory`);
  let offset = 0;
  for (;;) {
    const chunk = await fs.read(stat.ino, offset, STREAM_CHUNK_SIZE_BYTES);
    if (chunk.length > 0 && !writable.write(chunk)) await once(writable, 'drain');
    offset += chunk.length;
    if (chunk.length < STREAM_CHUNK_SIZE_BYTES) break;
  }
  if (options.end ?? true) {
    await new Promise<void>((resolve, reject) => {
      writable.once('error', reject);
      writable.end(() => resolve());
    });
  }
  return offset;
}

/** rm / rm -r / rmdir: removes a file or symlink, or a directory (with its contents when recursive). */
export async function removePath(fs: FileSystemApi, path: string, options: { recursive?: boolean } = {}): Promise<void> {
  const { parentPath, name } = splitPath(path);
  const parent = await resolvePathFollow(fs, parentPath);
  if (parent.kind !== FileKind.directory) throw new CairnError('ENOTDIR', `${parentPath} is not a directory`);
  const stat = await fs.lookup(parent.ino, name);
  if (stat.kind !== FileKind.directory) {
    await fs.unlink(parent.ino, name);
    return;
  }
  if (options.recursive === true) await emptyDirectory(fs, stat.ino);
  await fs.rmdir(parent.ino, name);
}

/** Removes everything in a directory, one page at a time (each page is deleted before the next is read). */
async function emptyDirectory(fs: FileSystemApi, dirIno: number): Promise<void> {
  for (;;) {
    const page = await fs.readdir(dirIno, 0n, LIST_PAGE_ENTRIES);
    if (page.entries.length === 0) return;
    for (const entry of page.entries) {
      if (entry.kind === FileKind.directory) {
        await emptyDirectory(fs, entry.ino);
        await fs.rmdir(dirIno, entry.name);
      } else {
        await fs.unlink(dirIno, entry.name);
      }
    }
  }
}

export interface ListedEntry {
  name: string;
  stat: Stat;
}

/**
 * ls -l: yields the entries of a directory with their stats, one readdir page at a time (or the one
 * entry of a path that is not a directory). Entries removed while listing are skipped.
 */
export async function* listDirectory(
  fs: FileSystemApi,
  path: string,
  options: { pageEntries?: number } = {},
): AsyncGenerator<ListedEntry> {
  const stat = await resolvePathFollow(fs, path);
  if (stat.kind !== FileKind.directory) {
    yield { name: path === '/' ? '/' : splitPath(path).name, stat };
    return;
  }
  let cursor: bigint | null = 0n;
  while (cursor !== null) {
    const page: { entries: { name: string; ino: number }[]; cursor: bigint | null } = await fs.readdir(
      stat.ino,
      cursor,
      options.pageEntries ?? LIST_PAGE_ENTRIES,
    );
    for (const entry of page.entries) {
      let entryStat: Stat;
      try {
        entryStat = await fs.getattr(entry.ino);
      } catch (error) {
        if (!isCairnError(error, 'ENOENT')) throw error;
        continue;
      }
      yield { name: entry.name, stat: entryStat };
    }
    cursor = page.cursor;
  }
}

/**
 * Extended attributes: name rules as Linux applies them, and the XattrEntryPhys layout kept in an inode's
 * xattr object (a kv map). Filesystem (filesystem.ts) does the locking, the inode and the object's life.
 *
 * A kv value holds at most KV_VALUE_SIZE_MAX_BYTES (1 KiB) and an attribute value up to 64 KiB, so a
 * value that does not fit next to its 5-byte header is split into 1 KiB chunks under keys
 * "<name>\0<set>.<index>". NUL can never be in an attribute name (Linux names are C strings), so chunk
 * keys never collide with names and listxattr skips every key that holds a NUL. Keeping the chunks in
 * the same kv object (rather than a file object per large value, as ZFS's xattr=dir does) means an
 * attribute never needs a second object, and freeing the inode's xattr object frees every value.
 *
 * Two chunk sets (0 and 1) make a replace safe against a failure part way (ENOSPC while writing chunks):
 * the new value's chunks go to the set the current value does not use, then the entry switches to them
 * in one kv write, then the old set is deleted. Until the switch the old value reads whole.
 *
 *   XattrEntryPhys, the value under "<name>" (little-endian):
 *     0 u8  format   0 = inline (the value follows), 1 = chunked (the value is in the chunk keys)
 *     1 u32 length   value bytes
 *     5 ...          inline: the value; chunked: u8 chunk set (0 or 1)
 *   chunk i of set s ("<name>\0<s>.<i>", decimal): bytes [i * 1024, min(length, (i + 1) * 1024))
 */
import { KV_VALUE_SIZE_MAX_BYTES } from '../kv/index.js';
import { CairnError } from '../util/errors.js';

/** XATTR_NAME_MAX: longest name, namespace prefix included, in UTF-8 bytes. */
export const XATTR_NAME_SIZE_MAX_BYTES = 255;
/** XATTR_SIZE_MAX: largest value. */
export const XATTR_SIZE_MAX_BYTES = 64 * 1024;
/** XATTR_LIST_MAX: largest listxattr result (each name plus its NUL, as the syscall counts it). */
export const XATTR_LIST_SIZE_MAX_BYTES = 64 * 1024;
/** The namespaces Linux knows; any other prefix is EOPNOTSUPP. */
export const XATTR_NAMESPACES = ['user.', 'trusted.', 'security.', 'system.'] as const;

export const XATTR_FORMAT_INLINE = 0;
export const XATTR_FORMAT_CHUNKED = 1;
const XATTR_HEADER_SIZE_BYTES = 5;
/** A value this short is stored in the entry itself. */
export const XATTR_INLINE_MAX_BYTES = KV_VALUE_SIZE_MAX_BYTES - XATTR_HEADER_SIZE_BYTES;
export const XATTR_CHUNK_SIZE_BYTES = KV_VALUE_SIZE_MAX_BYTES;
const XATTR_CHUNK_SEPARATOR = '\0';

export interface XattrEntryPhys {
  format: number;
  lengthBytes: number;
  /** Which chunk keys hold a chunked value (0 or 1); 0 for inline values. */
  chunkSet: number;
}

/**
 * Checks Linux makes while copying the name and value in (setxattr_copy), before the path is looked up:
 * an empty or over-long name is ERANGE, a value over 64 KiB is E2BIG.
 */
export function checkXattrNameSize(name: string): void {
  const sizeBytes = Buffer.byteLength(name, 'utf8');
  if (sizeBytes === 0) throw new CairnError('ERANGE', 'empty extended attribute name');
  if (sizeBytes > XATTR_NAME_SIZE_MAX_BYTES) {
    throw new CairnError('ERANGE', `extended attribute name is longer than ${XATTR_NAME_SIZE_MAX_BYTES} bytes`);
  }
  // The kernel would stop at the NUL; a name with one cannot have come from a C string.
  if (name.includes(XATTR_CHUNK_SEPARATOR)) throw new CairnError('EINVAL', 'extended attribute name contains NUL');
}

export function checkXattrValueSize(value: Buffer): void {
  if (value.length > XATTR_SIZE_MAX_BYTES) {
    throw new CairnError('E2BIG', `extended attribute value of ${value.length} bytes exceeds ${XATTR_SIZE_MAX_BYTES}`);
  }
}

/** The namespace prefix of a name; EOPNOTSUPP for none Linux knows and for system.*, EINVAL for a bare prefix ("user."). */
export function xattrNamespace(name: string): (typeof XATTR_NAMESPACES)[number] {
  for (const prefix of XATTR_NAMESPACES) {
    if (name.startsWith(prefix)) {
      if (name.length === prefix.length) throw new CairnError('EINVAL', `extended attribute name "${name}" is only a namespace`);
      // system.* holds what the kernel interprets (POSIX ACLs): Cairn enforces none, so it stores none,
      // as a Linux file system mounted without ACL support answers (and `ls -l` then stops asking).
      if (prefix === 'system.') throw new CairnError('EOPNOTSUPP', `extended attribute "${name}": POSIX ACLs are not supported`);
      return prefix;
    }
  }
  throw new CairnError('EOPNOTSUPP', `extended attribute "${name}" has no known namespace (user., trusted., security., system.)`);
}

export function xattrChunkKey(name: string, chunkSet: number, index: number): string {
  return `${name}${XATTR_CHUNK_SEPARATOR}${chunkSet}.${index}`;
}

export function isXattrChunkKey(key: string): boolean {
  return key.includes(XATTR_CHUNK_SEPARATOR);
}

export function xattrChunkCount(entry: XattrEntryPhys): number {
  return entry.format === XATTR_FORMAT_CHUNKED ? Math.ceil(entry.lengthBytes / XATTR_CHUNK_SIZE_BYTES) : 0;
}

/** The entry for a value: inline when it fits, else a header naming the chunk set the caller writes. */
export function encodeXattrEntry(value: Buffer, chunkSet: number): Buffer {
  const inline = value.length <= XATTR_INLINE_MAX_BYTES;
  const out = Buffer.alloc(XATTR_HEADER_SIZE_BYTES + (inline ? value.length : 1));
  out.writeUInt8(inline ? XATTR_FORMAT_INLINE : XATTR_FORMAT_CHUNKED, 0);
  out.writeUInt32LE(value.length, 1);
  if (inline) value.copy(out, XATTR_HEADER_SIZE_BYTES);
  else out.writeUInt8(chunkSet, XATTR_HEADER_SIZE_BYTES);
  return out;
}

export function decodeXattrEntry(raw: Buffer): { entry: XattrEntryPhys; inline: Buffer | undefined } {
  if (raw.length < XATTR_HEADER_SIZE_BYTES) throw new CairnError('EIO', `extended attribute entry of ${raw.length} bytes is malformed`);
  const format = raw.readUInt8(0);
  const lengthBytes = raw.readUInt32LE(1);
  if (format === XATTR_FORMAT_INLINE) {
    if (raw.length !== XATTR_HEADER_SIZE_BYTES + lengthBytes) throw new CairnError('EIO', 'inline extended attribute has the wrong length');
    return { entry: { format, lengthBytes, chunkSet: 0 }, inline: raw.subarray(XATTR_HEADER_SIZE_BYTES) };
  }
  const chunkSet = raw.length === XATTR_HEADER_SIZE_BYTES + 1 ? raw.readUInt8(XATTR_HEADER_SIZE_BYTES) : -1;
  if (format !== XATTR_FORMAT_CHUNKED || (chunkSet !== 0 && chunkSet !== 1) || lengthBytes > XATTR_SIZE_MAX_BYTES) {
    throw new CairnError('EIO', `extended attribute entry (format ${format}, ${lengthBytes} bytes) is malformed`);
  }
  return { entry: { format, lengthBytes, chunkSet }, inline: undefined };
}

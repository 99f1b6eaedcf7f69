/**
 * InodePhys: the on-disk inode kept in every file, directory and symlink object's bonus buffer (OpenZFS's
 * znode_phys_t / SA bonus). Encoded explicitly, little-endian, behind a magic and a version byte, so an
 * in-memory inode is never written as-is and a foreign or damaged bonus is refused instead of trusted.
 *
 *   offset size field
 *        0    4 magic        0x4c505a43 ("CZPL" read as little-endian bytes)
 *        4    1 version      1
 *        5    3 reserved     zero
 *        8    4 mode         st_mode, type bits included
 *       12    4 uid
 *       16    4 gid
 *       20    4 nlink
 *       24    8 size         bytes (directories: entries + 2, as ZFS reports)
 *       32    8 atime        ns since the epoch, signed (before 1970 is negative; 1677 to 2262)
 *       40    8 mtime        ns, signed
 *       48    8 ctime        ns, signed
 *       56    8 birthtime    ns, signed
 *       64    8 generation   distinguishes a reused object id (NFS/FUSE handles)
 *       72    8 parent       object id of the parent directory (directories: the one parent)
 *       80    8 flags        INODE_FLAG_* bits
 *       88    8 xattr        object id of the xattr object (a kv map, xattr.ts), 0 = none
 *       96    -             (symlinks only) the target, when it fits in the bonus
 */
import { BONUS_SIZE_MAX_BYTES } from '../objects/types.js';
import { CairnError } from '../util/errors.js';

export const INODE_MAGIC = 0x4c505a43;
export const INODE_VERSION = 1;
export const INODE_SIZE_BYTES = 96;
/** A symlink target this short lives in the bonus right after the inode, with no data block. */
export const SYMLINK_INLINE_MAX_BYTES = BONUS_SIZE_MAX_BYTES - INODE_SIZE_BYTES;

/** The symlink target is stored in the bonus after the inode rather than in the object's data. */
export const INODE_FLAG_INLINE_SYMLINK = 1n;

export const S_IFMT = 0o170000;
export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;
/** Permission and set-id/sticky bits: what chmod may change. */
export const S_IPERM = 0o7777;

export interface InodePhys {
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  sizeBytes: number;
  atimeNs: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  birthtimeNs: bigint;
  generation: bigint;
  parentIno: number;
  flags: bigint;
  xattrObjectId: number;
}

/** Encodes the inode, followed by extra bytes (an inline symlink target) when given. */
export function encodeInode(inode: InodePhys, extra?: Buffer): Buffer {
  const extraBytes = extra?.length ?? 0;
  if (INODE_SIZE_BYTES + extraBytes > BONUS_SIZE_MAX_BYTES) {
    throw new CairnError('EINVAL', `inode bonus of ${INODE_SIZE_BYTES + extraBytes} bytes is too large`);
  }
  const out = Buffer.alloc(INODE_SIZE_BYTES + extraBytes);
  out.writeUInt32LE(INODE_MAGIC, 0);
  out.writeUInt8(INODE_VERSION, 4);
  out.writeUInt32LE(inode.mode >>> 0, 8);
  out.writeUInt32LE(inode.uid >>> 0, 12);
  out.writeUInt32LE(inode.gid >>> 0, 16);
  out.writeUInt32LE(inode.nlink >>> 0, 20);
  out.writeBigUInt64LE(BigInt(inode.sizeBytes), 24);
  out.writeBigInt64LE(inode.atimeNs, 32);
  out.writeBigInt64LE(inode.mtimeNs, 40);
  out.writeBigInt64LE(inode.ctimeNs, 48);
  out.writeBigInt64LE(inode.birthtimeNs, 56);
  out.writeBigUInt64LE(inode.generation, 64);
  out.writeBigUInt64LE(BigInt(inode.parentIno), 72);
  out.writeBigUInt64LE(inode.flags, 80);
  out.writeBigUInt64LE(BigInt(inode.xattrObjectId), 88);
  if (extra !== undefined) extra.copy(out, INODE_SIZE_BYTES);
  return out;
}

/** Decodes a bonus buffer; undefined when it is not an inode (wrong magic, too short). */
export function decodeInode(bonus: Buffer): InodePhys | undefined {
  if (bonus.length < INODE_SIZE_BYTES || bonus.readUInt32LE(0) !== INODE_MAGIC) return undefined;
  const version = bonus.readUInt8(4);
  if (version !== INODE_VERSION) {
    throw new CairnError('EVERSION', `inode version ${version} is not supported (this build reads ${INODE_VERSION})`);
  }
  return {
    mode: bonus.readUInt32LE(8),
    uid: bonus.readUInt32LE(12),
    gid: bonus.readUInt32LE(16),
    nlink: bonus.readUInt32LE(20),
    sizeBytes: Number(bonus.readBigUInt64LE(24)),
    atimeNs: bonus.readBigInt64LE(32),
    mtimeNs: bonus.readBigInt64LE(40),
    ctimeNs: bonus.readBigInt64LE(48),
    birthtimeNs: bonus.readBigInt64LE(56),
    generation: bonus.readBigUInt64LE(64),
    parentIno: Number(bonus.readBigUInt64LE(72)),
    flags: bonus.readBigUInt64LE(80),
    xattrObjectId: Number(bonus.readBigUInt64LE(88)),
  };
}

/** Directory entry value: object id u64 LE, then the kind byte (DIRENT_KIND_*). */
export const DIRENT_SIZE_BYTES = 9;
export const DIRENT_KIND_FILE = 1;
export const DIRENT_KIND_DIRECTORY = 2;
export const DIRENT_KIND_SYMLINK = 3;

export function encodeDirent(ino: number, kindByte: number): Buffer {
  const out = Buffer.alloc(DIRENT_SIZE_BYTES);
  out.writeBigUInt64LE(BigInt(ino), 0);
  out.writeUInt8(kindByte, 8);
  return out;
}

export function decodeDirent(value: Buffer): { ino: number; kindByte: number } {
  if (value.length !== DIRENT_SIZE_BYTES) {
    throw new CairnError('EIO', `directory entry of ${value.length} bytes is malformed`);
  }
  return { ino: Number(value.readBigUInt64LE(0)), kindByte: value.readUInt8(8) };
}

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
import { assert } from '../util/assert.js';

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
export const S_ISUID = 0o4000;
export const S_ISGID = 0o2000;
export const S_ISVTX = 0o1000;

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

/**
 * Encodes the inode, followed by extra bytes (an inline symlink target) when given. Written through a
 * DataView: Buffer's writeBig(U)Int64LE is plain JavaScript with range checks and costs several times
 * more, and every create, write and setattr encodes at least one inode.
 */
export function encodeInode(inode: InodePhys, extra?: Buffer): Buffer {
  const extraBytes = extra?.length ?? 0;
  if (INODE_SIZE_BYTES + extraBytes > BONUS_SIZE_MAX_BYTES) {
    throw new CairnError('EINVAL', `inode bonus of ${INODE_SIZE_BYTES + extraBytes} bytes is too large`);
  }
  // From Node's pool (a small Buffer.alloc is an ArrayBuffer of its own each time): every byte is set
  // below, the reserved ones by the fill, and stores copy a bonus in, so nothing keeps this slice.
  const out = Buffer.allocUnsafe(INODE_SIZE_BYTES + extraBytes).fill(0, 0, INODE_SIZE_BYTES);
  const view = new DataView(out.buffer, out.byteOffset, INODE_SIZE_BYTES);
  view.setUint32(0, INODE_MAGIC, true);
  view.setUint8(4, INODE_VERSION);
  view.setUint32(8, inode.mode >>> 0, true);
  view.setUint32(12, inode.uid >>> 0, true);
  view.setUint32(16, inode.gid >>> 0, true);
  view.setUint32(20, inode.nlink >>> 0, true);
  setU64(view, 24, inode.sizeBytes);
  // setBigInt64 wraps instead of throwing: check the range here so a bad time is never stored.
  view.setBigInt64(32, checkedTime(inode.atimeNs), true);
  view.setBigInt64(40, checkedTime(inode.mtimeNs), true);
  view.setBigInt64(48, checkedTime(inode.ctimeNs), true);
  view.setBigInt64(56, checkedTime(inode.birthtimeNs), true);
  view.setBigUint64(64, BigInt.asUintN(64, inode.generation), true);
  setU64(view, 72, inode.parentIno);
  view.setBigUint64(80, BigInt.asUintN(64, inode.flags), true);
  setU64(view, 88, inode.xattrObjectId);
  if (extra !== undefined) extra.copy(out, INODE_SIZE_BYTES);
  return out;
}

/** Decodes a bonus buffer; undefined when it is not an inode (wrong magic, too short). */
export function decodeInode(bonus: Buffer): InodePhys | undefined {
  if (bonus.length < INODE_SIZE_BYTES) return undefined;
  const view = new DataView(bonus.buffer, bonus.byteOffset, INODE_SIZE_BYTES);
  if (view.getUint32(0, true) !== INODE_MAGIC) return undefined;
  const version = view.getUint8(4);
  if (version !== INODE_VERSION) {
    throw new CairnError('EVERSION', `inode version ${version} is not supported (this build reads ${INODE_VERSION})`);
  }
  return {
    mode: view.getUint32(8, true),
    uid: view.getUint32(12, true),
    gid: view.getUint32(16, true),
    nlink: view.getUint32(20, true),
    sizeBytes: getU64(view, 24),
    atimeNs: view.getBigInt64(32, true),
    mtimeNs: view.getBigInt64(40, true),
    ctimeNs: view.getBigInt64(48, true),
    birthtimeNs: view.getBigInt64(56, true),
    generation: view.getBigUint64(64, true),
    parentIno: getU64(view, 72),
    flags: view.getBigUint64(80, true),
    xattrObjectId: getU64(view, 88),
  };
}

const TWO_POW_32 = 2 ** 32;
const TIME_NS_MIN = -(2n ** 63n);
const TIME_NS_MAX = 2n ** 63n - 1n;

/** A u64 field holding a safe integer (size, object ids), as two u32 halves: no BigInt on the way. */
function setU64(view: DataView, offset: number, value: number): void {
  assert(Number.isSafeInteger(value) && value >= 0, `inode field ${value} is not a u64 safe integer`);
  view.setUint32(offset, value % TWO_POW_32, true);
  view.setUint32(offset + 4, Math.floor(value / TWO_POW_32), true);
}

function getU64(view: DataView, offset: number): number {
  const high = view.getUint32(offset + 4, true);
  // Past 2^53 a Number would round: refuse rather than hand out a wrong size or id.
  if (high >= 2 ** 21) throw new CairnError('EIO', `inode field at byte ${offset} exceeds 2^53`);
  return high * TWO_POW_32 + view.getUint32(offset, true);
}

function checkedTime(timeNs: bigint): bigint {
  assert(timeNs >= TIME_NS_MIN && timeNs <= TIME_NS_MAX, `time ${timeNs} ns is outside signed 64 bits`);
  return timeNs;
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

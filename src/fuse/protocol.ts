/**
 * The Linux kernel FUSE protocol (include/uapi/linux/fuse.h, version 7.31 as spoken here): opcodes,
 * the byte layout of the structures Cairn reads and writes, and encoders for the replies that carry
 * attributes. All integers are little-endian (x86-64 and arm64 Linux). Offsets are spelled out next to
 * each field so a reader can check them against fuse.h without a struct compiler.
 */
import type { Stat } from '../fs/types.js';
import { decodeNameBytes } from '../util/name-bytes.js';

export const FUSE_KERNEL_VERSION = 7;
/** The minor version Cairn answers with; the structure sizes below are those of 7.31. */
export const FUSE_MINOR_VERSION_SPOKEN = 31;
/** FUSE_MAX_PAGES (max_pages in INIT) exists from 7.28 on. */
export const FUSE_MINOR_VERSION_MIN = 28;
export const FUSE_ROOT_ID = 1;

export const Opcode = {
  lookup: 1,
  forget: 2,
  getattr: 3,
  setattr: 4,
  readlink: 5,
  symlink: 6,
  mknod: 8,
  mkdir: 9,
  unlink: 10,
  rmdir: 11,
  rename: 12,
  link: 13,
  open: 14,
  read: 15,
  write: 16,
  statfs: 17,
  release: 18,
  fsync: 20,
  setxattr: 21,
  getxattr: 22,
  listxattr: 23,
  removexattr: 24,
  flush: 25,
  init: 26,
  opendir: 27,
  readdir: 28,
  releasedir: 29,
  fsyncdir: 30,
  access: 34,
  create: 35,
  interrupt: 36,
  destroy: 38,
  batchForget: 42,
  readdirplus: 44,
  rename2: 45,
} as const;

/** Notifications the server sends unasked (fuse_notify_code): the code goes in the out header's error field, unique 0. */
export const NotifyCode = {
  invalInode: 2,
  invalEntry: 3,
} as const;
export const NOTIFY_INVAL_INODE_SIZE_BYTES = 24; // ino u64 @0, off i64 @8 (negative: attributes only), len i64 @16 (0: to the end)
export const NOTIFY_INVAL_ENTRY_SIZE_BYTES = 16; // parent u64 @0, namelen u32 @8, flags u32 @12, then the name and a NUL

/** INIT flags (fuse_init_in.flags / fuse_init_out.flags). */
export const InitFlag = {
  asyncRead: 1 << 0,
  bigWrites: 1 << 5,
  autoInvalData: 1 << 12,
  doReaddirplus: 1 << 13,
  readdirplusAuto: 1 << 14,
  parallelDirops: 1 << 18,
  maxPages: 1 << 22,
  cacheSymlinks: 1 << 23,
  /**
   * The server clears suid/sgid on write and truncate (told per request, only when the caller lacks
   * CAP_FSETID); the kernel then marks checked inodes S_NOSEC and stops asking for security.capability
   * before every write (FUSE 7.33).
   */
  handleKillprivV2: 1 << 28,
} as const;

/** fuse_write_in.write_flags: clear suid, and sgid where group-executable (HANDLE_KILLPRIV_V2). */
export const FUSE_WRITE_KILL_SUIDGID = 1 << 2;
/** fuse_create_in.open_flags: the same, for an O_TRUNC open of an existing file. */
export const FUSE_OPEN_KILL_SUIDGID = 1 << 0;

/** fuse_open_out.open_flags. */
export const FopenFlag = {
  /** Keep the page cache (for a directory: the cached listing) across opens. */
  keepCache: 1 << 1,
  /** Let the kernel cache the directory's listing (FUSE 7.28). */
  cacheDir: 1 << 3,
  /** Send no FLUSH at close (FUSE 7.35; older kernels ignore the bit and send it). */
  noFlush: 1 << 5,
} as const;

/** fuse_setattr_in.valid bits. */
export const SetattrValid = {
  mode: 1 << 0,
  uid: 1 << 1,
  gid: 1 << 2,
  size: 1 << 3,
  atime: 1 << 4,
  mtime: 1 << 5,
  /** The change comes through an open file (ftruncate): fh names it. */
  fh: 1 << 6,
  atimeNow: 1 << 7,
  mtimeNow: 1 << 8,
  /** With size: clear suid, and sgid where group-executable (HANDLE_KILLPRIV_V2). */
  killSuidgid: 1 << 11,
} as const;

export const RENAME_NOREPLACE = 1;
export const XATTR_CREATE = 1;
export const XATTR_REPLACE = 2;

/** Directory entry types (d_type). */
export const DT_DIR = 4;
export const DT_REG = 8;
export const DT_LNK = 10;

export const IN_HEADER_SIZE_BYTES = 40; // len u32 @0, opcode u32 @4, unique u64 @8, nodeid u64 @16, uid @24, gid @28, pid @32
export const OUT_HEADER_SIZE_BYTES = 16; // len u32 @0, error i32 @4, unique u64 @8
export const ATTR_SIZE_BYTES = 88;
export const ENTRY_OUT_SIZE_BYTES = 40 + ATTR_SIZE_BYTES; // nodeid @0, generation @8, entry_valid @16, attr_valid @24, nsecs @32/@36, attr @40
export const ATTR_OUT_SIZE_BYTES = 16 + ATTR_SIZE_BYTES; // attr_valid @0, attr_valid_nsec @8, dummy @12, attr @16
export const OPEN_OUT_SIZE_BYTES = 16; // fh @0, open_flags @8
export const INIT_OUT_SIZE_BYTES = 64;
export const STATFS_OUT_SIZE_BYTES = 80;
export const WRITE_IN_SIZE_BYTES = 40; // fh @0, offset @8, size @16, write_flags @20, lock_owner @24, flags @32
export const DIRENT_HEADER_SIZE_BYTES = 24; // ino @0, off @8, namelen @16, type @20, name @24

const NS_PER_SECOND = 1_000_000_000n;
/** st_blksize: the default record size, so cp and friends move whole records. */
const BLOCK_SIZE_HINT_BYTES = 128 * 1024;

function putTime(buf: Buffer, secondsAt: number, nsAt: number, timeNs: bigint): void {
  let seconds = timeNs / NS_PER_SECOND;
  let ns = timeNs % NS_PER_SECOND;
  if (ns < 0n) {
    seconds -= 1n;
    ns += NS_PER_SECOND;
  }
  buf.writeBigInt64LE(seconds, secondsAt);
  buf.writeUInt32LE(Number(ns), nsAt);
}

/** fuse_attr at `at`: ino @0 size @8 blocks @16 a/m/ctime @24/@32/@40, their nsecs @48/@52/@56, mode @60, nlink @64, uid @68, gid @72, rdev @76, blksize @80, flags @84. */
export function putAttr(buf: Buffer, at: number, st: Stat): void {
  buf.writeBigUInt64LE(BigInt(st.ino), at);
  buf.writeBigUInt64LE(BigInt(st.sizeBytes), at + 8);
  buf.writeBigUInt64LE(BigInt(Math.ceil(st.allocatedBytes / 512)), at + 16);
  putTime(buf, at + 24, at + 48, st.atimeNs);
  putTime(buf, at + 32, at + 52, st.mtimeNs);
  putTime(buf, at + 40, at + 56, st.ctimeNs);
  buf.writeUInt32LE(st.mode, at + 60);
  buf.writeUInt32LE(st.nlink, at + 64);
  buf.writeUInt32LE(st.uid, at + 68);
  buf.writeUInt32LE(st.gid, at + 72);
  buf.writeUInt32LE(0, at + 76);
  buf.writeUInt32LE(BLOCK_SIZE_HINT_BYTES, at + 80);
  buf.writeUInt32LE(0, at + 84);
}

/** An entry: the name may be cached for entryValidSeconds, the attributes for attrValidSeconds. */
export function putEntryOut(buf: Buffer, at: number, nodeId: number, st: Stat, entryValidSeconds: number, attrValidSeconds: number): void {
  buf.writeBigUInt64LE(BigInt(nodeId), at);
  buf.writeBigUInt64LE(0n, at + 8);
  buf.writeBigUInt64LE(BigInt(entryValidSeconds), at + 16);
  buf.writeBigUInt64LE(BigInt(attrValidSeconds), at + 24);
  buf.writeUInt32LE(0, at + 32);
  buf.writeUInt32LE(0, at + 36);
  putAttr(buf, at + 40, st);
}

/** A negative entry: "no such name", which the kernel may remember for validSeconds (nodeid 0). */
export function putNegativeEntryOut(buf: Buffer, at: number, validSeconds: number): void {
  buf.fill(0, at, at + ENTRY_OUT_SIZE_BYTES);
  buf.writeBigUInt64LE(BigInt(validSeconds), at + 16);
}

export function putAttrOut(buf: Buffer, at: number, st: Stat, validSeconds: number): void {
  buf.writeBigUInt64LE(BigInt(validSeconds), at);
  buf.writeUInt32LE(0, at + 8);
  buf.writeUInt32LE(0, at + 12);
  putAttr(buf, at + 16, st);
}

/** Size of a fuse_dirent record with a name of nameBytes, padded to 8 bytes. */
export function direntSizeBytes(nameBytes: number): number {
  return (DIRENT_HEADER_SIZE_BYTES + nameBytes + 7) & ~7;
}

/** Size of a fuse_direntplus record (an entry_out, then a fuse_dirent) with a name of nameBytes. */
export function direntPlusSizeBytes(nameBytes: number): number {
  return ENTRY_OUT_SIZE_BYTES + direntSizeBytes(nameBytes);
}

/** Reads the NUL-terminated name starting at `at`; returns it and the offset after its NUL. */
export function readName(buf: Buffer, at: number, end: number): { name: string; next: number } {
  let nul = buf.indexOf(0, at);
  if (nul < 0 || nul > end) nul = end;
  return { name: decodeNameBytes(buf, at, nul), next: nul + 1 };
}

/**
 * The POSIX layer (OpenZFS's ZPL): files, directories and symlinks on one object set.
 *
 * What it promises
 * - FileSystemApi (types.ts): inode operations where an inode number is an object id, plus resolvePath.
 * - Every mutating operation is atomic: it runs under one in-process lock (so its checks and its changes
 *   are not interleaved with another mutation) inside ONE store.hold(), so all of it lands in one txg or
 *   none does. Every check that can fail with an operating error runs before the first change, so a
 *   failed call leaves nothing half done. Reads take no lock and see every change made so far.
 * - Errors are CairnErrors with Linux's codes and, where several apply, Linux's order (rename checks the
 *   source, then "source is an ancestor of the target's directory" (EINVAL), then "target is an
 *   ancestor of the source" (ENOTEMPTY), then kinds (ENOTDIR/EISDIR), then emptiness (ENOTEMPTY)).
 * - Lookups are hashed: a directory is a kv map (extendible hashing), so a lookup reads the header, one
 *   pointer-table entry and one leaf at any directory size (large-directory.test.ts counts the reads).
 * - Memory is bounded: a directory is never listed whole (readdir pages over a kv cursor; emptiness is a
 *   one-entry page), a write hands the object layer at most one record per call, and the path helpers
 *   (paths.ts) stream in chunks of at most 1 MiB.
 *
 * On disk (one object set)
 * - Object 1, the master node (ObjectType.masterNode, a kv map; MASTER_NODE_OBJECT_ID, allocated first
 *   by Filesystem.create and checked), maps "version" → u64 FS_VERSION, "root" → u64 root directory
 *   object id, "unlinked" → u64 id of the unlinked set (a kv map ino → "" of files unlinked while open,
 *   freed when the file system is opened; an entry is written just before the txg of the unlink syncs,
 *   and not at all when the last release comes first), "recordsize" → u64 block
 *   size of new regular files, "generation" → u64 next inode generation. u64s are little-endian.
 * - Every file, directory and symlink is one object whose bonus buffer starts with an InodePhys (inode.ts:
 *   magic, version, mode, uid, gid, nlink, size, atime/mtime/ctime/birthtime as signed 64-bit ns,
 *   generation, parent, flags, xattr object id). Times are kept in ns end to end: setattr stores the
 *   caller's exact values, nothing rounds them to µs or s.
 * - Extended attributes live in the inode's xattr object (InodePhys xattr ≠ 0), an ObjectType.kv map made
 *   by the first setxattr and freed by the removexattr of the last attribute and with the inode (the last
 *   unlink, rmdir, or a rename over it), so an inode without attributes costs no object. Its keys are
 *   the attribute names; each value is an XattrEntryPhys (xattr.ts: u8 format, u32 LE length, then the
 *   value inline when it fits a kv value). A larger value (up to Linux's 64 KiB) is split into 1 KiB
 *   chunks under "<name>\0<set>.<index>" in the same map: NUL never occurs in a name, so listxattr skips
 *   those keys, and a value never needs an object of its own. A replace writes the new chunks to the
 *   other set (0/1) and then switches the entry in one kv write, so a failure part way leaves the old
 *   value whole. Limits and errors are Linux's: names of 1-255 bytes (ERANGE) with a user., trusted.,
 *   security. or system. prefix (EOPNOTSUPP; a bare prefix is EINVAL), values ≤ 64 KiB (E2BIG), a
 *   listing ≤ 64 KiB (E2BIG), user.* only on files and directories (EPERM / ENODATA). Permission checks
 *   (trusted.* needs CAP_SYS_ADMIN) belong to the frontends that know the caller. Reads of attributes
 *   take the lock too, since a chunked value spans several kv entries.
 * - A directory is a kv map (ObjectType.directory): name → 9 bytes (u64 LE object id, u8 kind: 1 file,
 *   2 directory, 3 symlink). "." and ".." are not stored: "." is the directory, ".." its inode's parent
 *   (the root is its own parent). size = entries + 2 and nlink = 2 + subdirectories, as in ZFS.
 * - A regular file is an ObjectType.plainFile object with fixed blocks of the recordsize (128 KiB by
 *   default). OpenZFS shrinks the block of a one-block file to the file size rounded up to 512 B; the
 *   ObjectStore contract has no call to change an object's block size after allocation, so Cairn keeps
 *   fixed-size blocks and relies on the io layer compressing a short block's zero tail away.
 * - A symlink is an ObjectType.symlink object; a target of up to 224 bytes lives in the bonus right after
 *   the inode (INODE_FLAG_INLINE_SYMLINK), a longer one (up to 4095 bytes) in the object's data.
 *
 * Invariants
 * - Bytes of a file object at or past the inode size are zero: a truncate that shrinks frees whole blocks
 *   past the new size and zeroes the rest of its last block (freeRange), so a later grow, by truncate or
 *   by a write past the end, exposes zeros (a hole) without writing anything.
 * - A directory's parent pointer is its one parent; rename updates it, so the "into its own subtree"
 *   check walks parent pointers up to the root instead of searching down.
 * - nlink counts directory entries (plus "." and ".." for directories); the last unlink frees the object.
 *
 * Timestamps follow POSIX: create/mkdir/symlink/link/unlink/rmdir/rename set the parents' mtime and
 * ctime; write sets mtime and ctime; any setattr sets ctime, a size change also mtime; link, unlink and
 * rename set the inode's ctime. atime follows relatime (a read refreshes it only when it is not newer than
 * mtime/ctime, or is a day old). The clock is injected (nowNs) so tests are deterministic.
 */
export {
  Filesystem,
  FS_VERSION,
  MASTER_NODE_OBJECT_ID,
  NAME_SIZE_MAX_BYTES,
  READDIR_LIMIT_MAX,
  RECORD_SIZE_DEFAULT_BYTES,
  SYMLINK_TARGET_SIZE_MAX_BYTES,
  validateName,
  FILE_SIZE_MAX_BYTES,
  type FilesystemCreateOptions,
  type FilesystemOpenOptions,
  type StatfsFigures,
} from './filesystem.js';
export {
  listDirectory,
  mkdirp,
  readFileToStream,
  removePath,
  resolvePathFollow,
  splitPath,
  writeFileFromStream,
  STREAM_CHUNK_SIZE_BYTES,
  type ListedEntry,
} from './paths.js';
export { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, S_IPERM, S_ISGID, S_ISUID, S_ISVTX } from './inode.js';
export {
  XATTR_LIST_SIZE_MAX_BYTES,
  XATTR_NAME_SIZE_MAX_BYTES,
  XATTR_NAMESPACES,
  XATTR_SIZE_MAX_BYTES,
} from './xattr.js';
export * from './types.js';
export { ChangeReportingFs, type FsChange } from './change-reporting.js';

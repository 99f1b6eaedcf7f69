/**
 * Contract of the POSIX layer (OpenZFS ZPL): an inode-based file system on one ObjectStore, the shape
 * FUSE and the file-operations translators need later. Inode numbers are object ids. Paths are a
 * convenience on top (resolvePath). Errors are CairnErrors: ENOENT, EEXIST, ENOTDIR, EISDIR, ENOTEMPTY,
 * ENAMETOOLONG, EINVAL, ENOSPC; the xattr calls add ENODATA, E2BIG, ERANGE, EOPNOTSUPP and EPERM.
 */

export const FileKind = { file: 'file', directory: 'directory', symlink: 'symlink' } as const;
export type FileKind = (typeof FileKind)[keyof typeof FileKind];

export interface Stat {
  ino: number;
  kind: FileKind;
  /** Full st_mode, type bits included (S_IFREG | 0o644). */
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  sizeBytes: number;
  /** Physical bytes allocated (after compression), as st_blocks * 512. */
  allocatedBytes: number;
  /** Nanoseconds since the epoch. */
  atimeNs: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  birthtimeNs: bigint;
}

export interface DirEntry {
  name: string;
  ino: number;
  kind: FileKind;
}

export interface SetAttr {
  mode?: number;
  uid?: number;
  gid?: number;
  sizeBytes?: number;
  atimeNs?: bigint;
  mtimeNs?: bigint;
}

export interface CreateOptions {
  /** Permission bits (0o644); type bits are implied by the call. */
  mode: number;
  uid?: number;
  gid?: number;
}

/** setxattr flags (XATTR_CREATE, XATTR_REPLACE); neither: create or replace. */
export interface SetXattrFlags {
  /** Fail with EEXIST when the attribute exists. */
  create?: boolean;
  /** Fail with ENODATA when the attribute does not exist. */
  replace?: boolean;
}

export interface FileSystemApi {
  readonly rootIno: number;
  lookup(parentIno: number, name: string): Promise<Stat>;
  getattr(ino: number): Promise<Stat>;
  setattr(ino: number, attr: SetAttr): Promise<Stat>;
  create(parentIno: number, name: string, options: CreateOptions): Promise<Stat>;
  mkdir(parentIno: number, name: string, options: CreateOptions): Promise<Stat>;
  unlink(parentIno: number, name: string): Promise<void>;
  rmdir(parentIno: number, name: string): Promise<void>;
  rename(parentIno: number, name: string, newParentIno: number, newName: string): Promise<void>;
  link(ino: number, newParentIno: number, newName: string): Promise<Stat>;
  symlink(parentIno: number, name: string, target: string, options?: Partial<CreateOptions>): Promise<Stat>;
  readlink(ino: number): Promise<string>;
  /** Entries after cursor (0n = start; "." and ".." are not listed), at most limit of them. */
  readdir(ino: number, cursor: bigint, limit: number): Promise<{ entries: DirEntry[]; cursor: bigint | null }>;
  /** Short reads only at end of file. */
  read(ino: number, offset: number, length: number): Promise<Buffer>;
  /** As read, into the caller's buffer; returns the bytes read (fewer only at end of file). */
  readInto(ino: number, offset: number, target: Buffer): Promise<number>;
  write(ino: number, offset: number, data: Buffer): Promise<number>;
  /** Resolves an absolute path ("/a/b") to its inode, following no symlink in the last component. */
  resolvePath(path: string): Promise<Stat>;
  statfs(): Promise<{ totalBytes: number; freeBytes: number; availableBytes: number; files: number }>;
  /**
   * Extended attributes, with Linux's rules: a name is 1-255 bytes (else ERANGE) in the user., trusted.,
   * security. namespace (else EOPNOTSUPP, system.* included: no POSIX ACLs; a bare prefix is EINVAL), a value at most 64 KiB
   * (else E2BIG). user.* attributes exist only on files and directories (EPERM to set one elsewhere,
   * ENODATA to read one). Setting or removing one changes ctime.
   */
  getxattr(ino: number, name: string): Promise<Buffer>;
  setxattr(ino: number, name: string, value: Buffer, flags?: SetXattrFlags): Promise<void>;
  /** Names of the inode's attributes, sorted; E2BIG when they exceed 64 KiB (XATTR_LIST_MAX) in all. */
  listxattr(ino: number): Promise<string[]>;
  removexattr(ino: number, name: string): Promise<void>;
  /**
   * Open-file tracking (POSIX unlink semantics): while an inode is retained, removing its last link
   * (unlink, rmdir, rename over it) keeps the inode readable and writable with nlink 0, listed nowhere;
   * the last release frees it. Retains live in memory; the on-disk unlinked set frees such inodes after
   * a crash, when the file system is next opened. EINVAL for a release without a retain. Optional:
   * a file system that never frees inodes (a read-only snapshot view) need not track opens.
   */
  retain?(ino: number): Promise<void>;
  release?(ino: number): Promise<void>;
}

/**
 * Permission checks made by the mount's server, with Linux's rules (generic_permission, may_create,
 * may_delete, setattr_prepare, xattr_permission, may_linkat), instead of by the kernel.
 *
 * Why the server: with `default_permissions` the kernel checks modes itself, but it must then re-read a
 * directory's attributes after every change in it, one more round trip per file created or deleted in
 * a loop (docs/fuse.md has the measurements).
 *
 * Who asks: FUSE sends the caller's fsuid, fsgid and thread id with each request, not its supplementary
 * groups or capabilities. Those are read from /proc/<tid>/status only when a decision depends on them:
 * the caller is not the owner, not in the owning group by its fsgid, and the group bits differ from the
 * others' bits; or a denial that a capability would lift (also for root, so a root process that
 * dropped CAP_DAC_OVERRIDE is refused as ext4 would refuse it). Capabilities count only when they are
 * the ones the request runs with: none when the thread is in another user namespace (`unshare -U`
 * gives an unprivileged user a full CapEff there, worth nothing on this mount's files), and none when
 * its fsuid/fsgid differ from the request's (access(2) in a setuid program runs as the real uid, with
 * the capabilities dropped, while /proc shows the thread's own).
 *
 * What the kernel still checks itself: who may use the mount (allow_other), a read-only mount, trusted.*
 * xattrs (CAP_SYS_ADMIN), that an executed file has an x bit, and sticky directories (with its cached
 * modes; the server checks them again with the file system's own).
 *
 * Search permission on a directory is checked when the kernel looks a name up in it, and the kernel
 * walks names it caches without asking. So names are cached only under a directory every caller may
 * search (the mount's nameValidSeconds), and the mount makes the kernel forget a directory's names when a change
 * takes one of its x bits away.
 */
import { constants as fsConstants, readFileSync, readlinkSync } from 'node:fs';
import { S_IFDIR, S_IFMT, S_IFREG, S_IPERM, S_ISGID, S_ISUID, S_ISVTX } from '../fs/index.js';
import type { Stat } from '../fs/types.js';
import { E, ErrnoReply } from './errno.js';

export const MAY_EXEC = 1;
export const MAY_WRITE = 2;
export const MAY_READ = 4;

const CAP_CHOWN = 0;
const CAP_DAC_OVERRIDE = 1;
const CAP_DAC_READ_SEARCH = 2;
const CAP_FOWNER = 3;
const CAP_FSETID = 4;

const S_IXGRP = 0o0010;
const S_IXUGO = 0o0111;

/**
 * The permission bits a write or truncate by a caller without CAP_FSETID leaves (no suid, no sgid if
 * group-executable, as Linux's VFS), or undefined when it changes none.
 */
export function modeAfterKillingSuidSgid(mode: number): number | undefined {
  const perm = mode & S_IPERM;
  const killed = perm & ~S_ISUID & ~(perm & S_IXGRP ? S_ISGID : 0);
  return killed === perm ? undefined : killed;
}

/** The part of a Stat a permission check reads. */
export type Owned = Pick<Stat, 'mode' | 'uid' | 'gid'>;

interface ProcessCredentials {
  groups: ReadonlySet<number>;
  effectiveCapabilities: bigint;
}

const NO_CREDENTIALS: ProcessCredentials = { groups: new Set(), effectiveCapabilities: 0n };

let ownUserNamespace: string | null | undefined;

function userNamespaceOf(pid: number | 'self'): string | null {
  try {
    return readlinkSync(`/proc/${pid}/ns/user`);
  } catch {
    return null;
  }
}

/**
 * Supplementary groups and effective capabilities of the thread a request comes from, from
 * /proc/<tid>/status; capabilities only when they apply to the request (the theory comment above).
 * A caller outside this process's pid namespace arrives with tid 0 and gets neither.
 */
function readCredentials(tid: number, uid: number, gid: number): ProcessCredentials {
  if (tid <= 0) return NO_CREDENTIALS;
  let status: string;
  try {
    status = readFileSync(`/proc/${tid}/status`, 'latin1');
  } catch {
    return NO_CREDENTIALS; // gone already: grant nothing beyond uid and gid
  }
  const groups = /^Groups:[ \t]*([0-9 \t]*)$/m.exec(status)?.[1]?.trim();
  const caps = /^CapEff:[ \t]*([0-9a-fA-F]+)$/m.exec(status)?.[1];
  // Uid: and Gid: list real, effective, saved and fs ids; the request runs as the fs ones.
  const fsUid = /^Uid:[ \t]*\d+[ \t]+\d+[ \t]+\d+[ \t]+(\d+)/m.exec(status)?.[1];
  const fsGid = /^Gid:[ \t]*\d+[ \t]+\d+[ \t]+\d+[ \t]+(\d+)/m.exec(status)?.[1];
  ownUserNamespace ??= userNamespaceOf('self');
  const capabilitiesApply =
    caps !== undefined && Number(fsUid) === uid && Number(fsGid) === gid && ownUserNamespace !== null && userNamespaceOf(tid) === ownUserNamespace;
  return {
    groups: new Set(groups ? groups.split(/[ \t]+/).map(Number) : []),
    effectiveCapabilities: capabilitiesApply ? BigInt(`0x${caps}`) : 0n,
  };
}

/** The process a request comes from: uid and gid from the request, the rest read when needed. */
export class Caller {
  private credentials: ProcessCredentials | null = null;

  constructor(
    readonly uid: number,
    readonly gid: number,
    /** Thread id in this process's pid namespace (the request header's pid); 0 for the kernel. */
    readonly tid: number,
  ) {}

  private read(): ProcessCredentials {
    return (this.credentials ??= readCredentials(this.tid, this.uid, this.gid));
  }

  inGroup(gid: number): boolean {
    return gid === this.gid || this.read().groups.has(gid);
  }

  capable(capability: number): boolean {
    return ((this.read().effectiveCapabilities >> BigInt(capability)) & 1n) === 1n;
  }

  /** Owner, or holds CAP_FOWNER (Linux's inode_owner_or_capable). */
  ownerOrCapable(node: Owned): boolean {
    return this.uid === node.uid || this.capable(CAP_FOWNER);
  }
}

/** Linux's generic_permission without ACLs: mask is MAY_READ | MAY_WRITE | MAY_EXEC. */
export function permitted(caller: Caller, node: Owned, mask: number): boolean {
  let mode = node.mode;
  if (caller.uid === node.uid) {
    if ((mask & ~(mode >> 6)) === 0) return true;
  } else {
    // Only when group and other differ in the bits asked for does group membership matter.
    if (mask & (mode ^ (mode >> 3)) && caller.inGroup(node.gid)) mode >>= 3;
    if ((mask & ~mode & 7) === 0) return true;
  }
  if ((node.mode & S_IFMT) === S_IFDIR) {
    if (!(mask & MAY_WRITE) && caller.capable(CAP_DAC_READ_SEARCH)) return true;
    return caller.capable(CAP_DAC_OVERRIDE);
  }
  if (mask === MAY_READ && caller.capable(CAP_DAC_READ_SEARCH)) return true;
  // Read and write are always overridable, exec only when some x bit is set.
  return (!(mask & MAY_EXEC) || (node.mode & S_IXUGO) !== 0) && caller.capable(CAP_DAC_OVERRIDE);
}

/** EACCES unless permitted. */
export function requireAccess(caller: Caller, node: Owned, mask: number): void {
  if (!permitted(caller, node, mask)) throw new ErrnoReply(E.EACCES);
}

/** A name may be added to dir (may_create). */
export function requireCreate(caller: Caller, dir: Owned): void {
  requireAccess(caller, dir, MAY_WRITE | MAY_EXEC);
}

/** victim's name may be removed from dir (may_delete): EACCES, or EPERM in a sticky directory. */
export function requireDelete(caller: Caller, dir: Owned, victim: Owned | null): void {
  requireAccess(caller, dir, MAY_WRITE | MAY_EXEC);
  if (victim !== null && isSticky(dir) && caller.uid !== victim.uid && caller.uid !== dir.uid && !caller.capable(CAP_FOWNER)) {
    throw new ErrnoReply(E.EPERM);
  }
}

/** Whether a sticky directory makes the victim's owner matter for a delete (worth looking it up). */
export function isSticky(dir: Owned): boolean {
  return (dir.mode & S_ISVTX) !== 0;
}

/** The access an open asks for: its O_ACCMODE, O_TRUNC (write) or the kernel's exec open (exec only). */
export function openMask(flags: number): number {
  if (flags & FMODE_EXEC_FLAG) return MAY_EXEC;
  const access = flags & O_ACCMODE;
  let mask = access === fsConstants.O_RDONLY ? MAY_READ : access === fsConstants.O_WRONLY ? MAY_WRITE : MAY_READ | MAY_WRITE;
  if (flags & fsConstants.O_TRUNC) mask |= MAY_WRITE;
  return mask;
}
/** The access mode bits of open flags (node's fs.constants lacks it). */
export const O_ACCMODE = 3;
/** __FMODE_EXEC: open(2) cannot set it; the kernel's open for execve does, and FUSE passes it in OPEN's flags. */
const FMODE_EXEC_FLAG = 0x20;

/** What a SETATTR asks to change, as the checks need it. */
export interface AttrChange {
  mode?: number;
  uid?: number;
  gid?: number;
  /** A new size through a path (truncate(2)); through an open file the open was checked. */
  sizeByPath?: boolean;
  /** Times set to given values, or only one of them to now (utimensat with times): owner only. */
  timesGiven?: boolean;
  /** Both times set to now (utimensat(NULL), or both UTIME_NOW): owner or a writer. */
  timesNow?: boolean;
}

/**
 * Linux's setattr_prepare (and do_sys_truncate's write check): EPERM or EACCES when the caller may not
 * make the change. Returns the mode to set, which loses S_ISGID when a caller outside the file's
 * (new) group and without CAP_FSETID changes the mode, as setattr_copy does.
 */
export function checkSetattr(caller: Caller, node: Owned, change: AttrChange): number | undefined {
  if (change.sizeByPath) requireAccess(caller, node, MAY_WRITE);
  if (change.uid !== undefined && !(caller.uid === node.uid && change.uid === node.uid) && !caller.capable(CAP_CHOWN)) {
    throw new ErrnoReply(E.EPERM);
  }
  if (
    change.gid !== undefined &&
    !(caller.uid === node.uid && (change.gid === node.gid || caller.inGroup(change.gid))) &&
    !caller.capable(CAP_CHOWN)
  ) {
    throw new ErrnoReply(E.EPERM);
  }
  let mode = change.mode;
  if (mode !== undefined) {
    if (!caller.ownerOrCapable(node)) throw new ErrnoReply(E.EPERM);
    if (mode & S_ISGID && !caller.inGroup(change.gid ?? node.gid) && !caller.capable(CAP_FSETID)) mode &= ~S_ISGID;
  }
  if (change.timesGiven && !caller.ownerOrCapable(node)) throw new ErrnoReply(E.EPERM);
  if (change.timesNow && !caller.ownerOrCapable(node)) requireAccess(caller, node, MAY_WRITE);
  return mode;
}

/**
 * xattr_permission for user.* (other namespaces: the kernel checks trusted.*, and security.* is the
 * security module's): read or write permission; on a sticky directory only its owner may change them.
 */
export function requireXattrAccess(caller: Caller, node: Owned, name: string, mask: number): void {
  if (!name.startsWith('user.')) return;
  if ((node.mode & S_IFMT) === S_IFDIR && node.mode & S_ISVTX && mask & MAY_WRITE && !caller.ownerOrCapable(node)) {
    throw new ErrnoReply(E.EPERM);
  }
  requireAccess(caller, node, mask);
}

/**
 * may_linkat with fs.protected_hardlinks (Debian's default): a caller who does not own the file links
 * it only if it is a regular file, not setuid, not setgid-executable, and readable and writable by it.
 */
export function requireLinkSource(caller: Caller, node: Owned, protectedHardlinks: boolean): void {
  if (!protectedHardlinks || caller.ownerOrCapable(node)) return;
  const mode = node.mode;
  const safe =
    (mode & S_IFMT) === S_IFREG &&
    !(mode & S_ISUID) &&
    !(mode & S_ISGID && mode & S_IXGRP) &&
    permitted(caller, node, MAY_READ | MAY_WRITE);
  if (!safe) throw new ErrnoReply(E.EPERM);
}

/** Whether every caller may search dir (all three x bits): only then may the kernel cache its names. */
export function searchableByAll(dir: Owned): boolean {
  return (dir.mode & S_IXUGO) === S_IXUGO;
}

/** fs.protected_hardlinks, read once per mount; unreadable means on (the safe side). */
export function protectedHardlinksEnabled(): boolean {
  try {
    return readFileSync('/proc/sys/fs/protected_hardlinks', 'latin1').trim() !== '0';
  } catch {
    return true;
  }
}

/**
 * A FileSystemApi that tells a listener what each of its mutations changed, for caches that live outside
 * the file system: a FUSE mount lets the kernel keep names and attributes for a long time, and the daemon
 * wraps the file system its own file verbs use (cairn cp, rm, mv…) in this, so the kernel forgets what a
 * verb changed behind the mount's back. Changes the mount makes itself need no report: the kernel
 * updates its caches from its own requests.
 *
 * A report names a directory entry (its name came or went) or an inode (attributes; `data` when its
 * bytes changed too). It is sent after the call settles, also after a failure, since a failed write or
 * setattr may have changed part of what it aimed at, and the call returns once the reports are taken.
 * Reads pass through untouched.
 */
import type { CreateOptions, DirEntry, FileSystemApi, SetAttr, SetXattrFlags, Stat } from './types.js';

export type FsChange = { kind: 'entry'; parentIno: number; name: string } | { kind: 'inode'; ino: number; data: boolean };

export class ChangeReportingFs implements FileSystemApi {
  readonly rootIno: number;

  constructor(
    private readonly inner: FileSystemApi,
    /** Told each change; a mutation returns once the promises it returned resolved (the kernel forgot). */
    private readonly report: (change: FsChange) => void | Promise<void>,
  ) {
    this.rootIno = inner.rootIno;
  }

  private async entry(parentIno: number, name: string): Promise<void> {
    await Promise.all([this.report({ kind: 'entry', parentIno, name }), this.report({ kind: 'inode', ino: parentIno, data: false })]);
  }

  private async inode(ino: number | undefined, data = false): Promise<void> {
    if (ino !== undefined) await this.report({ kind: 'inode', ino, data });
  }

  /** The inode a name points at now, if any: unlink, rmdir and rename change its link count. */
  private async inoAt(parentIno: number, name: string): Promise<number | undefined> {
    return this.inner.lookup(parentIno, name).then(
      (st) => st.ino,
      () => undefined,
    );
  }

  // ---- reads ----

  lookup(parentIno: number, name: string): Promise<Stat> {
    return this.inner.lookup(parentIno, name);
  }
  getattr(ino: number): Promise<Stat> {
    return this.inner.getattr(ino);
  }
  readlink(ino: number): Promise<string> {
    return this.inner.readlink(ino);
  }
  readdir(ino: number, cursor: bigint, limit: number): Promise<{ entries: DirEntry[]; cursor: bigint | null }> {
    return this.inner.readdir(ino, cursor, limit);
  }
  read(ino: number, offset: number, length: number): Promise<Buffer> {
    return this.inner.read(ino, offset, length);
  }
  readInto(ino: number, offset: number, target: Buffer): Promise<number> {
    return this.inner.readInto(ino, offset, target);
  }
  resolvePath(path: string): Promise<Stat> {
    return this.inner.resolvePath(path);
  }
  statfs(): Promise<{ totalBytes: number; freeBytes: number; availableBytes: number; files: number }> {
    return this.inner.statfs();
  }
  getxattr(ino: number, name: string): Promise<Buffer> {
    return this.inner.getxattr(ino, name);
  }
  listxattr(ino: number): Promise<string[]> {
    return this.inner.listxattr(ino);
  }
  async retain(ino: number): Promise<void> {
    await this.inner.retain?.(ino);
  }
  async release(ino: number): Promise<void> {
    await this.inner.release?.(ino);
  }

  // ---- mutations ----

  async setattr(ino: number, attr: SetAttr): Promise<Stat> {
    try {
      return await this.inner.setattr(ino, attr);
    } finally {
      await this.inode(ino, attr.sizeBytes !== undefined);
    }
  }

  create(parentIno: number, name: string, options: CreateOptions): Promise<Stat> {
    return this.addEntry(parentIno, name, () => this.inner.create(parentIno, name, options));
  }

  mkdir(parentIno: number, name: string, options: CreateOptions): Promise<Stat> {
    return this.addEntry(parentIno, name, () => this.inner.mkdir(parentIno, name, options));
  }

  symlink(parentIno: number, name: string, target: string, options?: Partial<CreateOptions>): Promise<Stat> {
    return this.addEntry(parentIno, name, () => this.inner.symlink(parentIno, name, target, options));
  }

  private async addEntry(parentIno: number, name: string, make: () => Promise<Stat>): Promise<Stat> {
    try {
      return await make();
    } finally {
      await this.entry(parentIno, name);
    }
  }

  async link(ino: number, newParentIno: number, newName: string): Promise<Stat> {
    try {
      return await this.inner.link(ino, newParentIno, newName);
    } finally {
      await Promise.all([
        this.entry(newParentIno, newName),
        this.inode(ino),
      ]);
    }
  }

  unlink(parentIno: number, name: string): Promise<void> {
    return this.removeEntry(parentIno, name, () => this.inner.unlink(parentIno, name));
  }

  rmdir(parentIno: number, name: string): Promise<void> {
    return this.removeEntry(parentIno, name, () => this.inner.rmdir(parentIno, name));
  }

  private async removeEntry(parentIno: number, name: string, remove: () => Promise<void>): Promise<void> {
    const child = await this.inoAt(parentIno, name);
    try {
      await remove();
    } finally {
      await Promise.all([this.entry(parentIno, name), this.inode(child)]);
    }
  }

  async rename(parentIno: number, name: string, newParentIno: number, newName: string): Promise<void> {
    const moved = await this.inoAt(parentIno, name);
    const replaced = await this.inoAt(newParentIno, newName);
    try {
      await this.inner.rename(parentIno, name, newParentIno, newName);
    } finally {
      await Promise.all([
        this.entry(parentIno, name),
        this.entry(newParentIno, newName),
        this.inode(moved),
        this.inode(replaced),
      ]);
    }
  }

  async write(ino: number, offset: number, data: Buffer): Promise<number> {
    try {
      return await this.inner.write(ino, offset, data);
    } finally {
      await this.inode(ino, true);
    }
  }

  async setxattr(ino: number, name: string, value: Buffer, flags?: SetXattrFlags): Promise<void> {
    try {
      await this.inner.setxattr(ino, name, value, flags);
    } finally {
      await this.inode(ino);
    }
  }

  async removexattr(ino: number, name: string): Promise<void> {
    try {
      await this.inner.removexattr(ino, name);
    } finally {
      await this.inode(ino);
    }
  }
}

/**
 * FileDevice: a BlockDevice over a regular file or a block device, with positional I/O through a
 * fs.promises FileHandle. flush() is fdatasync: the only promise durability rests on.
 *
 * Writes are aggregated, as OpenZFS's vdev queue does: the writes issued in one turn of the event loop
 * are sorted, and runs that touch end to end go down as one writev of at most AGGREGATE_MAX_BYTES. A
 * txg of small blocks (an untar) then costs a system call per run instead of one per block, and each
 * call costs the JavaScript thread a hand-off to the libuv pool. Each write still resolves only once
 * its bytes were written, and flush() and close() first finish every write issued before them.
 * Writes in flight together have no order among them (as on any disk): a caller that writes a range
 * twice, or reads what it writes, waits for the first write, as the pool always does.
 *
 * Reads are aggregated the same way: the reads of one turn that lie end to end go down as one readv
 * into each read's own buffer. A sequential read of small blocks (an NBD client reading a volume of
 * 16 KiB blocks, 64 requests in flight) then costs a system call and a hand-off per run, not per block.
 * A run that fails is read again one read at a time, so an error fails only the reads it touches.
 */
import { constants as fsConstants, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { CairnError } from '../util/errors.js';
import { assert } from '../util/assert.js';
import type { BlockDevice } from './types.js';

const AGGREGATE_MAX_BYTES = 1024 * 1024;
/** Buffers per readv: Linux's IOV_MAX; a longer run would come back short and finish read by read. */
const AGGREGATE_MAX_READS = 1024;

interface PendingRead {
  offset: number;
  out: Buffer;
  resolve: (out: Buffer) => void;
  reject: (error: unknown) => void;
}

/**
 * Cuts ops sorted by offset into runs that lie end to end, each of at most maxBytes and maxOps
 * (overlapping ops start runs of their own).
 */
function adjacentRuns<T extends { offset: number }>(sorted: T[], lengthOf: (op: T) => number, maxBytes: number, maxOps: number): T[][] {
  const runs: T[][] = [];
  let run: T[] = [];
  let runEnd = -1;
  for (const op of sorted) {
    const first = run[0];
    if (first === undefined || op.offset !== runEnd || run.length >= maxOps || runEnd + lengthOf(op) - first.offset > maxBytes) {
      run = [];
      runs.push(run);
    }
    run.push(op);
    runEnd = op.offset + lengthOf(op);
  }
  return runs;
}

interface PendingWrite {
  offset: number;
  data: Buffer;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/** Paths this process holds with exclusive: true (a second exclusive open here is refused). */
const exclusivePaths = new Set<string>();

export interface OpenFileDeviceOptions {
  /** Create the file (sparse) with this size when it does not exist. */
  create?: number;
  /**
   * Refuse a second exclusive open of the same path in this process, and open block devices with
   * O_EXCL (Linux refuses it while the device is mounted or held). Cross-process ownership of a pool
   * is the pool layer's lock, not this one.
   */
  exclusive?: boolean;
  readOnly?: boolean;
}

export class FileDevice implements BlockDevice {
  readonly path: string;
  readonly sizeBytes: number;
  private handle: FileHandle | null;
  private readonly exclusiveKey: string | null;
  /** Writes waiting for this turn of the event loop to end (see the top of the file). */
  private pending: PendingWrite[] = [];
  /** Reads waiting for this turn of the event loop to end. */
  private pendingReads: PendingRead[] = [];
  /** Runs issued and not yet settled. */
  private readonly inFlight = new Set<Promise<void>>();

  constructor(path: string, handle: FileHandle, sizeBytes: number, exclusiveKey: string | null) {
    this.path = path;
    this.handle = handle;
    this.sizeBytes = sizeBytes;
    this.exclusiveKey = exclusiveKey;
  }

  async read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    this.checkRange(offset, length);
    assert(into === undefined || into.length === length, `${this.path}: read into ${into?.length} bytes for ${length}`);
    this.openHandle();
    // Every byte is filled by the read or it fails: no need to zero first.
    const out = into ?? Buffer.allocUnsafe(length);
    if (length === 0) return out;
    return new Promise<Buffer>((resolve, reject) => {
      if (this.pendingReads.length === 0) setImmediate(() => this.issueReads());
      this.pendingReads.push({ offset, out, resolve, reject });
    });
  }

  /** Issues the waiting reads as runs of adjacent ones (overlapping reads go in runs of their own). */
  private issueReads(): void {
    const batch = this.pendingReads.sort((a, b) => a.offset - b.offset);
    this.pendingReads = [];
    for (const run of adjacentRuns(batch, (r) => r.out.length, AGGREGATE_MAX_BYTES, AGGREGATE_MAX_READS)) void this.readRun(run);
  }

  private async readRun(run: PendingRead[]): Promise<void> {
    const first = run[0] as PendingRead;
    let bytesRead = 0;
    if (run.length > 1) {
      try {
        ({ bytesRead } = await this.openHandle().readv(run.map((r) => r.out), first.offset));
      } catch {
        // each read again on its own: only the ones the error touches fail
      }
    }
    for (const r of run) {
      const filled = Math.min(Math.max(bytesRead - (r.offset - first.offset), 0), r.out.length);
      this.readRest(r, filled).then(r.resolve, r.reject);
    }
  }

  /** Reads what is left of r after its first `filled` bytes. */
  private async readRest(r: PendingRead, filled: number): Promise<Buffer> {
    const length = r.out.length;
    let done = filled;
    while (done < length) {
      const { bytesRead } = await this.openHandle().read(r.out, done, length - done, r.offset + done);
      if (bytesRead === 0) {
        throw new CairnError('EIO', `${this.path}: short read at ${r.offset + done} (device ends early)`);
      }
      done += bytesRead;
    }
    return r.out;
  }

  async write(offset: number, data: Buffer): Promise<void> {
    this.checkRange(offset, data.length);
    this.openHandle();
    if (data.length === 0) return;
    return new Promise<void>((resolve, reject) => {
      if (this.pending.length === 0) setImmediate(() => this.issuePending());
      this.pending.push({ offset, data, resolve, reject });
    });
  }

  /**
   * Issues the waiting writes as runs of adjacent ones. Writes that overlap (the pool issues none
   * together) go one at a time in the order they were issued, so the last one issued is what stays.
   */
  private issuePending(): void {
    const issued = this.pending;
    this.pending = [];
    const batch = [...issued].sort((a, b) => a.offset - b.offset);
    const runs = adjacentRuns(batch, (w) => w.data.length, AGGREGATE_MAX_BYTES, Number.POSITIVE_INFINITY);
    const overlap = batch.some((w, k) => k > 0 && w.offset < (batch[k - 1] as PendingWrite).offset + (batch[k - 1] as PendingWrite).data.length);
    const settle = (run: PendingWrite[]): Promise<void> => {
      const settled = this.writeRun(run).then(
        () => run.forEach((w) => w.resolve()),
        (error: unknown) => run.forEach((w) => w.reject(error)),
      );
      this.inFlight.add(settled);
      void settled.finally(() => this.inFlight.delete(settled));
      return settled;
    };
    if (!overlap) {
      for (const run of runs) void settle(run);
      return;
    }
    const inOrder = issued.reduce<Promise<void>>((previous, w) => previous.then(() => settle([w])), Promise.resolve());
    this.inFlight.add(inOrder);
    void inOrder.finally(() => this.inFlight.delete(inOrder));
  }

  /** Issues what waits for the end of this turn now, and waits until every write issued so far settled. */
  private async drainWrites(): Promise<void> {
    if (this.pending.length > 0) this.issuePending();
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  private async writeRun(run: PendingWrite[]): Promise<void> {
    const handle = this.openHandle();
    const offset = (run[0] as PendingWrite).offset;
    let buffers = run.map((w) => w.data);
    let total = 0;
    for (const b of buffers) total += b.length;
    let done = 0;
    while (done < total) {
      const { bytesWritten } = buffers.length === 1
        ? await handle.write(buffers[0] as Buffer, 0, (buffers[0] as Buffer).length, offset + done)
        : await handle.writev(buffers, offset + done);
      if (bytesWritten === 0) throw new CairnError('EIO', `${this.path}: write made no progress at ${offset + done}`);
      done += bytesWritten;
      if (done < total) buffers = [Buffer.concat(buffers).subarray(bytesWritten)]; // a short write: the rest as one
    }
  }

  async flush(): Promise<void> {
    await this.drainWrites();
    await this.openHandle().datasync();
  }

  async close(): Promise<void> {
    const handle = this.handle;
    if (handle === null) return;
    if (this.pendingReads.length > 0) this.issueReads(); // each takes the handle now; its close waits for them
    await this.drainWrites();
    this.handle = null;
    if (this.exclusiveKey !== null) exclusivePaths.delete(this.exclusiveKey);
    await handle.close();
  }

  private openHandle(): FileHandle {
    if (this.handle === null) throw new CairnError('EIO', `${this.path}: device is closed`);
    return this.handle;
  }

  private checkRange(offset: number, length: number): void {
    assert(Number.isSafeInteger(offset) && offset >= 0 && length >= 0, `bad range ${offset}+${length}`);
    assert(offset + length <= this.sizeBytes, `${this.path}: range ${offset}+${length} beyond ${this.sizeBytes}`);
  }
}

/** Creates a sparse file of sizeBytes (fails with EEXIST if the path exists). */
export async function createSparseFile(path: string, sizeBytes: number): Promise<void> {
  assert(Number.isSafeInteger(sizeBytes) && sizeBytes > 0, `bad size ${sizeBytes}`);
  let handle: FileHandle;
  try {
    handle = await fsp.open(path, 'wx');
  } catch (e) {
    throw translateOpenError(path, e);
  }
  try {
    await handle.truncate(sizeBytes);
  } finally {
    await handle.close();
  }
}

export async function openFileDevice(path: string, options: OpenFileDeviceOptions = {}): Promise<FileDevice> {
  const key = options.exclusive === true ? await canonicalPath(path, options.create !== undefined) : null;
  if (key !== null && exclusivePaths.has(key)) throw new CairnError('EBUSY', `${path} is already open`);
  if (options.create !== undefined) {
    try {
      await createSparseFile(path, options.create);
    } catch (e) {
      if (!(e instanceof CairnError && e.code === 'EEXIST')) throw e;
    }
  }
  let flags = options.readOnly === true ? fsConstants.O_RDONLY : fsConstants.O_RDWR;
  let isBlock = false;
  try {
    isBlock = (await fsp.stat(path)).isBlockDevice();
  } catch (e) {
    throw translateOpenError(path, e);
  }
  if (isBlock && options.exclusive === true) flags |= fsConstants.O_EXCL;
  let handle: FileHandle;
  try {
    handle = await fsp.open(path, flags);
  } catch (e) {
    throw translateOpenError(path, e);
  }
  try {
    const stat = await handle.stat();
    const sizeBytes = stat.isBlockDevice() ? await blockDeviceSizeBytes(handle, Number(stat.rdev)) : stat.size;
    if (sizeBytes <= 0) throw new CairnError('EINVAL', `${path}: device has no usable size`);
    if (key !== null) {
      // Re-check after the awaits: another open of the same path may have won the race.
      if (exclusivePaths.has(key)) throw new CairnError('EBUSY', `${path} is already open`);
      exclusivePaths.add(key);
    }
    return new FileDevice(path, handle, sizeBytes, key);
  } catch (e) {
    await handle.close();
    throw e;
  }
}

async function canonicalPath(path: string, mayNotExist: boolean): Promise<string> {
  try {
    return await fsp.realpath(path);
  } catch (e) {
    if (mayNotExist) return path;
    throw translateOpenError(path, e);
  }
}

/**
 * fstat reports size 0 for block devices and Node has no ioctl, so ask sysfs (in 512-byte sectors),
 * and failing that find the end by probing reads (binary search on "does a byte exist here").
 */
async function blockDeviceSizeBytes(handle: FileHandle, rdev: number): Promise<number> {
  const major = ((rdev >>> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
  const minor = (rdev & 0xff) | ((rdev >>> 12) & 0xfff00);
  try {
    const text = await fsp.readFile(`/sys/dev/block/${major}:${minor}/size`, 'utf8');
    const sectors = Number(text.trim());
    if (Number.isSafeInteger(sectors) && sectors > 0) return sectors * 512;
  } catch {
    // No sysfs (not Linux, or a container without it): fall through to probing.
  }
  const probe = Buffer.alloc(1);
  const exists = async (at: number): Promise<boolean> => (await handle.read(probe, 0, 1, at)).bytesRead === 1;
  let low = 0;
  let high = 512;
  while (await exists(high - 1)) {
    low = high;
    high *= 2;
    if (high > 2 ** 52) break;
  }
  while (high - low > 1) {
    const mid = Math.floor((low + high) / 2);
    if (await exists(mid - 1)) low = mid;
    else high = mid;
  }
  return low;
}

function translateOpenError(path: string, e: unknown): unknown {
  const code = (e as NodeJS.ErrnoException | null)?.code;
  if (code === 'ENOENT') return new CairnError('ENOENT', `${path}: no such file or device`);
  if (code === 'EEXIST') return new CairnError('EEXIST', `${path} already exists`);
  if (code === 'EBUSY') return new CairnError('EBUSY', `${path} is in use`);
  if (code === 'EACCES' || code === 'EPERM') return new CairnError('EINVAL', `${path}: permission denied`);
  return e;
}

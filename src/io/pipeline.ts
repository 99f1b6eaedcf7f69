/**
 * IoPipeline: the block write and read paths (OpenZFS zio), over the pool's top-level vdevs.
 *
 * write:  compress (kept only if it saves 1/8 and at least one sector) → pad to the sector size →
 *         checksum the psize bytes → allocate `copies` DVAs → write every copy in parallel → BlockPointer.
 * read:   for each DVA in turn, ask its vdev for data the checksum accepts (the vdev itself tries mirror
 *         sides and raidz reconstructions) → first success wins → write it back over the copies that
 *         failed (self-heal across DVAs) → decompress.
 * scrub:  read every DVA in "all" mode, so vdevs check every side and column, and heal across DVAs.
 *
 * Padding: psize is a multiple of the largest ashift among the pool's top-level vdevs, so one payload
 * and one checksum fit every copy wherever the allocator puts it. That shift is probed from the vdevs at
 * first use and raised (and the block re-laid out) if a DVA ever lands on a vdev with a larger one.
 *
 * Buffers: a raw, sector-aligned block is written straight from the caller's buffer (no copy), so the
 * caller must not modify it until write() resolves; a raw read returns a view of the vdev's buffer.
 */
import { assert, InvariantError } from '../util/assert.js';
import { CairnError, isCairnError } from '../util/errors.js';
import type { Vdev } from '../vdev/types.js';
import { CHECKSUM_SIZE_BYTES, DVA_COUNT_MAX, SECTOR_SHIFT_MIN, dvaKey, isHole } from './blkptr.js';
import type { BlockPointer, Dva } from './blkptr.js';
import { checksumEquals, computeChecksum } from './checksum.js';
import { compressBlock, decompressBlock, ZSTD_LEVEL_DEFAULT } from './compress.js';
import { ChecksumType, CompressionType } from './types.js';
import type { Allocator, BlockIo, BlockWriteProps, ScrubResult } from './types.js';

/** Permanent errors kept for `pool status -v`; older ones are dropped (the total is still counted). */
export const DATA_ERRORS_MAX = 100;
/** Top-level vdev ids probed for the largest ashift when none is configured. */
const VDEV_PROBE_MAX = 256;
/** A logical block must fit the u32 lsize/psize fields of a block pointer. */
const BLOCK_SIZE_MAX_BYTES = 0xffff_ffff;
const CHECKSUM_TYPES: ReadonlySet<number> = new Set(Object.values(ChecksumType));
const COMPRESSION_TYPES: ReadonlySet<number> = new Set(Object.values(CompressionType));

export interface IoPipelineOptions {
  /** Top-level vdev by id (the id in DVAs); undefined when there is none. */
  vdevs: (id: number) => Vdev | undefined;
  allocator: Allocator;
  /** Sector shift psize is padded to; by default the largest ashift of the top-level vdevs. */
  ashift?: number;
  zstdLevel?: number;
}

/** Plain counters for iostat / status; bytes are physical (psize) bytes. */
export interface IoStats {
  /** Block reads served (one per read() call that returned data). */
  readOps: number;
  readBytes: number;
  /** Copies written (a copies=2 block counts 2). */
  writeOps: number;
  writeBytes: number;
  /** DVA reads that returned data failing the checksum (vdevs count their own children separately). */
  checksumErrors: number;
  /** DVA reads or writes that failed with an I/O error. */
  ioErrors: number;
  /** Bytes rewritten to repair bad copies, by vdevs and across DVAs. */
  repairedBytes: number;
  /** Copies rewritten across DVAs. */
  healedCopies: number;
  /** Reads or scrubs that found no good copy (permanent errors), including ones dropped from the list. */
  dataErrors: number;
  scrubbedBlocks: number;
  scrubbedBytes: number;
}

export interface DataErrorRecord {
  bp: BlockPointer;
  code: 'ECKSUM' | 'EIO';
  /** How often the block was found unreadable. */
  count: number;
}

interface PreparedBlock {
  /** psize bytes as written and checksummed. */
  payload: Buffer;
  compression: CompressionType;
  cksum: Buffer;
  sectorShift: number;
}

export class IoPipeline implements BlockIo {
  readonly stats: IoStats = {
    readOps: 0, readBytes: 0, writeOps: 0, writeBytes: 0, checksumErrors: 0, ioErrors: 0,
    repairedBytes: 0, healedCopies: 0, dataErrors: 0, scrubbedBlocks: 0, scrubbedBytes: 0,
  };
  private readonly vdevs: (id: number) => Vdev | undefined;
  private readonly allocator: Allocator;
  private readonly zstdLevel: number;
  private sectorShift: number | undefined;
  /** Reused by every verification: computed and compared synchronously, never across an await. */
  private readonly scratchCksum = Buffer.alloc(CHECKSUM_SIZE_BYTES);
  private readonly errorsByBlock = new Map<string, DataErrorRecord>();

  constructor(options: IoPipelineOptions) {
    this.vdevs = options.vdevs;
    this.allocator = options.allocator;
    this.zstdLevel = options.zstdLevel ?? ZSTD_LEVEL_DEFAULT;
    if (options.ashift !== undefined) {
      assert(options.ashift >= SECTOR_SHIFT_MIN && options.ashift <= 16, `ashift ${options.ashift} out of range`);
      this.sectorShift = options.ashift;
    }
  }

  /** Blocks found unreadable, oldest first, at most DATA_ERRORS_MAX. */
  get dataErrors(): DataErrorRecord[] {
    return [...this.errorsByBlock.values()];
  }

  /** Forgets recorded permanent errors (`pool clear`). */
  clearDataErrors(): void {
    this.errorsByBlock.clear();
  }

  async write(data: Buffer, props: BlockWriteProps): Promise<BlockPointer> {
    checkWriteProps(data, props);
    let prepared = this.prepare(data, props);
    for (;;) {
      const dvas = this.allocator.allocate(prepared.payload.length, props.copies);
      assert(dvas.length === props.copies, `allocator returned ${dvas.length} DVAs for ${props.copies} copies`);
      const largerShift = this.largestShiftOf(dvas);
      if (largerShift > prepared.sectorShift) {
        // A vdev with larger sectors appeared since the shift was learnt: lay the block out again.
        for (const dva of dvas) this.allocator.free(dva);
        this.sectorShift = largerShift;
        prepared = this.prepare(data, props);
        continue;
      }
      try {
        await this.writeCopies(dvas, prepared.payload);
      } catch (e) {
        for (const dva of dvas) this.allocator.free(dva);
        throw e;
      }
      return this.blockPointer(dvas, data.length, prepared, props);
    }
  }

  async rewrite(old: BlockPointer, data: Buffer, props: BlockWriteProps): Promise<BlockPointer> {
    if (isHole(old)) return this.write(data, props);
    assert(old.birthTxg === props.birthTxg, `rewrite of a block born in txg ${old.birthTxg} during txg ${props.birthTxg}`);
    checkWriteProps(data, props);
    const prepared = this.prepare(data, props);
    if (this.fitsInPlace(old.dvas, props.copies, prepared)) {
      const dvas = old.dvas.map((dva) => ({ ...dva }));
      await this.writeCopies(dvas, prepared.payload);
      return this.blockPointer(dvas, data.length, prepared, props);
    }
    // Too big for its place: written anew. The old block stays allocated until whoever replaced the
    // pointer frees it (the object set does, once), as for any other replaced block.
    return this.write(data, props);
  }

  async read(bp: BlockPointer): Promise<Buffer> {
    if (isHole(bp)) return Buffer.alloc(bp.lsize);
    const good = await this.readVerified(bp);
    try {
      return decompressBlock(bp.compression as CompressionType, good, bp.lsize);
    } catch (e) {
      // The checksum matched, so the block was written this way (or has checksum=off): it is lost.
      throw this.permanentError(bp, false, e);
    }
  }

  /**
   * read(), into the caller's buffer of exactly bp.lsize bytes. A block stored as it is (not
   * compressed, no padding) goes straight from the device into it, where the vdevs can: no buffer of
   * its own, no copy.
   */
  async readInto(bp: BlockPointer, target: Buffer): Promise<void> {
    assert(target.length === bp.lsize, `read of a ${bp.lsize}-byte block into ${target.length} bytes`);
    if (isHole(bp)) {
      target.fill(0);
      return;
    }
    if (bp.compression !== CompressionType.off || bp.psize !== bp.lsize) {
      (await this.read(bp)).copy(target);
      return;
    }
    const good = await this.readVerified(bp, target);
    if (good !== target) good.copy(target);
  }

  /** The block's stored bytes (psize) from the first copy that verifies; the others are healed from it. */
  private async readVerified(bp: BlockPointer, into?: Buffer): Promise<Buffer> {
    checkReadable(bp);
    const verifier = (candidate: Buffer): boolean => this.verify(bp, candidate);
    const options = into === undefined ? undefined : { into };
    let good: Buffer | undefined;
    let repairedBytes = 0;
    let failedMask = 0;
    let sawChecksumError = false;
    let lastError: unknown;
    for (let i = 0; i < bp.dvas.length && good === undefined; i++) {
      const dva = bp.dvas[i]!;
      const vdev = this.vdevs(dva.vdev);
      if (vdev === undefined) {
        failedMask |= 1 << i;
        lastError = new CairnError('EIO', `DVA ${dvaKey(dva)} names no vdev`);
        continue;
      }
      try {
        const result = await vdev.read(dva.offset, bp.psize, verifier, options);
        good = result.data;
        repairedBytes += result.repairedBytes;
      } catch (e) {
        sawChecksumError = this.countReadFailure(e) || sawChecksumError;
        failedMask |= 1 << i;
        lastError = e;
      }
    }
    if (good === undefined) throw this.permanentError(bp, sawChecksumError, lastError);
    if (failedMask !== 0) repairedBytes += await this.healCopies(bp, failedMask, good);
    this.stats.repairedBytes += repairedBytes;
    this.stats.readOps++;
    this.stats.readBytes += bp.psize;
    return good;
  }

  async scrub(bp: BlockPointer): Promise<ScrubResult> {
    if (isHole(bp)) return { repairedBytes: 0, unrecoverable: false };
    checkReadable(bp);
    const verifier = (candidate: Buffer): boolean => this.verify(bp, candidate);
    let good: Buffer | undefined;
    let repairedBytes = 0;
    let failedMask = 0;
    let sawChecksumError = false;
    let lastError: unknown;
    for (let i = 0; i < bp.dvas.length; i++) {
      const dva = bp.dvas[i]!;
      const vdev = this.vdevs(dva.vdev);
      if (vdev === undefined) {
        failedMask |= 1 << i;
        continue;
      }
      try {
        const result = await vdev.read(dva.offset, bp.psize, verifier, { all: true });
        repairedBytes += result.repairedBytes;
        good ??= result.data;
      } catch (e) {
        sawChecksumError = this.countReadFailure(e) || sawChecksumError;
        failedMask |= 1 << i;
        lastError = e;
      }
    }
    this.stats.scrubbedBlocks++;
    this.stats.scrubbedBytes += bp.psize * bp.dvas.length;
    if (good === undefined) {
      this.stats.repairedBytes += repairedBytes;
      this.permanentError(bp, sawChecksumError, lastError);
      return { repairedBytes, unrecoverable: true };
    }
    if (failedMask !== 0) repairedBytes += await this.healCopies(bp, failedMask, good);
    this.stats.repairedBytes += repairedBytes;
    return { repairedBytes, unrecoverable: false };
  }

  /** Compresses when worth it, pads to the sector size and checksums. */
  private prepare(data: Buffer, props: BlockWriteProps): PreparedBlock {
    const sectorShift = this.currentSectorShift();
    const sectorBytes = 1 << sectorShift;
    const rawPsize = roundUp(data.length, sectorBytes);
    let compression: CompressionType = CompressionType.off;
    let body = data;
    // Only a whole sector saved counts, so a block of one sector is not even tried (a small file's
    // block: lz4 costs 12-17 µs for 4 KiB here, a sixth of such a file's sync).
    if (props.compression !== CompressionType.off && rawPsize > sectorBytes) {
      const compressed = compressBlock(props.compression, data, this.zstdLevel);
      // Saving less than a sector saves nothing on disk: store raw and skip decompression on reads.
      if (compressed !== null && roundUp(compressed.length, sectorBytes) < rawPsize) {
        compression = props.compression;
        body = compressed;
      }
    }
    const psize = roundUp(body.length, sectorBytes);
    let payload = body;
    if (psize !== body.length) {
      payload = Buffer.alloc(psize);
      body.copy(payload);
    }
    const cksum = computeChecksum(props.checksum, payload, Buffer.alloc(CHECKSUM_SIZE_BYTES));
    return { payload, compression, cksum, sectorShift };
  }

  private blockPointer(dvas: Dva[], lsize: number, prepared: PreparedBlock, props: BlockWriteProps): BlockPointer {
    return {
      dvas, lsize, psize: prepared.payload.length, compression: prepared.compression, checksum: props.checksum,
      type: props.type, level: props.level, fill: props.fill, birthTxg: props.birthTxg, cksum: prepared.cksum,
    };
  }

  private fitsInPlace(dvas: readonly Dva[], copies: number, prepared: PreparedBlock): boolean {
    if (dvas.length !== copies) return false;
    for (const dva of dvas) {
      const vdev = this.vdevs(dva.vdev);
      if (vdev === undefined || vdev.ashift > prepared.sectorShift) return false;
      if (vdev.allocatedSize(prepared.payload.length) > dva.asize) return false;
    }
    return true;
  }

  /** Writes every copy in parallel; any copy that fails entirely makes the block unwritten (EIO). */
  private async writeCopies(dvas: readonly Dva[], payload: Buffer): Promise<void> {
    const writes: Promise<void>[] = [];
    for (const dva of dvas) {
      const vdev = this.vdevs(dva.vdev);
      assert(vdev !== undefined, `allocator returned DVA ${dvaKey(dva)} on a missing vdev`);
      writes.push(vdev.write(dva.offset, payload));
    }
    const results = await Promise.allSettled(writes);
    let firstFailure: unknown;
    for (const result of results) {
      if (result.status === 'fulfilled') {
        this.stats.writeOps++;
        this.stats.writeBytes += payload.length;
      } else {
        if (result.reason instanceof InvariantError) throw result.reason;
        this.stats.ioErrors++;
        firstFailure ??= result.reason;
      }
    }
    if (firstFailure !== undefined) {
      throw new CairnError('EIO', `block write failed: ${errorMessage(firstFailure)}`, { dvas: dvas.map(dvaKey) });
    }
  }

  /** Writes good physical data over the copies in failedMask; returns bytes repaired. */
  private async healCopies(bp: BlockPointer, failedMask: number, good: Buffer): Promise<number> {
    let repairedBytes = 0;
    for (let i = 0; i < bp.dvas.length; i++) {
      if ((failedMask & (1 << i)) === 0) continue;
      const dva = bp.dvas[i]!;
      const vdev = this.vdevs(dva.vdev);
      if (vdev === undefined) continue;
      try {
        await vdev.write(dva.offset, good.length === bp.psize ? good : good.subarray(0, bp.psize));
        repairedBytes += bp.psize;
        this.stats.healedCopies++;
      } catch (e) {
        // The read already succeeded from another copy; a copy that cannot be rewritten is the vdev's
        // problem (its error counts and state), not the reader's.
        if (e instanceof InvariantError) throw e;
        this.stats.ioErrors++;
      }
    }
    return repairedBytes;
  }

  private verify(bp: BlockPointer, candidate: Buffer): boolean {
    if (bp.checksum === ChecksumType.off) return true;
    if (candidate.length < bp.psize) return false;
    const exact = candidate.length === bp.psize ? candidate : candidate.subarray(0, bp.psize);
    return checksumEquals(computeChecksum(bp.checksum as ChecksumType, exact, this.scratchCksum), bp.cksum);
  }

  /** Counts a failed DVA read; true when it was a checksum mismatch. Bugs are rethrown. */
  private countReadFailure(e: unknown): boolean {
    if (e instanceof InvariantError) throw e;
    if (isCairnError(e, 'ECKSUM')) {
      this.stats.checksumErrors++;
      return true;
    }
    this.stats.ioErrors++;
    return false;
  }

  /** Records a block no copy of which could be read and builds the error to throw. */
  private permanentError(bp: BlockPointer, checksumMismatch: boolean, cause: unknown): CairnError {
    const code = checksumMismatch ? 'ECKSUM' : 'EIO';
    this.stats.dataErrors++;
    const key = `${bp.dvas.length > 0 ? dvaKey(bp.dvas[0]!) : 'hole'}:${bp.birthTxg}`;
    const existing = this.errorsByBlock.get(key);
    if (existing !== undefined) {
      this.errorsByBlock.delete(key);
      existing.count++;
      existing.code = code;
      this.errorsByBlock.set(key, existing);
    } else {
      if (this.errorsByBlock.size >= DATA_ERRORS_MAX) {
        const oldest = this.errorsByBlock.keys().next();
        if (oldest.done !== true) this.errorsByBlock.delete(oldest.value);
      }
      this.errorsByBlock.set(key, { bp, code, count: 1 });
    }
    const what = checksumMismatch ? 'no copy matched its checksum' : 'no copy could be read';
    return new CairnError(code, `permanent error in block ${key}: ${what} (${errorMessage(cause)})`, {
      dvas: bp.dvas.map(dvaKey), birthTxg: bp.birthTxg,
    });
  }

  private currentSectorShift(): number {
    if (this.sectorShift === undefined) {
      let shift = SECTOR_SHIFT_MIN;
      for (let id = 0; id < VDEV_PROBE_MAX; id++) {
        const vdev = this.vdevs(id);
        if (vdev === undefined) break;
        shift = Math.max(shift, vdev.ashift);
      }
      this.sectorShift = shift;
    }
    return this.sectorShift;
  }

  private largestShiftOf(dvas: readonly Dva[]): number {
    let shift = SECTOR_SHIFT_MIN;
    for (const dva of dvas) {
      const vdev = this.vdevs(dva.vdev);
      assert(vdev !== undefined, `allocator returned DVA ${dvaKey(dva)} on a missing vdev`);
      shift = Math.max(shift, vdev.ashift);
    }
    return shift;
  }
}

function checkWriteProps(data: Buffer, props: BlockWriteProps): void {
  assert(data.length > 0 && data.length <= BLOCK_SIZE_MAX_BYTES, `block of ${data.length} bytes`);
  assert(Number.isInteger(props.copies) && props.copies >= 1 && props.copies <= DVA_COUNT_MAX, `copies ${props.copies}`);
  assert(CHECKSUM_TYPES.has(props.checksum), `checksum type ${props.checksum}`);
  assert(COMPRESSION_TYPES.has(props.compression), `compression type ${props.compression}`);
}

/** A block pointer read from disk is untrusted until its fields make sense. */
function checkReadable(bp: BlockPointer): void {
  const known = CHECKSUM_TYPES.has(bp.checksum) && COMPRESSION_TYPES.has(bp.compression)
    && bp.psize > 0 && bp.lsize > 0 && bp.dvas.length <= DVA_COUNT_MAX;
  if (!known) {
    throw new CairnError('EIO', `malformed block pointer (checksum ${bp.checksum}, compression ${bp.compression}, psize ${bp.psize})`);
  }
}

function roundUp(value: number, multiple: number): number {
  return Math.ceil(value / multiple) * multiple;
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

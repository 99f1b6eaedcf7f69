/**
 * RaidzVdev: single, double or triple parity over N children, laid out as OpenZFS's
 * vdev_raidz_map_alloc does.
 *
 * The address space is striped sector by sector: vdev sector b lives on child b % N at child sector
 * ⌊b / N⌋. A block of s data sectors at sector b becomes one "map" of columns starting at child b % N:
 * nparity parity columns, then data columns. With q = ⌊s / (N − nparity)⌋ and r the remainder, the first
 * r + nparity columns ("big columns") hold q + 1 sectors and the rest q; every column is consecutive
 * sectors on its child, so the block's sectors are exactly [b, b + total) of the address space. The
 * allocation is rounded up to a multiple of nparity + 1 sectors (vdev_raidz_asize), so the gaps the
 * allocator leaves can always hold a minimal block; the padding ("skip") sectors are never written.
 * Single-parity maps swap the parity and first data column every other MiB, so parity does not always
 * land on the same children.
 *
 * A normal read fetches the data columns only. When a column cannot be read, or the block fails its
 * checksum, the parity columns are read too and combinations of columns are assumed bad — known failures
 * first, then every subset of up to nparity of the others, fewest first — until a reconstruction
 * verifies (vdev_raidz_combrec). The columns that differ from the verified block are rewritten and
 * counted as checksum errors on their children. options.all (scrub) reads and checks parity as well.
 */
import { CairnError, isCairnError } from '../util/errors.js';
import { assert } from '../util/assert.js';
import type {
  BlockVerifier, ReadOptions, ReadResult, Vdev, VdevConfig, VdevErrorCounts, VdevKind, VdevState,
} from './types.js';
import { randomGuid } from './guid.js';
import { ACCEPT_ANY } from './leaf.js';
import { isReadable, rethrowBugs } from './mirror.js';
import { RAIDZ_CHILDREN_MAX, aligned, generateParity, reconstructData } from './raidz-math.js';

export const RAIDZ_PARITY_MAX = 3;
const PARITY_ROTATION_BYTES = 2 ** 20;

export interface RaidzColumn {
  /** Index of the child holding this column. */
  child: number;
  /** Byte offset in the child's address space. */
  childOffset: number;
  sizeBytes: number;
  /** Data columns: where their bytes sit in the block; parity columns: -1. */
  dataOffset: number;
}

export interface RaidzMap {
  nparity: number;
  /** Parity columns first, then data columns; only columns with bytes (no skip columns). */
  columns: RaidzColumn[];
  /** Size of every parity column: the first (largest) data column's size. */
  paritySizeBytes: number;
}

/** Bytes of address space a block of psize bytes takes (vdev_raidz_asize). */
export function raidzAllocatedSize(psize: number, ashift: number, childCount: number, nparity: number): number {
  const sector = 2 ** ashift;
  let sectors = Math.ceil(psize / sector);
  sectors += nparity * Math.ceil(sectors / (childCount - nparity));
  sectors = Math.ceil(sectors / (nparity + 1)) * (nparity + 1);
  return sectors * sector;
}

/** The column layout of a block of psize bytes at offset (vdev_raidz_map_alloc). */
export function raidzMap(offset: number, psize: number, ashift: number, childCount: number, nparity: number): RaidzMap {
  const sector = 2 ** ashift;
  assert(offset % sector === 0 && psize > 0 && psize % sector === 0, `raidz map of unaligned ${offset}+${psize}`);
  const b = offset / sector;
  const s = psize / sector;
  const first = b % childCount;
  const childSector = Math.floor(b / childCount);
  const dataColumns = childCount - nparity;
  const q = Math.floor(s / dataColumns);
  const r = s - q * dataColumns;
  const bigColumns = r === 0 ? 0 : r + nparity;
  const accessed = q === 0 ? bigColumns : childCount;
  const columns: RaidzColumn[] = [];
  let dataOffset = 0;
  for (let c = 0; c < accessed; c++) {
    let child = first + c;
    let at = childSector;
    if (child >= childCount) {
      child -= childCount;
      at += 1;
    }
    const sizeBytes = (c < bigColumns ? q + 1 : q) * sector;
    const isData = c >= nparity;
    columns.push({ child, childOffset: at * sector, sizeBytes, dataOffset: isData ? dataOffset : -1 });
    if (isData) dataOffset += sizeBytes;
  }
  assert(dataOffset === psize, 'raidz map lost data');
  const firstData = columns[nparity];
  assert(firstData !== undefined, 'raidz map without data');
  if (nparity === 1 && Math.floor(offset / PARITY_ROTATION_BYTES) % 2 === 1) {
    const parity = columns[0] as RaidzColumn;
    [parity.child, firstData.child] = [firstData.child, parity.child];
    [parity.childOffset, firstData.childOffset] = [firstData.childOffset, parity.childOffset];
  }
  for (let c = 0; c < nparity; c++) (columns[c] as RaidzColumn).sizeBytes = firstData.sizeBytes;
  return { nparity, columns, paritySizeBytes: firstData.sizeBytes };
}

export interface RaidzVdevOptions {
  guid?: string;
  id: number;
  ashift: number;
  nparity: number;
  /** Defaults to N × the smallest child's asize (rounded down to a sector). */
  asize?: number;
  children: Vdev[];
}

/** What one read of a block found, column by column. */
interface ColumnReads {
  /** Bytes read per column; null when not read, failed or its child is unusable. */
  bytes: (Buffer | null)[];
  /** True where the column's read was attempted (or its child is unusable) and produced nothing. */
  failed: boolean[];
}

export class RaidzVdev implements Vdev {
  readonly kind: VdevKind = 'raidz';
  readonly guid: string;
  id: number;
  readonly ashift: number;
  readonly asize: number;
  readonly nparity: number;
  readonly errors: VdevErrorCounts = { read: 0, write: 0, checksum: 0 };
  private readonly kids: Vdev[];

  constructor(options: RaidzVdevOptions) {
    const n = options.children.length;
    assert(options.nparity >= 1 && options.nparity <= RAIDZ_PARITY_MAX, `bad nparity ${options.nparity}`);
    assert(n >= options.nparity + 1 && n <= RAIDZ_CHILDREN_MAX, `raidz${options.nparity} with ${n} children`);
    const sector = 2 ** options.ashift;
    const childSizeBytes = Math.floor(Math.min(...options.children.map((c) => c.asize)) / sector) * sector;
    this.guid = options.guid ?? randomGuid();
    this.id = options.id;
    this.ashift = options.ashift;
    this.nparity = options.nparity;
    this.asize = options.asize ?? n * childSizeBytes;
    assert(this.asize <= n * childSizeBytes && this.asize % sector === 0, `raidz asize ${this.asize} exceeds its children`);
    this.kids = [...options.children];
    this.kids.forEach((c, i) => {
      (c as Vdev & { id: number }).id = i;
    });
  }

  get children(): readonly Vdev[] {
    return this.kids;
  }

  get state(): VdevState {
    const unreadable = this.kids.filter((c) => !isReadable(c)).length;
    if (unreadable > this.nparity) return 'FAULTED';
    return unreadable === 0 && this.kids.every((c) => c.state === 'ONLINE') ? 'ONLINE' : 'DEGRADED';
  }

  allocatedSize(psize: number): number {
    assert(psize > 0 && psize % 2 ** this.ashift === 0, `psize ${psize} not a sector multiple`);
    return raidzAllocatedSize(psize, this.ashift, this.kids.length, this.nparity);
  }

  /** The column layout of a block (for tests and tools that inspect children directly). */
  map(offset: number, psize: number): RaidzMap {
    return raidzMap(offset, psize, this.ashift, this.kids.length, this.nparity);
  }

  async write(offset: number, data: Buffer): Promise<void> {
    this.checkRange(offset, data.length);
    if (this.state === 'FAULTED') {
      this.errors.write++;
      throw new CairnError('EIO', `raidz ${this.guid}: faulted, more than ${this.nparity} children out`);
    }
    const map = this.map(offset, data.length);
    const block = aligned(data);
    const dataColumns = map.columns.slice(map.nparity).map((c) => block.subarray(c.dataOffset, c.dataOffset + c.sizeBytes));
    const parity = map.columns.slice(0, map.nparity).map(() => Buffer.alloc(map.paritySizeBytes));
    generateParity(dataColumns, parity);
    const writes: Promise<void>[] = [];
    let skipped = 0;
    map.columns.forEach((column, c) => {
      const child = this.kids[column.child] as Vdev;
      if (!isReadable(child)) {
        skipped++;
        return;
      }
      writes.push(child.write(column.childOffset, c < map.nparity ? (parity[c] as Buffer) : (dataColumns[c - map.nparity] as Buffer)));
    });
    const results = await Promise.allSettled(writes);
    rethrowBugs(results);
    const lost = skipped + results.filter((r) => r.status === 'rejected').length;
    if (lost > this.nparity) {
      this.errors.write++;
      throw new CairnError('EIO', `raidz ${this.guid}: ${lost} columns of ${offset}+${data.length} not written (parity ${this.nparity})`);
    }
  }

  async read(offset: number, size: number, verify: BlockVerifier, options?: ReadOptions): Promise<ReadResult> {
    this.checkRange(offset, size);
    const map = this.map(offset, size);
    const scrub = options?.all === true;
    const reads: ColumnReads = { bytes: map.columns.map(() => null), failed: map.columns.map(() => false) };
    await this.readColumns(map, reads, scrub ? 0 : map.nparity);
    const dataMissing = reads.failed.some((f, c) => f && c >= map.nparity);
    const block = Buffer.alloc(size);
    if (!dataMissing) {
      assembleRead(map, reads, block);
      if (verify(block)) {
        const repairedBytes = scrub ? await this.heal(map, reads, block) : 0;
        return { data: block, repairedBytes };
      }
    }
    await this.readColumns(map, reads, 0);
    if (!this.combinatorialReconstruct(map, reads, block, verify)) {
      const anyData = reads.bytes.some((b) => b !== null);
      const failedCount = reads.failed.filter(Boolean).length;
      if (anyData && failedCount <= this.nparity) {
        this.errors.checksum++;
        throw new CairnError('ECKSUM', `raidz ${this.guid}: no arrangement of ${offset}+${size} verifies`, { offset, size });
      }
      this.errors.read++;
      throw new CairnError('EIO', `raidz ${this.guid}: ${failedCount} columns of ${offset}+${size} unreadable (parity ${this.nparity})`, { offset, size });
    }
    return { data: block, repairedBytes: await this.heal(map, reads, block) };
  }

  async flush(): Promise<void> {
    const results = await Promise.allSettled(this.kids.filter(isReadable).map((c) => c.flush()));
    rethrowBugs(results);
    const lost = this.kids.filter((c) => !isReadable(c)).length + results.filter((r) => r.status === 'rejected').length;
    if (lost > this.nparity) throw new CairnError('EIO', `raidz ${this.guid}: flush failed on ${lost} children`);
  }

  async close(): Promise<void> {
    await Promise.all(this.kids.map((c) => c.close()));
  }

  config(): VdevConfig {
    return {
      type: 'raidz', guid: this.guid, id: this.id, ashift: this.ashift, asize: this.asize, nparity: this.nparity,
      children: this.kids.map((c) => c.config()),
    };
  }

  /** Reads every column from firstColumn on that has not been read or failed yet, in parallel. */
  private async readColumns(map: RaidzMap, reads: ColumnReads, firstColumn: number): Promise<void> {
    const pending: Promise<void>[] = [];
    for (let c = firstColumn; c < map.columns.length; c++) {
      if (reads.bytes[c] !== null || reads.failed[c] === true) continue;
      const column = map.columns[c] as RaidzColumn;
      const child = this.kids[column.child] as Vdev;
      if (!isReadable(child)) {
        reads.failed[c] = true;
        continue;
      }
      pending.push(child.read(column.childOffset, column.sizeBytes, ACCEPT_ANY).then(
        (result) => {
          reads.bytes[c] = aligned(result.data);
        },
        (e: unknown) => {
          if (!isCairnError(e)) throw e;
          reads.failed[c] = true;
        },
      ));
    }
    await Promise.all(pending);
  }

  /**
   * Tries arrangements until one verifies, leaving the block in `block`. Columns that failed to read are
   * always treated as missing; on top of them every subset of up to nparity − failures other columns is
   * assumed bad, smallest subsets first. Returns false when nothing verifies.
   */
  private combinatorialReconstruct(map: RaidzMap, reads: ColumnReads, block: Buffer, verify: BlockVerifier): boolean {
    const np = map.nparity;
    const known: number[] = [];
    const candidates: number[] = [];
    reads.failed.forEach((f, c) => (f ? known : candidates).push(c));
    if (known.length > np) return false;
    const dataCount = map.columns.length - np;
    const dataColumns = map.columns.slice(np).map((c) => Buffer.alloc(c.sizeBytes));
    const parity: (Buffer | null)[] = [];
    for (let p = 0; p < np; p++) parity.push(reads.bytes[p] ?? null);
    const tried = new Set<string>();
    for (let extra = 0; extra <= np - known.length; extra++) {
      for (const assumed of combinations(candidates, extra)) {
        const bad = [...known, ...assumed];
        const missing = bad.filter((c) => c >= np).map((c) => c - np).sort((x, y) => x - y);
        // Only parity assumed bad: the data is what was read, and it already failed to verify.
        if (missing.length === 0) continue;
        const usable: number[] = [];
        for (let p = 0; p < np; p++) if (!bad.includes(p) && parity[p] !== null) usable.push(p);
        if (usable.length < missing.length) continue;
        const use = usable.slice(0, missing.length);
        const key = `${missing.join(',')}/${use.join(',')}`;
        if (tried.has(key)) continue;
        tried.add(key);
        for (let j = 0; j < dataCount; j++) {
          const read = reads.bytes[j + np];
          if (!missing.includes(j) && read !== null && read !== undefined) read.copy(dataColumns[j] as Buffer);
        }
        reconstructData(dataColumns, missing, parity, use);
        for (let j = 0; j < dataCount; j++) {
          (dataColumns[j] as Buffer).copy(block, (map.columns[j + np] as RaidzColumn).dataOffset);
        }
        if (verify(block)) return true;
      }
    }
    return false;
  }

  /**
   * With the verified block in hand, rewrites every column that failed or was read and differs from what
   * it should hold; a column that differs counts a checksum error on its child. Returns bytes repaired.
   */
  private async heal(map: RaidzMap, reads: ColumnReads, block: Buffer): Promise<number> {
    const np = map.nparity;
    const dataColumns = map.columns.slice(np).map((c) => block.subarray(c.dataOffset, c.dataOffset + c.sizeBytes));
    const readAnyParity = reads.bytes.slice(0, np).some((b) => b !== null) || reads.failed.slice(0, np).some(Boolean);
    const parity = readAnyParity ? map.columns.slice(0, np).map(() => Buffer.alloc(map.paritySizeBytes)) : [];
    if (readAnyParity) generateParity(dataColumns, parity);
    const repairs: { child: Vdev; offset: number; data: Buffer }[] = [];
    map.columns.forEach((column, c) => {
      const child = this.kids[column.child] as Vdev;
      const expected = c < np ? parity[c] : dataColumns[c - np];
      if (expected === undefined || !isReadable(child)) return;
      const got = reads.bytes[c] ?? null;
      if (got === null && reads.failed[c] !== true) return;
      if (got !== null && got.equals(expected)) return;
      if (got !== null) child.errors.checksum++;
      repairs.push({ child, offset: column.childOffset, data: expected });
    });
    if (repairs.length === 0) return 0;
    const results = await Promise.allSettled(repairs.map((r) => r.child.write(r.offset, r.data)));
    rethrowBugs(results);
    let repairedBytes = 0;
    results.forEach((r, i) => {
      if (r.status === 'fulfilled') repairedBytes += repairs[i]?.data.length ?? 0;
    });
    return repairedBytes;
  }

  private checkRange(offset: number, size: number): void {
    const sector = 2 ** this.ashift;
    assert(offset >= 0 && offset % sector === 0 && size > 0 && size % sector === 0, `bad raidz I/O ${offset}+${size}`);
    assert(offset + this.allocatedSize(size) <= this.asize, `raidz I/O ${offset}+${size} beyond asize ${this.asize}`);
  }
}

function assembleRead(map: RaidzMap, reads: ColumnReads, block: Buffer): void {
  for (let c = map.nparity; c < map.columns.length; c++) {
    const bytes = reads.bytes[c];
    assert(bytes !== null && bytes !== undefined, 'assembling a block with a missing column');
    bytes.copy(block, (map.columns[c] as RaidzColumn).dataOffset);
  }
}

/** Every k-subset of items, in lexicographic order of positions. */
function* combinations(items: readonly number[], k: number): Generator<number[]> {
  if (k === 0) {
    yield [];
    return;
  }
  if (k > items.length) return;
  const picks = Array.from({ length: k }, (_, i) => i);
  while (true) {
    yield picks.map((i) => items[i] as number);
    let i = k - 1;
    while (i >= 0 && picks[i] === items.length - k + i) i--;
    if (i < 0) return;
    picks[i] = (picks[i] as number) + 1;
    for (let j = i + 1; j < k; j++) picks[j] = (picks[j - 1] as number) + 1;
  }
}

/**
 * FaultyDevice: an in-memory disk for the seeded simulation, with the faults real disks have.
 *
 * Storage is a sparse map of 4 KiB pages (absent pages read as zeros) in two layers: `durable` (what
 * survives a power cut) and `volatile` (copy-on-write pages written since the last flush, what reads
 * see first). Every unflushed write is also logged, so powerCut() can decide per write — from the seeded
 * PRNG — whether it landed whole, landed torn (only a prefix of its 512-byte sectors) or never landed.
 * flush() moves the volatile pages into the durable layer. close() keeps the data (as a disk keeps it
 * when a pool is exported) so a simulation can reopen the same device.
 *
 * Every fault draws from the device's own Random, and operations are synchronous underneath their
 * promises, so the same seed and the same sequence of calls give the same faults.
 */
import { CairnError } from '../util/errors.js';
import { assert } from '../util/assert.js';
import type { BlockDevice } from '../vdev/types.js';
import { Random } from './random.js';

const PAGE_SIZE_BYTES = 4096;
const TORN_SECTOR_BYTES = 512;

export interface FaultKnobs {
  /** Per read: flip one random bit of the returned data (the stored data is untouched). */
  readBitFlipProbability: number;
  /** Per write: store it with one random byte changed, and report success. */
  writeCorruptionProbability: number;
  /** Per read: throw EIO. */
  readErrorProbability: number;
  /** Per write: throw EIO; nothing is stored. */
  writeErrorProbability: number;
  /** On powerCut(), per unflushed write: probability it is lost entirely. */
  powerCutDropProbability: number;
  /** On powerCut(), per unflushed write that was not dropped: probability only a sector prefix lands. */
  powerCutTearProbability: number;
}

export const NO_FAULTS: FaultKnobs = {
  readBitFlipProbability: 0,
  writeCorruptionProbability: 0,
  readErrorProbability: 0,
  writeErrorProbability: 0,
  powerCutDropProbability: 0.4,
  powerCutTearProbability: 0.4,
};

export interface InjectedFaultCounts {
  readBitFlips: number;
  writeCorruptions: number;
  readErrors: number;
  writeErrors: number;
  /** Operations refused because the device died. */
  deadOps: number;
  droppedWrites: number;
  tornWrites: number;
  powerCuts: number;
  /** Bytes changed by corrupt(). */
  corruptedBytes: number;
}

export interface FaultyDeviceOptions {
  sizeBytes: number;
  seed: number;
  path?: string;
  faults?: Partial<FaultKnobs>;
}

interface PendingWrite {
  offset: number;
  data: Buffer;
}

export class FaultyDevice implements BlockDevice {
  readonly path: string;
  readonly sizeBytes: number;
  readonly random: Random;
  /** Mutable at any time: the simulation turns faults up and down as it runs. */
  readonly faults: FaultKnobs;
  readonly injected: InjectedFaultCounts = {
    readBitFlips: 0, writeCorruptions: 0, readErrors: 0, writeErrors: 0, deadOps: 0,
    droppedWrites: 0, tornWrites: 0, powerCuts: 0, corruptedBytes: 0,
  };
  private durable = new Map<number, Buffer>();
  private volatile = new Map<number, Buffer>();
  private pending: PendingWrite[] = [];
  private dead = false;

  constructor(options: FaultyDeviceOptions) {
    assert(options.sizeBytes > 0 && Number.isSafeInteger(options.sizeBytes), 'bad device size');
    this.sizeBytes = options.sizeBytes;
    this.path = options.path ?? `faulty:${options.seed >>> 0}`;
    this.random = new Random(options.seed);
    this.faults = { ...NO_FAULTS, ...options.faults };
  }

  get isDead(): boolean {
    return this.dead;
  }

  /** Unflushed writes still at risk from a power cut. */
  get pendingWriteCount(): number {
    return this.pending.length;
  }

  /** From now on every operation throws EIO (the disk fell off the bus). */
  die(): void {
    this.dead = true;
  }

  /** Undoes die(): the disk is back with whatever it held. */
  revive(): void {
    this.dead = false;
  }

  async read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    this.checkRange(offset, length);
    this.checkAlive('read');
    if (this.random.chance(this.faults.readErrorProbability)) {
      this.injected.readErrors++;
      throw new CairnError('EIO', `${this.path}: injected read error at ${offset}`);
    }
    const out = this.readCurrent(offset, length);
    if (this.random.chance(this.faults.readBitFlipProbability)) {
      this.injected.readBitFlips++;
      const bit = this.random.int(length * 8);
      out[bit >>> 3] = (out[bit >>> 3] ?? 0) ^ (1 << (bit & 7));
    }
    if (into === undefined) return out;
    out.copy(into);
    return into;
  }

  async write(offset: number, data: Buffer): Promise<void> {
    this.checkRange(offset, data.length);
    this.checkAlive('write');
    if (this.random.chance(this.faults.writeErrorProbability)) {
      this.injected.writeErrors++;
      throw new CairnError('EIO', `${this.path}: injected write error at ${offset}`);
    }
    const stored = Buffer.from(data);
    if (data.length > 0 && this.random.chance(this.faults.writeCorruptionProbability)) {
      this.injected.writeCorruptions++;
      const at = this.random.int(stored.length);
      stored[at] = (stored[at] ?? 0) ^ (1 + this.random.int(255));
    }
    this.pending.push({ offset, data: stored });
    this.applyTo(this.volatile, offset, stored, true);
  }

  async flush(): Promise<void> {
    this.checkAlive('flush');
    for (const [index, page] of this.volatile) this.durable.set(index, page);
    this.volatile.clear();
    this.pending = [];
  }

  async close(): Promise<void> {
    // Data stays, as on a real disk; unflushed writes stay volatile until flush() or powerCut().
  }

  /**
   * Power fails: every flushed byte survives; each unflushed write, in issue order, is dropped, torn
   * (a prefix of its 512-byte sectors lands) or lands whole, as the seed decides.
   */
  powerCut(): void {
    this.injected.powerCuts++;
    this.volatile.clear();
    for (const write of this.pending) {
      if (this.random.chance(this.faults.powerCutDropProbability)) {
        this.injected.droppedWrites++;
        continue;
      }
      let landed = write.data;
      const sectors = Math.ceil(write.data.length / TORN_SECTOR_BYTES);
      if (sectors > 1 && this.random.chance(this.faults.powerCutTearProbability)) {
        this.injected.tornWrites++;
        landed = write.data.subarray(0, this.random.range(1, sectors - 1) * TORN_SECTOR_BYTES);
      }
      this.applyTo(this.durable, write.offset, landed, false);
    }
    this.pending = [];
  }

  /** Changes every byte in [offset, offset + length) behind the pool's back, flushed or not. */
  corrupt(offset: number, length: number): void {
    this.checkRange(offset, length);
    const garbage = this.readCurrent(offset, length);
    for (let i = 0; i < garbage.length; i++) garbage[i] = (garbage[i] ?? 0) ^ (1 + this.random.int(255));
    this.injected.corruptedBytes += length;
    // Both layers, so the damage is there whether or not a later power cut drops the volatile copy.
    this.applyTo(this.durable, offset, garbage, false);
    if (this.hasVolatileIn(offset, length)) this.applyTo(this.volatile, offset, garbage, true);
  }

  private checkRange(offset: number, length: number): void {
    assert(Number.isSafeInteger(offset) && offset >= 0 && length >= 0, `bad range ${offset}+${length}`);
    assert(offset + length <= this.sizeBytes, `${this.path}: range ${offset}+${length} beyond ${this.sizeBytes}`);
  }

  private checkAlive(op: string): void {
    if (this.dead) {
      this.injected.deadOps++;
      throw new CairnError('EIO', `${this.path}: device is dead (${op})`);
    }
  }

  private hasVolatileIn(offset: number, length: number): boolean {
    const last = Math.floor((offset + length - 1) / PAGE_SIZE_BYTES);
    for (let index = Math.floor(offset / PAGE_SIZE_BYTES); index <= last; index++) {
      if (this.volatile.has(index)) return true;
    }
    return false;
  }

  private readCurrent(offset: number, length: number): Buffer {
    const out = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const at = offset + done;
      const index = Math.floor(at / PAGE_SIZE_BYTES);
      const inPage = at - index * PAGE_SIZE_BYTES;
      const chunk = Math.min(PAGE_SIZE_BYTES - inPage, length - done);
      const page = this.volatile.get(index) ?? this.durable.get(index);
      if (page !== undefined) page.copy(out, done, inPage, inPage + chunk);
      done += chunk;
    }
    return out;
  }

  /** Writes data into a page layer; the volatile layer copies a page from durable before changing it. */
  private applyTo(layer: Map<number, Buffer>, offset: number, data: Buffer, copyOnWrite: boolean): void {
    let done = 0;
    while (done < data.length) {
      const at = offset + done;
      const index = Math.floor(at / PAGE_SIZE_BYTES);
      const inPage = at - index * PAGE_SIZE_BYTES;
      const chunk = Math.min(PAGE_SIZE_BYTES - inPage, data.length - done);
      let page = layer.get(index);
      if (page === undefined) {
        const base = copyOnWrite ? this.durable.get(index) : undefined;
        page = base === undefined ? Buffer.alloc(PAGE_SIZE_BYTES) : Buffer.from(base);
        layer.set(index, page);
      }
      data.copy(page, inPage, done, done + chunk);
      done += chunk;
    }
  }
}

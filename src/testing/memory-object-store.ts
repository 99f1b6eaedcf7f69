/**
 * MemoryObjectStore: an in-memory test double of the object layer contract (src/objects/types.ts), so the
 * kv and fs layers can be tested before, and independently of, the real object layer.
 *
 * Semantics kept exactly as the contract states them:
 * - an object is a sparse map of fixed-size blocks; bytes never written (holes, past the end) read as 0;
 * - freeRange frees whole blocks in the range and zeroes the partial ones at its edges;
 * - object ids start at 1 and increase (0 is reserved, as the meta-dnode is in OpenZFS); freed ids are
 *   not reused, so a stale id is always an ENOENT here rather than a silent alias;
 * - objectInfo.maxOffsetBytes is the end of the highest block ever written (an upper bound on contents),
 *   usedBytes counts allocated blocks times the block size (no compression here);
 * - every mutating call must run inside hold(); a mutation outside one is a bug in the caller and fails
 *   an assertion (checked with AsyncLocalStorage, so a concurrent caller outside the hold is caught too);
 * - hold() runs holds one at a time under an async mutex; a hold started from inside a running hold runs
 *   inline as part of it (re-entrant), where the pool's txg gate would fail it under the test suite
 *   (holds do not nest there: pool/txg-gate.ts), so code meant for a pool is tested on a pool too.
 *
 * Buffers are copied in and out so callers can never alias stored state (with TypedArray.set, which is
 * several times faster than Buffer.copy for block-sized copies on Node 20), except readShared's, which
 * are views of the stored block as the object set's are (writes and modify change them in place). Counters (readCalls,
 * readBytes, writeCalls, writeBytes) let tests bound the I/O a higher layer does per operation.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import {
  BONUS_SIZE_MAX_BYTES,
  ObjectType,
  type AllocateObjectOptions,
  type ObjectInfo,
  type ObjectStore,
} from '../objects/types.js';
import { CairnError } from '../util/errors.js';
import { assert } from '../util/assert.js';

const BLOCK_SIZE_MIN_BYTES = 512;
const BLOCK_SIZE_MAX_BYTES = 1024 * 1024;
const BLOCK_SIZE_DEFAULT_BYTES = 128 * 1024;
const READ_SLAB_BYTES = 64 * 1024;

class MemoryObject {
  readonly blocks = new Map<number, Buffer>();
  bonus: Buffer = Buffer.alloc(0);
  /** Index of the highest block ever written, -1 when none. */
  highestBlockIndex = -1;

  constructor(
    readonly type: ObjectType,
    readonly blockSizeBytes: number,
    readonly bonusType: number,
  ) {}
}

export interface MemoryObjectStoreOptions {
  /** Fail an assertion when a mutating call runs outside hold(). Default true. */
  requireHold?: boolean;
}

export class MemoryObjectStore implements ObjectStore {
  private readonly objects = new Map<number, MemoryObject>();
  private nextObjectId = 1;
  private readonly requireHold: boolean;
  private readonly holdContext = new AsyncLocalStorage<true>();
  /** Tail of the hold queue: each hold waits for the previous one to settle. */
  private holdTail: Promise<void> = Promise.resolve();

  readCalls = 0;
  readBytes = 0;
  writeCalls = 0;
  writeBytes = 0;
  holdCount = 0;
  private readSlab = Buffer.allocUnsafe(0);
  private readSlabOffset = READ_SLAB_BYTES;

  constructor(options: MemoryObjectStoreOptions = {}) {
    this.requireHold = options.requireHold ?? true;
  }

  async hold<T>(fn: () => Promise<T>): Promise<T> {
    if (this.holdContext.getStore() === true) return fn();
    const previous = this.holdTail;
    let release!: () => void;
    this.holdTail = new Promise<void>((resolve) => {
      release = resolve;
    });
    await previous;
    this.holdCount++;
    try {
      return await this.holdContext.run(true, fn);
    } finally {
      release();
    }
  }

  /** Whether the caller is running inside a hold(). */
  inHold(): boolean {
    return this.holdContext.getStore() === true;
  }

  resetCounters(): void {
    this.readCalls = 0;
    this.readBytes = 0;
    this.writeCalls = 0;
    this.writeBytes = 0;
  }

  /** Number of live objects (for leak checks in tests). */
  objectCount(): number {
    return this.objects.size;
  }

  async allocateObject(type: ObjectType, options: AllocateObjectOptions = {}): Promise<number> {
    this.checkHold('allocateObject');
    const blockSizeBytes = options.blockSizeBytes ?? BLOCK_SIZE_DEFAULT_BYTES;
    if (
      !Number.isInteger(blockSizeBytes) ||
      blockSizeBytes < BLOCK_SIZE_MIN_BYTES ||
      blockSizeBytes > BLOCK_SIZE_MAX_BYTES ||
      (blockSizeBytes & (blockSizeBytes - 1)) !== 0
    ) {
      throw new CairnError('EINVAL', `block size ${blockSizeBytes} is not a power of two from 512 to 1 MiB`);
    }
    const id = this.nextObjectId++;
    this.objects.set(id, new MemoryObject(type, blockSizeBytes, options.bonusType ?? 0));
    return id;
  }

  async freeObject(id: number): Promise<void> {
    this.checkHold('freeObject');
    this.object(id);
    this.objects.delete(id);
  }

  async objectInfo(id: number): Promise<ObjectInfo> {
    const object = this.object(id);
    return {
      type: object.type,
      blockSizeBytes: object.blockSizeBytes,
      maxOffsetBytes: (object.highestBlockIndex + 1) * object.blockSizeBytes,
      usedBytes: object.blocks.size * object.blockSizeBytes,
      bonusType: object.bonusType,
      bonusLengthBytes: object.bonus.length,
    };
  }

  async readInto(id: number, offset: number, target: Buffer): Promise<void> {
    (await this.read(id, offset, target.length)).copy(target);
  }

  async read(id: number, offset: number, length: number): Promise<Buffer> {
    checkRange(offset, length);
    const object = this.object(id);
    this.readCalls++;
    this.readBytes += length;
    // Every byte of out is written below (copied or zeroed), so skip allocation-time zeroing.
    const out = this.allocateReadBuffer(length);
    const blockSizeBytes = object.blockSizeBytes;
    let done = 0;
    while (done < length) {
      const position = offset + done;
      const blockIndex = Math.floor(position / blockSizeBytes);
      const inBlock = position - blockIndex * blockSizeBytes;
      const chunk = Math.min(blockSizeBytes - inBlock, length - done);
      const block = object.blocks.get(blockIndex);
      if (block !== undefined) out.set(block.subarray(inBlock, inBlock + chunk), done);
      else out.fill(0, done, done + chunk);
      done += chunk;
    }
    return out;
  }

  /** As the object set does: the stored block itself when the range lies in one written block. */
  async readShared(id: number, offset: number, length: number): Promise<Buffer> {
    checkRange(offset, length);
    const object = this.object(id);
    const blockIndex = Math.floor(offset / object.blockSizeBytes);
    const inBlock = offset - blockIndex * object.blockSizeBytes;
    const block = object.blocks.get(blockIndex);
    if (block === undefined || inBlock + length > object.blockSizeBytes) return this.read(id, offset, length);
    this.readCalls++;
    this.readBytes += length;
    return block.subarray(inBlock, inBlock + length);
  }

  async write(id: number, offset: number, data: Buffer): Promise<void> {
    this.checkHold('write');
    checkRange(offset, data.length);
    const object = this.object(id);
    this.writeCalls++;
    this.writeBytes += data.length;
    const blockSizeBytes = object.blockSizeBytes;
    let done = 0;
    while (done < data.length) {
      const position = offset + done;
      const blockIndex = Math.floor(position / blockSizeBytes);
      const inBlock = position - blockIndex * blockSizeBytes;
      const chunk = Math.min(blockSizeBytes - inBlock, data.length - done);
      writableBlock(object, blockIndex).set(data.subarray(done, done + chunk), inBlock);
      done += chunk;
    }
  }

  async modify(id: number, offset: number, length: number, edit: (range: Buffer) => void): Promise<void> {
    this.checkHold('modify');
    checkRange(offset, length);
    const object = this.object(id);
    const blockSizeBytes = object.blockSizeBytes;
    const blockIndex = Math.floor(offset / blockSizeBytes);
    const inBlock = offset - blockIndex * blockSizeBytes;
    assert(length > 0 && inBlock + length <= blockSizeBytes, `modify of ${length} bytes at ${offset} crosses a block`);
    this.writeCalls++;
    this.writeBytes += length;
    edit(writableBlock(object, blockIndex).subarray(inBlock, inBlock + length));
  }

  async freeRange(id: number, offset: number, length: number): Promise<void> {
    this.checkHold('freeRange');
    checkRange(offset, length);
    const object = this.object(id);
    const blockSizeBytes = object.blockSizeBytes;
    const end = offset + length;
    const firstBlock = Math.floor(offset / blockSizeBytes);
    const lastBlock = Math.floor((end - 1) / blockSizeBytes);
    if (length === 0) return;
    // Walk the smaller of the range and the stored blocks, so freeing a huge range is cheap.
    const blockIndexes =
      lastBlock - firstBlock + 1 > object.blocks.size
        ? [...object.blocks.keys()].filter((index) => index >= firstBlock && index <= lastBlock)
        : rangeIndexes(firstBlock, lastBlock);
    for (const blockIndex of blockIndexes) {
      const block = object.blocks.get(blockIndex);
      if (block === undefined) continue;
      const blockStart = blockIndex * blockSizeBytes;
      const zeroFrom = Math.max(offset, blockStart) - blockStart;
      const zeroTo = Math.min(end, blockStart + blockSizeBytes) - blockStart;
      if (zeroFrom === 0 && zeroTo === blockSizeBytes) object.blocks.delete(blockIndex);
      else block.fill(0, zeroFrom, zeroTo);
    }
  }

  async getBonus(id: number): Promise<Buffer> {
    return Buffer.from(this.object(id).bonus);
  }

  async setBonus(id: number, bonus: Buffer): Promise<void> {
    this.checkHold('setBonus');
    const object = this.object(id);
    if (bonus.length > BONUS_SIZE_MAX_BYTES) {
      throw new CairnError('EINVAL', `bonus of ${bonus.length} bytes exceeds ${BONUS_SIZE_MAX_BYTES}`);
    }
    object.bonus = Buffer.from(bonus);
  }

  /**
   * Carves read buffers out of shared slabs, as Node's own Buffer pool does for small buffers: a fresh
   * 16 KiB ArrayBuffer per read costs more than the rest of a kv lookup. A slab stays alive while any
   * buffer cut from it does, which is fine for a test double.
   */
  private allocateReadBuffer(length: number): Buffer {
    if (length > READ_SLAB_BYTES / 4) return Buffer.allocUnsafe(length);
    if (this.readSlabOffset + length > READ_SLAB_BYTES) {
      this.readSlab = Buffer.allocUnsafe(READ_SLAB_BYTES);
      this.readSlabOffset = 0;
    }
    const out = this.readSlab.subarray(this.readSlabOffset, this.readSlabOffset + length);
    // Keep slices 8-byte aligned so typed-array views over them stay possible.
    this.readSlabOffset += (length + 7) & ~7;
    return out;
  }

  private object(id: number): MemoryObject {
    const object = this.objects.get(id);
    if (object === undefined) throw new CairnError('ENOENT', `no object ${id}`, { objectId: id });
    return object;
  }

  private checkHold(operation: string): void {
    if (this.requireHold) assert(this.inHold(), `${operation} called outside hold()`);
  }
}

/** The stored block at blockIndex, made (zeroed) when it was never written. */
function writableBlock(object: MemoryObject, blockIndex: number): Buffer {
  let block = object.blocks.get(blockIndex);
  if (block === undefined) {
    block = Buffer.alloc(object.blockSizeBytes);
    object.blocks.set(blockIndex, block);
  }
  if (blockIndex > object.highestBlockIndex) object.highestBlockIndex = blockIndex;
  return block;
}

function checkRange(offset: number, length: number): void {
  assert(Number.isSafeInteger(offset) && offset >= 0, `bad offset ${offset}`);
  assert(Number.isSafeInteger(length) && length >= 0, `bad length ${length}`);
}

function rangeIndexes(first: number, last: number): number[] {
  const out: number[] = [];
  for (let index = first; index <= last; index++) out.push(index);
  return out;
}

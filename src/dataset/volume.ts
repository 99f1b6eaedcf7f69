/**
 * Volume (OpenZFS zvol): a dataset whose contents are one fixed-size array of bytes, exported as a block
 * device (NBD). The object set holds exactly two objects:
 *
 *   object 1  kv map "volume props": version, volsize, volblocksize (u64 little-endian values)
 *   object 2  the data object (ObjectType.volume), block size = volblocksize; byte i of the device is
 *             byte i of this object, and a hole reads as zeros
 *
 * Why it is thin: nothing is allocated until written, and trim / write-zeroes free whole volblocks, so
 * space comes back to the pool as a guest discards. Preallocation would buy nothing anyway: under
 * copy-on-write every overwrite allocates a new block, so a "reserved" block guarantees no later write
 * (OpenZFS likewise turns zero writes into holes when compression is on).
 *
 * Invariants:
 * - Bytes in [0, volsize) read as the last data written there, or zeros if never written, trimmed or
 *   zeroed. Nothing at or beyond volsize is ever readable; a shrink frees the blocks beyond the new size,
 *   and a grow frees [old size, new size) again before the new size is published, so a shrink cut short
 *   by a crash can never leak old data into a later grow.
 * - Memory is bounded by the request: a large write or free reaches the store one chunk per hold (at most
 *   WRITE_CHUNK_BYTES_MAX bytes, or FREE_CHUNK_BLOCKS_MAX blocks), so the pool's write throttle can sync
 *   between chunks and one request never pins a whole txg. A large request is therefore not atomic, as
 *   it is not on a disk either; each chunk is.
 * - Mutations run one at a time (a FIFO mutex): the object layer's read-modify-write of a partial block
 *   spans awaits, so two unaligned writes into one block must not interleave. Reads take no lock.
 * - Durability comes from the pool: a write is in the open txg when it resolves. flush() runs the onFlush
 *   hook given at open/create (the pool's sync), and only that makes earlier writes durable.
 */
import { createKv, openKv, type KvMap } from '../kv/index.js';
import { ObjectType, type ObjectStore } from '../objects/types.js';
import { assert } from '../util/assert.js';
import { CairnError } from '../util/errors.js';
import { Mutex } from '../util/mutex.js';

export const VOLUME_PROPS_OBJECT_ID = 1;
export const VOLUME_DATA_OBJECT_ID = 2;
export const VOLUME_VERSION = 1;
export const VOLBLOCKSIZE_MIN_BYTES = 512;
export const VOLBLOCKSIZE_MAX_BYTES = 128 * 1024;
/** OpenZFS's default since 2.2. */
export const VOLBLOCKSIZE_DEFAULT_BYTES = 16 * 1024;

/** Keys of the volume props kv map. */
export const VolumeProp = { version: 'version', volsize: 'volsize', volblocksize: 'volblocksize' } as const;

/** Bytes of one write handed to the store per hold (a multiple of every allowed volblocksize). */
const WRITE_CHUNK_BYTES_MAX = 1024 * 1024;
/** Volblocks freed per hold: bounds the dirty entries one hold adds to the txg. */
const FREE_CHUNK_BLOCKS_MAX = 2048;

export interface VolumeOpenOptions {
  /** Called by flush(): the pool's sync, which makes every write resolved before it durable. */
  onFlush?: () => Promise<void>;
}

export interface VolumeCreateOptions extends VolumeOpenOptions {
  /** Device size; a positive multiple of volblocksizeBytes. */
  volsizeBytes: number;
  /** Power of two from 512 B to 128 KiB; fixed for the volume's life. Default 16 KiB. */
  volblocksizeBytes?: number;
}

export interface WriteZeroesOptions {
  /**
   * Whether the caller allows holes (NBD without NO_HOLE). Both ways free the whole volblocks: this
   * volume is thin and copy-on-write, so allocating zeros would reserve nothing a later write could use.
   */
  punch: boolean;
}


function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

function validateVolblocksize(volblocksizeBytes: number): void {
  if (!isPowerOfTwo(volblocksizeBytes) || volblocksizeBytes < VOLBLOCKSIZE_MIN_BYTES || volblocksizeBytes > VOLBLOCKSIZE_MAX_BYTES) {
    throw new CairnError('EINVAL', `volblocksize ${volblocksizeBytes} is not a power of two from 512 to 128K`);
  }
}

function validateVolsize(volsizeBytes: number, volblocksizeBytes: number): void {
  if (!Number.isSafeInteger(volsizeBytes) || volsizeBytes <= 0) {
    throw new CairnError('EINVAL', `volsize ${volsizeBytes} is not a positive integer number of bytes`);
  }
  if (volsizeBytes % volblocksizeBytes !== 0) {
    throw new CairnError('EINVAL', `volsize ${volsizeBytes} is not a multiple of volblocksize ${volblocksizeBytes}`);
  }
}

function encodeU64(value: number): Buffer {
  const out = Buffer.alloc(8);
  out.writeBigUInt64LE(BigInt(value));
  return out;
}

async function readU64(props: KvMap, key: string): Promise<number> {
  const raw = await props.get(key);
  if (raw === undefined || raw.length !== 8) throw new CairnError('EIO', `volume property '${key}' is missing or damaged`);
  const value = raw.readBigUInt64LE(0);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new CairnError('EIO', `volume property '${key}' is out of range`);
  return Number(value);
}

export class Volume {
  private readonly lock = new Mutex();

  private constructor(
    private readonly store: ObjectStore,
    private readonly props: KvMap,
    private volsizeBytes: number,
    private readonly volblocksizeBytes: number,
    private readonly onFlush: (() => Promise<void>) | undefined,
  ) {}

  /** Lays out a new volume in an empty object set and opens it. */
  static async create(store: ObjectStore, options: VolumeCreateOptions): Promise<Volume> {
    const volblocksizeBytes = options.volblocksizeBytes ?? VOLBLOCKSIZE_DEFAULT_BYTES;
    validateVolblocksize(volblocksizeBytes);
    validateVolsize(options.volsizeBytes, volblocksizeBytes);
    await store.hold(async () => {
      const occupied = await store.objectInfo(VOLUME_PROPS_OBJECT_ID).then(() => true, () => false);
      if (occupied) throw new CairnError('EEXIST', 'object set is not empty: a volume needs a fresh one');
      const props = await createKv(store, ObjectType.kv);
      assert(props.objectId === VOLUME_PROPS_OBJECT_ID, `volume props got object ${props.objectId}, expected ${VOLUME_PROPS_OBJECT_ID}`);
      const dataId = await store.allocateObject(ObjectType.volume, { blockSizeBytes: volblocksizeBytes });
      assert(dataId === VOLUME_DATA_OBJECT_ID, `volume data got object ${dataId}, expected ${VOLUME_DATA_OBJECT_ID}`);
      // The object layer starts an object with a small block that grows with its first writes; writing
      // one full block and freeing it fixes the block size at volblocksize before any data arrives.
      await store.write(dataId, 0, Buffer.alloc(volblocksizeBytes));
      await store.freeRange(dataId, 0, volblocksizeBytes);
      await props.set(VolumeProp.version, encodeU64(VOLUME_VERSION));
      await props.set(VolumeProp.volblocksize, encodeU64(volblocksizeBytes));
      await props.set(VolumeProp.volsize, encodeU64(options.volsizeBytes));
    });
    return Volume.open(store, options.onFlush ? { onFlush: options.onFlush } : {});
  }

  /** Opens the volume of an object set made by create(). */
  static async open(store: ObjectStore, options: VolumeOpenOptions = {}): Promise<Volume> {
    const info = await store.objectInfo(VOLUME_PROPS_OBJECT_ID).catch((error: unknown) => {
      throw new CairnError('EINVAL', 'object set holds no volume (no props object)', { cause: String(error) });
    });
    if (info.type !== ObjectType.kv) throw new CairnError('EINVAL', `object ${VOLUME_PROPS_OBJECT_ID} is not a volume props map`);
    const props = openKv(store, VOLUME_PROPS_OBJECT_ID);
    const version = await readU64(props, VolumeProp.version);
    if (version > VOLUME_VERSION) throw new CairnError('EVERSION', `volume version ${version} is newer than this Cairn (${VOLUME_VERSION})`);
    if (version < 1) throw new CairnError('EIO', `volume version ${version} is damaged`);
    const volblocksizeBytes = await readU64(props, VolumeProp.volblocksize);
    const volsizeBytes = await readU64(props, VolumeProp.volsize);
    try {
      validateVolblocksize(volblocksizeBytes);
      validateVolsize(volsizeBytes, volblocksizeBytes);
    } catch (error) {
      throw new CairnError('EIO', `volume properties are damaged: ${(error as Error).message}`);
    }
    const data = await store.objectInfo(VOLUME_DATA_OBJECT_ID).catch((error: unknown) => {
      throw new CairnError('EIO', 'volume data object is missing', { cause: String(error) });
    });
    if (data.type !== ObjectType.volume || data.blockSizeBytes !== volblocksizeBytes) {
      throw new CairnError('EIO', `volume data object is damaged (type ${data.type}, block size ${data.blockSizeBytes}, volblocksize ${volblocksizeBytes})`);
    }
    return new Volume(store, props, volsizeBytes, volblocksizeBytes, options.onFlush);
  }

  get sizeBytes(): number {
    return this.volsizeBytes;
  }

  get blockSizeBytes(): number {
    return this.volblocksizeBytes;
  }

  /** Bytes the data blocks take in the pool, as of the last sync (the object layer counts at sync). */
  async allocatedBytes(): Promise<number> {
    return (await this.store.objectInfo(VOLUME_DATA_OBJECT_ID)).usedBytes;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.checkRange('read', offset, length);
    return this.store.read(VOLUME_DATA_OBJECT_ID, offset, length);
  }

  async readInto(offset: number, target: Buffer): Promise<void> {
    this.checkRange('read', offset, target.length);
    await this.store.readInto(VOLUME_DATA_OBJECT_ID, offset, target);
  }

  /** Any offset and length inside the volume; partial volblocks are read, modified and written. */
  async write(offset: number, data: Buffer): Promise<void> {
    this.checkRange('write', offset, data.length);
    await this.lock.run(async () => {
      this.checkRange('write', offset, data.length); // a resize may have run while we queued
      const end = offset + data.length;
      let at = offset;
      while (at < end) {
        // Chunk edges on multiples of the chunk size: only the request's own ends are partial blocks.
        const next = Math.min(end, (Math.floor(at / WRITE_CHUNK_BYTES_MAX) + 1) * WRITE_CHUNK_BYTES_MAX);
        const chunk = data.subarray(at - offset, next - offset);
        const chunkOffset = at;
        await this.store.hold(() => this.store.write(VOLUME_DATA_OBJECT_ID, chunkOffset, chunk));
        at = next;
      }
    });
  }

  /** Zeroes the range: whole volblocks are freed (thin, both ways; see WriteZeroesOptions), edges zeroed. */
  async writeZeroes(offset: number, length: number, _options: WriteZeroesOptions = { punch: true }): Promise<void> {
    await this.discard('write zeroes', offset, length);
  }

  /** Discard (NBD TRIM, SCSI UNMAP): frees whole volblocks in the range and zeroes the partial edges. */
  async trim(offset: number, length: number): Promise<void> {
    await this.discard('trim', offset, length);
  }

  /**
   * Makes every write that resolved before this call durable, through the onFlush hook (the pool's
   * sync). Writes queued before the call land first. Without a hook this only orders: durability then
   * comes from whoever syncs the pool.
   */
  async flush(): Promise<void> {
    await this.lock.run(async () => undefined);
    if (this.onFlush) await this.onFlush();
  }

  /**
   * Changes the device size (a positive multiple of volblocksize). Grow: the new range reads zeros.
   * Shrink: the size drops first, then the blocks beyond it are freed, so a later grow reads zeros there.
   */
  async resize(newSizeBytes: number): Promise<void> {
    validateVolsize(newSizeBytes, this.volblocksizeBytes);
    await this.lock.run(async () => {
      const oldSizeBytes = this.volsizeBytes;
      if (newSizeBytes === oldSizeBytes) return;
      if (newSizeBytes > oldSizeBytes) {
        // Blocks beyond the old size can only exist if a shrink was cut short; free them before they
        // become readable.
        await this.freeRange(oldSizeBytes, newSizeBytes);
        await this.setVolsize(newSizeBytes);
      } else {
        await this.setVolsize(newSizeBytes);
        await this.freeRange(newSizeBytes, oldSizeBytes);
      }
    });
  }

  // ---- internals ----

  private async setVolsize(volsizeBytes: number): Promise<void> {
    await this.store.hold(() => this.props.set(VolumeProp.volsize, encodeU64(volsizeBytes)));
    this.volsizeBytes = volsizeBytes;
  }

  private async discard(what: string, offset: number, length: number): Promise<void> {
    this.checkRange(what, offset, length);
    await this.lock.run(async () => {
      this.checkRange(what, offset, length);
      await this.freeRange(offset, offset + length);
    });
  }

  /** Frees [offset, end) chunk by chunk; call under the lock. */
  private async freeRange(offset: number, end: number): Promise<void> {
    // Nothing past the highest block ever written is allocated: skip it, so trimming a huge, mostly
    // unwritten volume costs nothing per untouched chunk.
    const { maxOffsetBytes } = await this.store.objectInfo(VOLUME_DATA_OBJECT_ID);
    const stop = Math.min(end, maxOffsetBytes);
    const chunkBytes = FREE_CHUNK_BLOCKS_MAX * this.volblocksizeBytes;
    let at = offset;
    while (at < stop) {
      const next = Math.min(stop, (Math.floor(at / chunkBytes) + 1) * chunkBytes);
      const chunkOffset = at;
      await this.store.hold(() => this.store.freeRange(VOLUME_DATA_OBJECT_ID, chunkOffset, next - chunkOffset));
      at = next;
    }
  }

  private checkRange(what: string, offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || offset < 0) throw new CairnError('EINVAL', `${what}: offset ${offset} is not a non-negative integer`);
    if (!Number.isSafeInteger(length) || length < 0) throw new CairnError('EINVAL', `${what}: length ${length} is not a non-negative integer`);
    if (offset + length > this.volsizeBytes) {
      throw new CairnError('EINVAL', `${what}: ${length} bytes at offset ${offset} end beyond the volume size ${this.volsizeBytes}`, {
        offset, length, volsizeBytes: this.volsizeBytes,
      });
    }
  }
}
